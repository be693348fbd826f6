"""Envelopes sealed in the reporter's browser: checking their shape, and chunked uploads of them.

On the JavaScript path (docs/js-path.md) the server receives envelopes, never plaintext.  It
cannot open them and does not try; it checks what it can without a key, so that what it stores
is at least shaped like what the workstation expects:

* the header's magic, version and recipient count (docs/envelope.md), the count being the one
  the page asked for (the analysts, plus the source's own key where that applies);
* a total size that an envelope with that many recipients can have (header, then a padded
  length that Padmé can produce, cut into 64 KiB chunks with their 17-byte tags), within the
  limits the no-JavaScript path has.

Whether the stanzas are really sealed to the analysts cannot be checked without their secret
keys: a browser could seal to anyone, exactly as a no-JS reporter could upload noise.  The
workstation opens what it can and reports the rest.

Large files arrive in numbered pieces of :data:`CHUNK_BYTES` (byte ranges of the envelope,
sent in order), each written and fsynced before it is acknowledged, so that a dropped Tor
circuit costs at most the piece in flight: the browser asks how much the server has and goes
on from there.  Partial uploads are ciphertext, like everything else the server keeps; one that
nobody has added to for :data:`IDLE_SECONDS` is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
from crypto.padding import MIN_PADDED, padme
from source_interface.errors import SourceInterfaceError
from source_interface.store.blobs import BlobFolder, BlobRef

CHUNK_BYTES = 1024 * 1024
"""Size of every upload piece but the last: a few seconds over Tor, little lost to a drop."""

IDLE_SECONDS = 3600
"""A partial upload nobody added to for this long is deleted (a dropped circuit is back in
seconds; a reporter who closed the page is not coming back to it)."""

MAX_LIVE_UPLOADS = 1000
"""Partial uploads at once, all reporters together: a bound on what a flood can pin on disk."""

_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadError(SourceInterfaceError):
    """A request of the chunked upload API that cannot be honoured; ``status`` is its HTTP code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def possible_envelope_size(size: int, recipients: int) -> bool:
    """Whether an envelope with ``recipients`` recipients can be exactly ``size`` bytes long."""
    if not 1 <= recipients <= MAX_RECIPIENTS:
        return False
    body = size - header_size(recipients)
    if body < MIN_PADDED + CHUNK_OVERHEAD:
        return False
    chunks = -(-body // SEALED_CHUNK_SIZE)
    padded = body - chunks * CHUNK_OVERHEAD
    return padded >= MIN_PADDED and -(-padded // CHUNK_SIZE) == chunks and padme(padded) == padded


def header_matches(head: bytes, recipients: int) -> bool:
    """Whether ``head`` starts like a version-1 envelope header with ``recipients`` stanzas."""
    return (
        len(head) >= PREAMBLE_SIZE
        and head[: len(MAGIC)] == MAGIC
        and head[len(MAGIC)] == VERSION
        and head[len(MAGIC) + 1] == recipients
    )


def envelope_shape_ok(envelope: bytes, recipients: int) -> bool:
    """Header and size checks for an envelope held whole (a report's fields, a message)."""
    return header_matches(envelope, recipients) and possible_envelope_size(
        len(envelope), recipients
    )


@dataclass(frozen=True)
class UploadState:
    """What the server has of one upload: its announced size and the bytes received so far."""

    size: int
    received: int
    recipients: int

    @property
    def complete(self) -> bool:
        return self.received == self.size

    @property
    def next_index(self) -> int:
        """The number of the next piece the server expects (the piece count when complete)."""
        return -(-self.received // CHUNK_BYTES) if self.complete else self.received // CHUNK_BYTES

    @property
    def chunk_count(self) -> int:
        return -(-self.size // CHUNK_BYTES)

    def as_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "received": self.received,
            "chunk_size": CHUNK_BYTES,
            "next": self.next_index,
            "complete": self.complete,
        }


class UploadFolder:
    """Partial uploads on disk: ``<h>.meta`` (size, recipient count) and ``<h>.part`` (bytes).

    ``h`` is the SHA-256 of the upload id, so the folder's listing does not hold the ids, which
    are what lets a browser add to an upload.  Pieces of one upload are written under an
    exclusive ``flock``: gunicorn's workers and threads may serve two at once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- paths ----------------------------------------------------------------------------

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        if not _ID.match(upload_id):
            raise UploadError(404, "no such upload")
        name = hashlib.sha256(upload_id.encode("ascii")).hexdigest()
        return self.root / f"{name}.meta", self.root / f"{name}.part"

    @staticmethod
    def _read_meta(meta: Path) -> tuple[int, int]:
        try:
            data = json.loads(meta.read_text("ascii"))
            return int(data["size"]), int(data["recipients"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UploadError(404, "no such upload") from None

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[tuple[int, int, int]]:
        """``(fd, size, recipients)`` of an existing upload, its part file locked."""
        meta, part = self._paths(upload_id)
        size, recipients = self._read_meta(meta)
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            raise UploadError(404, "no such upload") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd, size, recipients
        finally:
            os.close(fd)

    @staticmethod
    def _received(fd: int, size: int) -> int:
        """Bytes durably received: a piece cut short by a crash is dropped here."""
        length = os.fstat(fd).st_size
        if length >= size:
            return size
        whole = length - length % CHUNK_BYTES
        if whole != length:
            os.ftruncate(fd, whole)
        return whole

    # --- the API --------------------------------------------------------------------------

    def live_count(self) -> int:
        return sum(1 for _ in self.root.glob("*.meta"))

    def create(self, size: int, recipients: int) -> str:
        """Start an upload of an envelope of exactly ``size`` bytes; return its id."""
        if self.live_count() >= MAX_LIVE_UPLOADS:
            raise UploadError(503, "too many uploads in progress")
        upload_id = secrets.token_hex(16)
        meta, part = self._paths(upload_id)
        temp = meta.with_suffix(".tmp")
        temp.write_text(json.dumps({"size": size, "recipients": recipients}), "ascii")
        os.chmod(temp, 0o600)
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.rename(temp, meta)
        return upload_id

    def state(self, upload_id: str) -> UploadState:
        with self._locked(upload_id) as (fd, size, recipients):
            return UploadState(size, self._received(fd, size), recipients)

    def put(self, upload_id: str, index: int, data: bytes) -> UploadState:
        """Store piece ``index``: only the next one is accepted; one already held is ignored."""
        with self._locked(upload_id) as (fd, size, recipients):
            state = UploadState(size, self._received(fd, size), recipients)
            if index < 0 or index >= state.chunk_count:
                raise UploadError(400, "no such piece")
            if index < state.next_index:
                return state  # a retry of a piece whose acknowledgement was lost
            if index > state.next_index:
                raise UploadError(409, "pieces must be sent in order")
            offset = index * CHUNK_BYTES
            if len(data) != min(CHUNK_BYTES, size - offset):
                raise UploadError(400, "wrong piece length")
            if index == 0 and not header_matches(data, recipients):
                raise UploadError(400, "not an envelope for the expected recipients")
            os.pwrite(fd, data, offset)
            os.fsync(fd)
            return UploadState(size, offset + len(data), recipients)

    def delete(self, upload_id: str) -> None:
        meta, part = self._paths(upload_id)
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    def link_into(self, upload_id: str, blobs: BlobFolder, recipients: int) -> BlobRef:
        """Make a complete upload a committed blob (a hard link: the upload stays until
        :meth:`delete`, so a report that fails to be recorded can be sent again)."""
        with self._locked(upload_id) as (fd, size, expected):
            if expected != recipients or self._received(fd, size) != size:
                raise UploadError(400, "upload not complete")
            digest = hashlib.sha256()
            with os.fdopen(os.dup(fd), "rb") as part:
                part.seek(0)
                for piece in iter(lambda: part.read(CHUNK_BYTES), b""):
                    digest.update(piece)
            name = secrets.token_hex(16)
            try:
                os.link(self._paths(upload_id)[1], blobs.path_of(name))
            except FileNotFoundError:  # expired (deleted) while it was being attached
                raise UploadError(404, "no such upload") from None
            blobs.sync_dir()
            return BlobRef(name, size, digest.hexdigest())

    def expire(self, now: float | None = None) -> int:
        """Delete uploads idle for :data:`IDLE_SECONDS`; return how many."""
        cutoff = (time.time() if now is None else now) - IDLE_SECONDS
        removed = 0
        for meta in self.root.glob("*.meta"):
            part = meta.with_suffix(".part")
            try:
                touched = max(meta.stat().st_mtime, part.stat().st_mtime)
            except FileNotFoundError:
                touched = 0.0
            if touched < cutoff:
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                removed += 1
        for temp in self.root.glob("*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
        return removed
