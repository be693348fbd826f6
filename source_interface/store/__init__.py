"""The server store: an index and envelope blobs, behind one interface.

Views, the pickup API, the janitor and the CLI talk to :class:`Store`'s methods only: the
embedded default keeps an index in SQLCipher and a folder of envelope files; the PostgreSQL
backend (:class:`PostgresStore`, docs/scale.md) keeps both in PostgreSQL.  What a backend's
index must do is :class:`~source_interface.store.protocol.StoreIndex`.
"""

from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

from blagh.blobs import POOL_SIZE, BlobFolder, BlobRef, PendingBlob
from source_interface.store.index import Index
from source_interface.store.protocol import StoreIndex
from source_interface.store.records import (
    AppliedReplies,
    Item,
    NewReply,
    NewSession,
    NewSource,
    PendingItem,
    PickupSnapshot,
    PickupState,
    Purged,
    ReplyConflict,
    Report,
    Session,
    Source,
    Submission,
)
from source_interface.store.records import today as index_today

__all__ = [
    "AppliedReplies",
    "BlobRef",
    "Item",
    "NewReply",
    "PendingBlob",
    "PendingItem",
    "PostgresStore",
    "Purged",
    "ReplyConflict",
    "Report",
    "Session",
    "Source",
    "Store",
]

PICKUP_CACHE_SUFFIX = ".bundle"
INDEX_FILE = "index.db"
WRITER_SOCKET = "writer.sock"
"""Where a gunicorn server's shared writer listens (source_interface/writer_arbiter.py)."""


class Store:
    """Ciphertext in, ciphertext out; never plaintext, never a time finer than a day
    (docs/threat-model.md says what the file system keeps all the same)."""

    backend = "sqlcipher"

    def __init__(self, root: Path, db_key: bytes, writer_socket: Path | None = None) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs: BlobFolder = BlobFolder(root / "blobs", pool_size=POOL_SIZE)
        self.index: StoreIndex = Index(root / INDEX_FILE, db_key, writer_socket)
        self._pickup_dir(root)

    def _pickup_dir(self, root: Path) -> None:
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

    def delete_blob(self, name: str) -> None:
        """Delete a blob no committed row refers to (one a failed write left)."""
        self.blobs.delete(name)

    # --- the index's operations, for views, the pickup API and the CLI ----------------------

    def create_source(self, verifier: bytes | None, public_key: bytes | None) -> Source:
        return self.index.create_source(verifier, public_key)

    def source_by_verifier(self, verifier: bytes) -> Source | None:
        return self.index.source_by_verifier(verifier)

    def source(self, source_id: str) -> Source | None:
        return self.index.source(source_id)

    def add_report(
        self,
        source_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
        new_source: NewSource | None = None,
        submission: Submission | None = None,
        new_session: NewSession | None = None,
    ) -> Report:
        return self.index.add_report(source_id, items, draft, new_source, submission, new_session)

    def add_items(
        self,
        source_id: str,
        report_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
    ) -> bool:
        return self.index.add_items(source_id, report_id, items, draft)

    def reports_of(self, source_id: str) -> list[Report]:
        return self.index.reports_of(source_id)

    def report(self, source_id: str, report_id: str) -> Report | None:
        return self.index.report(source_id, report_id)

    def add_to_draft(
        self,
        token_hash: bytes,
        blobs: list[BlobRef],
        lifetime: int,
        *,
        max_files: int | None = None,
        max_bytes: int | None = None,
        max_total_bytes: int | None = None,
    ) -> tuple[bool, list[str]]:
        return self.index.add_to_draft(
            token_hash,
            blobs,
            lifetime,
            max_files=max_files,
            max_bytes=max_bytes,
            max_total_bytes=max_total_bytes,
        )

    def remove_from_draft(self, token_hash: bytes, names: list[str]) -> list[str]:
        return self.index.remove_from_draft(token_hash, names)

    def draft(self, token_hash: bytes) -> list[BlobRef]:
        return self.index.draft(token_hash)

    def create_session(
        self, token_hash: bytes, source_id: str, sealed_secret: bytes, lifetime: int
    ) -> None:
        self.index.create_session(token_hash, source_id, sealed_secret, lifetime)

    def replace_session_secret(self, token_hash: bytes, sealed_secret: bytes) -> None:
        self.index.replace_session_secret(token_hash, sealed_secret)

    def session(self, token_hash: bytes, lifetime: int) -> Session | None:
        return self.index.session(token_hash, lifetime)

    def delete_session(self, token_hash: bytes) -> None:
        self.index.delete_session(token_hash)

    def submission(self, key: bytes) -> str | None:
        return self.index.submission(key)

    def undelivered_snapshot(self) -> PickupSnapshot:
        return self.index.undelivered_snapshot()

    def pickup_state(self) -> PickupState:
        return self.index.pickup_state()

    def monitoring(self) -> tuple[int, str | None]:
        """Items waiting for the workstation, and the last day it acknowledged any."""
        return self.index.monitoring()

    def check_writes(self) -> None:
        """Returns once a write could be stored now; raises what that write would meet."""
        self.index.check_writes()

    def record_pickup_bundle(self, generation: int, context: str, key: str, items: int) -> bool:
        return self.index.record_pickup_bundle(generation, context, key, items)

    def bundle_applied(self, bundle_id: str) -> bool:
        return self.index.bundle_applied(bundle_id)

    def add_pickup_token(self, name: str, token_hash: bytes) -> bool:
        return self.index.add_pickup_token(name, token_hash)

    def remove_pickup_token(self, name: str) -> bool:
        return self.index.remove_pickup_token(name)

    def pickup_tokens(self) -> list[tuple[str, str]]:
        return self.index.pickup_tokens()

    def pickup_token_name(self, token_hash: bytes) -> str | None:
        return self.index.pickup_token_name(token_hash)

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


class PostgresStore(Store):
    """Index and envelopes in PostgreSQL (``[store] backend = "postgresql"``): every
    source-interface machine on the same database sees every submission.  The local folder
    keeps blobs being written, the blob pool and the pickup cache only."""

    backend = "postgresql"

    def __init__(self, root: Path, dsn: str) -> None:
        from source_interface.store.postgres import PgBlobFolder, PgIndex

        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        index = PgIndex(dsn)
        self.index = index
        self.blobs = PgBlobFolder(root / "blobs", index, pool_size=POOL_SIZE)
        self._pickup_dir(root)
