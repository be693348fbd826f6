"""The server store: an index in SQLCipher and a folder of envelope blobs, behind one interface.

Views talk to :class:`Store` only, so that the embedded default (SQLCipher + files) can later be
swapped for PostgreSQL and an object store without touching them.
"""

from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

from source_interface.store.blobs import POOL_SIZE, BlobFolder, BlobRef, PendingBlob
from source_interface.store.index import (
    AppliedReplies,
    Index,
    Item,
    NewReply,
    PendingItem,
    Purged,
    ReplyConflict,
    Report,
    Session,
    Source,
)
from source_interface.store.index import today as index_today

__all__ = [
    "AppliedReplies",
    "BlobRef",
    "Item",
    "NewReply",
    "PendingBlob",
    "PendingItem",
    "Purged",
    "ReplyConflict",
    "Report",
    "Session",
    "Source",
    "Store",
]

PICKUP_CACHE_SUFFIX = ".bundle"


class Store:
    """Ciphertext in, ciphertext out; never plaintext, never a time finer than a day
    (docs/threat-model.md says what the file system keeps all the same)."""

    def __init__(self, root: Path, db_key: bytes) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs = BlobFolder(root / "blobs", defer_folder_sync=True, pool_size=POOL_SIZE)
        self.index = Index(root / "index.db", db_key, before_commit=self.blobs.sync_if_renamed)
        self.pickup_dir = root / "pickup"
        """Pickup bundles ready to serve, and reply bundles being uploaded (pickup API)."""
        self.pickup_dir.mkdir(mode=0o700, exist_ok=True)

    def close(self) -> None:
        self.index.close()

    def new_blob(self) -> PendingBlob:
        return self.blobs.new()

    def open_blob(self, name: str) -> BinaryIO:
        return self.blobs.open(name)

    def read_blob(self, name: str) -> bytes:
        with self.blobs.open(name) as f:
            return f.read()

    def delete_source(self, source_id: str) -> None:
        """Remove a source's rows, then their blobs (a crash between leaves only orphans), then
        scrub the index so that the rows cannot be read back from its files.  If other workers'
        readers hold the scrub back, the janitor finishes it within a minute."""
        for name in self.index.delete_source(source_id):
            self.blobs.delete(name)
        self.clear_pickup_cache()
        self.index.scrub()

    def scrub_if_pending(self) -> bool:
        """Scrub the index if rows were deleted since the last scrub; whether none is left."""
        return not self.index.scrub_pending() or self.index.scrub()

    def sweep(self, min_age: float = 0.0, now: float | None = None) -> int:
        """Remove blobs left by a crash or an abandoned upload, and sources a crash left without
        their report.  Returns how many blobs were removed.

        It lists the whole blob folder, so it runs in the background (:mod:`janitor`), never
        on the request path nor before serving: there ``min_age`` keeps every file changed in
        the last hour, which may belong to a request in flight (a blob is committed a moment
        before its row; the slowest live upload still writes to its temporary file every
        minute, or is dropped).  0 removes every unreferenced file: only when nothing runs.
        ``now`` stands for the clock (tests).
        """
        self.index.delete_sources_without_reports()
        self.expire_drafts()
        return self.blobs.sweep(self.index.blob_names(), min_age, now)

    def housekeeping(self) -> None:
        """Forget expired drafts, sessions and submission records (cheap indexed deletes),
        scrub the index if rows were deleted, and refill the blob pool if it runs low: once a
        minute."""
        self.expire_drafts()
        self.index.expire_sessions()
        self.index.expire_submissions()
        self.scrub_if_pending()
        if self.blobs.pool is not None:
            self.blobs.pool.fill()

    def expire_drafts(self) -> None:
        """Delete the files of drafts nobody came back to (rows first, then blobs)."""
        for name in self.index.expire_drafts():
            self.blobs.delete(name)

    # --- the air-gapped loop: pickup bundles, reply bundles, retention -----------------------

    def clear_pickup_cache(self) -> None:
        """Delete the pickup bundles kept ready to serve: they copy envelopes, so whatever
        deletes envelopes calls this, and no copy outlives its original."""
        for path in self.pickup_dir.glob("*" + PICKUP_CACHE_SUFFIX):
            path.unlink(missing_ok=True)

    def apply_replies(
        self,
        bundle_id: str,
        replies: list[NewReply],
        acknowledged: list[str],
        delete_reports: list[str],
    ) -> AppliedReplies | None:
        """Apply a verified reply bundle whose replies are committed blobs (rows, then the
        blobs no row refers to any more); None, with the replies' blobs deleted, if the bundle
        was applied before.  :class:`ReplyConflict` leaves everything as it was."""
        try:
            applied = self.index.apply_replies(bundle_id, replies, acknowledged, delete_reports)
        except BaseException:
            for reply in replies:
                self.blobs.delete(reply.blob.name)
            raise
        if applied is None:
            for reply in replies:
                self.blobs.delete(reply.blob.name)
            return None
        for name in applied.unused_blobs:
            self.blobs.delete(name)
        if applied.deleted_reports:
            self.clear_pickup_cache()
            self.scrub_if_pending()
        return applied

    def delete_reports(self, report_ids: list[str]) -> int:
        deleted, blobs = self.index.delete_reports(report_ids)
        for name in blobs:
            self.blobs.delete(name)
        if deleted:
            self.clear_pickup_cache()
            self.scrub_if_pending()
        return deleted

    def purge(self, delivered_days: int, today: date | None = None) -> Purged:
        """Retention: delete the ciphertext the workstation acknowledged ``delivered_days``
        days ago or more (0: at once), and what is left with nothing (see
        :meth:`Index.purge_delivered`)."""
        day = today or date.fromisoformat(index_today())
        purged = self.index.purge_delivered((day - timedelta(days=delivered_days)).isoformat())
        for name in purged.blobs:
            self.blobs.delete(name)
        if purged.items:
            self.clear_pickup_cache()
            self.scrub_if_pending()
        return purged
