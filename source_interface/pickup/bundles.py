"""Pickup bundles out, reply bundles in: the server's half of docs/bundles.md.

A pickup bundle holds every item the workstation has not acknowledged yet.  For a given set of
items it is built once and kept in the store's ``pickup/`` folder, so that every request for
it gets the same bytes: an interrupted download can resume with an HTTP range, and
``blagh export-bundle`` copies the very file the pickup API serves.  Its bundle id is derived
from what it holds (the items, the analysts' keys, the signing key), not drawn at random.
Whatever deletes envelopes also deletes these copies (:meth:`ServerStore.clear_pickup_cache`).

A reply bundle is verified whole by :class:`~blagh.bundles.BundleReader` (signature by an
analyst key of the config, member list, every hash) and then checked for what the server
itself can see of it (ids, sizes, the shape of each envelope) before anything is written.  The
server cannot open the replies and does not try: they are sealed to the reporter and the
analysts.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from blagh.bundles import BundleError, BundleReader, ItemSource, write_bundle
from crypto.envelope import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    MAGIC,
    MAX_RECIPIENTS,
    PREAMBLE_SIZE,
    SEALED_CHUNK_SIZE,
    VERSION,
    header_size,
)
from crypto.keys import AnalystPublicKey, ServerSigningKey
from crypto.manifest import canonical_json
from crypto.padding import MIN_PADDED, padme
from source_interface.store import (
    BlobRef,
    NewReply,
    PendingBlob,
    PendingItem,
    ReplyConflict,
)
from source_interface.store.protocol import ServerStore
from source_interface.store.records import today

PICKUP_FORMAT = "blagh-pickup"
REPLIES_FORMAT = "blagh-replies"

MAX_REPLY_BYTES = 4 * 1024 * 1024
"""Largest reply envelope accepted: a reply is text (docs/payloads.md), a few KiB once padded."""

MAX_REPLY_BUNDLE_BYTES = 512 * 1024 * 1024
"""Largest reply bundle the pickup API accepts in one upload."""

MIN_REPLY_RECIPIENTS = 2
"""A reply is sealed to the reporter and to at least one analyst."""

_ID = re.compile(r"[0-9a-f]{32}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_BUILD_ATTEMPTS = 3
_STALE_TEMP_SECONDS = 3600
_COPY_SIZE = 1024 * 1024


class PickupUnavailable(BundleError):
    """The store changed under every attempt to build a pickup bundle; try again."""


# --- pickup bundles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PickupBundle:
    """The current pickup bundle, opened: the file stays readable even if it is replaced."""

    file: BinaryIO
    bundle_id: str
    etag: str
    size: int
    items: int

    @property
    def download_name(self) -> str:
        return f"pickup-{self.bundle_id}.bundle"


class PickupBundles:
    """Builds the pickup bundle of what is not yet acknowledged, and keeps it ready."""

    def __init__(
        self,
        store: ServerStore,
        analysts: Sequence[AnalystPublicKey],
        signing_key: ServerSigningKey,
    ) -> None:
        self._store = store
        self._analysts = [analyst.to_line() for analyst in analysts]
        self._signing_key = signing_key
        self._signer = signing_key.public().verify
        self._lock = threading.Lock()
        self._context = hashlib.sha256(
            b"blagh-pickup-context\x00"
            + canonical_json({"analysts": self._analysts, "signer": self._signer.hex()})
        ).hexdigest()
        """Names the keys a bundle is made under: a bundle recorded under others is not ours."""

    def open_current(self) -> PickupBundle:
        """The bundle of every undelivered item, built now unless an identical one is ready.

        When nothing changed since the bundle was last built (the generation counter the
        index's triggers keep is still the one recorded with it), this costs one read of one
        row and opening a file: no item is listed.  Raises :class:`PickupUnavailable` if items
        kept vanishing (deleted by their reporter) while it was being built.
        """
        with self._lock:
            for _ in range(_BUILD_ATTEMPTS):
                ready = self._open_recorded()
                if ready is not None:
                    return ready
                snapshot = self._store.undelivered_snapshot()
                pending = snapshot.items
                key = self._key(pending)
                path = self._store.pickup_dir / f"{key}.bundle"
                try:
                    file = path.open("rb")
                except FileNotFoundError:
                    if not self._build(pending, key, path, snapshot.deletions):
                        continue
                    try:
                        file = path.open("rb")
                    except FileNotFoundError:
                        continue
                self._store.record_pickup_bundle(
                    snapshot.generation, self._context, key, len(pending)
                )
                size = os.fstat(file.fileno()).st_size
                return PickupBundle(file, key[:32], key, size, len(pending))
        raise PickupUnavailable(
            "the store changed while the pickup bundle was being made; try again"
        )

    def _open_recorded(self) -> PickupBundle | None:
        """The bundle recorded for the current generation, if it is there; else None.

        Sound because the generation goes up in the same transaction as any change to the set
        of undelivered items, and only ever goes up: equal, the set is the one the bundle was
        built from.  No item of it can have been deleted while it stayed equal either (an item
        is undelivered until acknowledged, which moves the generation, before retention can
        delete it), and whatever deletes envelopes deletes the cached copies after its commit.
        """
        state = self._store.pickup_state()
        if (
            state.bundle_key is None
            or state.bundle_items is None
            or state.bundle_generation != state.generation
            or state.bundle_context != self._context
        ):
            return None
        try:
            file = (self._store.pickup_dir / f"{state.bundle_key}.bundle").open("rb")
        except FileNotFoundError:
            return None
        size = os.fstat(file.fileno()).st_size
        key = state.bundle_key
        return PickupBundle(file, key[:32], key, size, state.bundle_items)

    def _key(self, pending: list[PendingItem]) -> str:
        """What identifies a bundle's content: its items, the analysts, the signing key."""
        content = {
            "analysts": self._analysts,
            "items": sorted(item.id for item in pending),
            "signer": self._signer.hex(),
        }
        return hashlib.sha256(b"blagh-pickup-bundle\x00" + canonical_json(content)).hexdigest()

    def manifest(self, pending: list[PendingItem], bundle_id: str) -> dict[str, Any]:
        sources: dict[str, dict[str, Any]] = {}
        reports: dict[str, dict[str, Any]] = {}
        for item in pending:
            public = item.source_public_key
            sources.setdefault(
                item.source_id,
                {"id": item.source_id, "public_key": public.hex() if public else None},
            )
            reports.setdefault(
                item.report_id,
                {"id": item.report_id, "source": item.source_id, "day": item.report_day},
            )
        return {
            "format": PICKUP_FORMAT,
            "version": 1,
            "bundle": bundle_id,
            "day": today(),
            "analysts": list(self._analysts),
            "sources": list(sources.values()),
            "reports": list(reports.values()),
            "items": [
                {
                    "id": item.id,
                    "report": item.report_id,
                    "kind": item.kind,
                    "size": item.size,
                    "sha256": item.sha256,
                    "day": item.day,
                    "seq": item.seq,
                }
                for item in pending
            ],
        }

    def _build(self, pending: list[PendingItem], key: str, path: Path, deletions: int) -> bool:
        """Write the bundle to a temporary file, fsync it, rename it into place; then check
        that no item was deleted since ``pending`` was listed (the index's ``deletions``
        counter, read with it, is unchanged), else remove it: no copy may outlive an item.
        New reports or acknowledgements meanwhile do not spoil it: it is still exactly the
        bundle of the set it was built from.  False when it must be built again."""
        folder = self._store.pickup_dir
        temp = folder / f".build-{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                write_bundle(
                    out,
                    self.manifest(pending, key[:32]),
                    self._signing_key.sign,
                    self._signer,
                    [self._source(item) for item in pending],
                )
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, path)
        except FileNotFoundError:
            temp.unlink(missing_ok=True)
            return False  # a blob was deleted while it was being copied
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if self._store.pickup_state().deletions != deletions:
            path.unlink(missing_ok=True)
            return False
        self._remove_stale(keep=path)
        return True

    def _source(self, item: PendingItem) -> ItemSource:
        name = item.blob
        return ItemSource(item.id, item.size, item.sha256, lambda: self._store.open_blob(name))

    def _remove_stale(self, keep: Path) -> None:
        """Older bundles (a download still reading one keeps its open file), and temporary
        files a crash left behind."""
        now = time.time()
        for path in self._store.pickup_dir.iterdir():
            if path == keep:
                continue
            if path.name.endswith(".bundle"):
                path.unlink(missing_ok=True)
            elif path.name.startswith(".build-"):
                try:
                    if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                        path.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass


def copy_to_new_file(
    source: BinaryIO,
    out: Path,
    size: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy an open bundle to ``out`` (which must not exist), whole or not at all.

    A failure names ``out``, never the temporary file beside it, which the user never chose
    and which is gone by the time they read the message.
    """
    temp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    copied = 0
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            while chunk := source.read(_COPY_SIZE):
                file.write(chunk)
                copied += len(chunk)
                if progress is not None:
                    progress(copied, max(size, copied))
            file.flush()
            os.fsync(file.fileno())
        os.link(temp, out)  # FileExistsError rather than replacing a file
    except FileExistsError:
        raise
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(out)) from None
    finally:
        temp.unlink(missing_ok=True)
    return copied


# --- reply bundles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What importing a reply bundle did."""

    bundle_id: str
    replies_stored: int
    replies_already_stored: int
    replies_dropped: int
    acknowledged: int
    reports_deleted: int
    purged_items: int

    def summary(self) -> str:
        """One sentence such as "3 replies stored, 12 items acknowledged, 1 report deleted"."""
        parts = [
            _count(self.replies_stored, "reply", "replies") + " stored",
            _count(self.acknowledged, "item", "items") + " acknowledged",
            _count(self.reports_deleted, "report", "reports") + " deleted",
        ]
        if self.replies_already_stored:
            parts.append(
                _count(self.replies_already_stored, "reply", "replies")
                + " already stored by an earlier bundle"
            )
        if self.replies_dropped:
            parts.append(
                _count(self.replies_dropped, "reply", "replies")
                + " dropped: the report is gone (deleted by its reporter, by an analyst or by"
                " retention) or its reporter kept no codename"
            )
        if self.purged_items:
            parts.append(
                _count(self.purged_items, "delivered item", "delivered items")
                + " past retention removed"
            )
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle_id,
            "replies_stored": self.replies_stored,
            "replies_already_stored": self.replies_already_stored,
            "replies_dropped": self.replies_dropped,
            "acknowledged": self.acknowledged,
            "reports_deleted": self.reports_deleted,
            "purged_items": self.purged_items,
            "summary": self.summary(),
        }


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


@dataclass(frozen=True)
class _Reply:
    id: str
    report_id: str
    size: int
    sha256: str


@dataclass(frozen=True)
class _Plan:
    bundle_id: str
    replies: list[_Reply]
    acknowledged: list[str]
    delete_reports: list[str]


def import_reply_bundle(
    store: ServerStore,
    analysts: Sequence[AnalystPublicKey],
    path: Path,
    *,
    delivered_days: int,
    label: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Verify the reply bundle at ``path`` whole, then apply it; refuse it whole otherwise.

    Every check runs before anything is written: the signature by one of ``analysts``, the
    member list and hashes (:class:`BundleReader`), the manifest's fields, that the bundle was
    not applied before, and the shape of each reply envelope.  The replies are then copied to
    blobs (hashes checked again as they are copied: the file may have changed since) and
    everything is applied in one transaction.  Raises :class:`BundleError` saying which check
    failed; the store is then unchanged.  ``label`` names the bundle in messages instead of
    its path (an upload's temporary file means nothing to the sender).
    """
    try:
        return _import(store, analysts, path, delivered_days, progress)
    except BundleError as error:
        if label is None:
            raise
        raise type(error)(str(error).replace(str(path), label)) from None


def _import(
    store: ServerStore,
    analysts: Sequence[AnalystPublicKey],
    path: Path,
    delivered_days: int,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    trusted = [analyst.verify for analyst in analysts]
    with BundleReader(path, trusted, REPLIES_FORMAT, progress) as reader:
        plan = _check_manifest(path, reader.manifest)
        if store.bundle_applied(plan.bundle_id):
            raise _replayed(path, plan.bundle_id)
        for reply in plan.replies:
            head = b""
            for chunk in reader.item_chunks(reply.id):
                head += chunk[: PREAMBLE_SIZE - len(head)]
                if len(head) >= PREAMBLE_SIZE:
                    break
            if not envelope_shape_ok(head, reply.size, MIN_REPLY_RECIPIENTS):
                raise BundleError(
                    f"{path}: reply {reply.id} is not an envelope sealed to the reporter and "
                    "the analysts"
                )
        new_replies = _copy_replies(store, reader, path, plan.replies)
    try:
        applied = store.apply_replies(
            plan.bundle_id, new_replies, plan.acknowledged, plan.delete_reports
        )
    except ReplyConflict as conflict:
        raise BundleError(
            f"{path}: reply {conflict} has the id of a different item already stored"
        ) from None
    if applied is None:
        raise _replayed(path, plan.bundle_id)
    purged = store.purge(delivered_days)
    return ImportResult(
        bundle_id=plan.bundle_id,
        replies_stored=applied.stored,
        replies_already_stored=applied.already_stored,
        replies_dropped=applied.dropped,
        acknowledged=applied.acknowledged,
        reports_deleted=applied.deleted_reports,
        purged_items=purged.items,
    )


def _replayed(path: Path, bundle_id: str) -> BundleError:
    return BundleError(
        f"{path} was imported before (bundle {bundle_id}): a reply bundle is applied once; "
        "make a new one on the workstation"
    )


def _check_manifest(path: Path, manifest: dict[str, Any]) -> _Plan:
    """The fields BundleReader does not check, or :class:`BundleError` naming the first wrong."""

    def refuse(what: str) -> BundleError:
        return BundleError(f"{path}: the manifest's {what}")

    bundle_id = manifest.get("bundle")
    if not isinstance(bundle_id, str) or not _ID.fullmatch(bundle_id):
        raise refuse("bundle id is not 32 lowercase hex digits")
    day = manifest.get("day")
    if not isinstance(day, str) or not _is_day(day):
        raise refuse("day is not a date (YYYY-MM-DD)")
    lists: dict[str, list[str]] = {}
    for name in ("acknowledged", "delete_reports"):
        value = manifest.get(name)
        if not isinstance(value, list) or not all(
            isinstance(v, str) and _ID.fullmatch(v) for v in value
        ):
            raise refuse(f"{name} is not a list of ids")
        lists[name] = list(dict.fromkeys(value))
    replies = []
    for item in manifest["items"]:
        report = item.get("report")
        if not isinstance(report, str) or not _ID.fullmatch(report):
            raise refuse(f"item {item['id']} names no report")
        if item["size"] > MAX_REPLY_BYTES:
            raise refuse(
                f"item {item['id']} is larger than a reply may be "
                f"({MAX_REPLY_BYTES // (1024 * 1024)} MiB)"
            )
        replies.append(_Reply(item["id"], report, item["size"], item["sha256"]))
    return _Plan(bundle_id, replies, lists["acknowledged"], lists["delete_reports"])


def _is_day(text: str) -> bool:
    if not _DAY.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def envelope_shape_ok(head: bytes, size: int, min_recipients: int = 1) -> bool:
    """Whether an envelope of ``size`` bytes starting with ``head`` is shaped as
    docs/envelope.md says: magic, version, recipient count, and a payload length that whole
    chunks of a Padmé-padded plaintext have.  Says nothing of whether it opens."""
    if len(head) < PREAMBLE_SIZE or head[: len(MAGIC)] != MAGIC or head[len(MAGIC)] != VERSION:
        return False
    count = head[len(MAGIC) + 1]
    if not min_recipients <= count <= MAX_RECIPIENTS:
        return False
    payload = size - header_size(count)
    if payload <= 0:
        return False
    chunks = -(-payload // SEALED_CHUNK_SIZE)
    padded = payload - chunks * CHUNK_OVERHEAD
    return padded >= MIN_PADDED and padme(padded) == padded and -(-padded // CHUNK_SIZE) == chunks


def _copy_replies(
    store: ServerStore, reader: BundleReader, path: Path, replies: list[_Reply]
) -> list[NewReply]:
    """Each reply's envelope as a committed blob, its hash checked again while copied; on
    any failure the blobs made so far are deleted."""
    made: list[NewReply] = []
    pending: PendingBlob | None = None
    try:
        for reply in replies:
            pending = store.new_blob()
            for chunk in reader.item_chunks(reply.id):
                pending.write(chunk)
            ref: BlobRef = pending.commit()
            pending = None
            made.append(NewReply(reply.id, reply.report_id, ref))
            if (ref.size, ref.sha256) != (reply.size, reply.sha256):
                raise BundleError(f"{path} changed while it was being imported")
    except BaseException:
        if pending is not None:
            pending.discard()
        for new in made:
            store.delete_blob(new.blob.name)
        raise
    return made
