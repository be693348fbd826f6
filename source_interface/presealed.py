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

Anyone can start uploads, so what they may hold is bounded (:class:`UploadBounds`, from
``[limits]``): in number and in announced bytes, all together and for one form (one browser,
known by a hash of its anti-forgery token, never the token).  Past a bound, the upload idle
longest is given up to make room, if one has been idle :data:`EVICTABLE_AFTER_SECONDS`;
otherwise the answer is 503 "server full" and the page sends the report without JavaScript
(the server seals it as it streams in).  Below the free-space floor, a new upload or a piece
is refused with 507 before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blagh.blobs import BlobFolder, BlobRef, FilePool
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
from source_interface.diskspace import FreeSpace, is_no_space
from source_interface.errors import SourceInterfaceError

CHUNK_BYTES = 1024 * 1024
"""Size of every upload piece but the last: a few seconds over Tor, little lost to a drop."""

IDLE_SECONDS = 3600
"""A partial upload nobody added to for this long is deleted (a dropped circuit is back in
seconds; a reporter who closed the page is not coming back to it)."""

EVICTABLE_AFTER_SECONDS = 300
"""An upload that received no piece for this long may be given up when room is needed.

A piece is 1 MiB: at honest Tor speeds (tens of KB/s) it takes 10 to 60 s, and the page, when a
circuit drops, retries with waits that add up to under a minute before asking again.  Five
minutes covers a piece at 4 KB/s, or a dropped circuit and its retries, with room to spare,
while a flood of uploads that send nothing frees its slots within minutes instead of the hour
of :data:`IDLE_SECONDS`.  The uploads of a form that is still sending (a report's first
files, finished, while the next ones go up) are never given up for another form."""

EXPIRE_EVERY_SECONDS = 60
"""How often, at most, a worker looks through the folder for expired uploads."""

SERVER_FULL = "server full"
"""The reason of a 503 the page understands: send the report without JavaScript instead."""

DISK_FULL = "disk full"
"""The reason of a 507: below the free-space floor, no new file is accepted for now."""


@dataclass(frozen=True)
class UploadBounds:
    """What partial uploads may hold at once (``[limits]`` of the config)."""

    max_uploads: int = 1000
    max_per_form: int = 20
    max_total_bytes: int = 20 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class _Listed:
    """What the folder's listing says of one upload: whose form, and its announced size."""

    form: str
    size: int


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


def form_hash(form_token: str) -> str:
    """What an upload's meta keeps of the form that started it: a hash, so that the folder
    never holds a token that would let someone send forms as that browser."""
    return hashlib.sha256(form_token.encode("utf-8", "replace")).hexdigest()


class UploadFolder:
    """Partial uploads on disk: ``<h>.meta`` (size, recipient count, form hash) and ``<h>.part``.

    ``h`` is the SHA-256 of the upload id, so the folder's listing does not hold the ids, which
    are what lets a browser add to an upload.  Pieces of one upload are written under an
    exclusive ``flock``: gunicorn's workers and threads may serve two at once.  Starting an
    upload takes an exclusive ``flock`` of the folder itself, so that two workers cannot both
    take the last slot.

    Counting is cheap: a piece costs nothing beyond its own upload (and one ``statvfs``); a new
    upload costs one listing of the folder's names, each upload's meta (which never changes)
    being read once per process and remembered.  Only when a bound is reached are the uploads'
    times looked at, to find one to give up.
    """

    def __init__(
        self,
        root: Path,
        bounds: UploadBounds | None = None,
        space: FreeSpace | None = None,
        clock: Callable[[], float] = time.time,
        pool: FilePool | None = None,
    ) -> None:
        """``pool``: where an upload's part file is taken from (the blob folder's, on the same
        file system): the part becomes the blob, so it must not be born when the upload
        starts (blagh/blobs.py)."""
        self.root = root
        self.pool = pool
        self.bounds = bounds or UploadBounds()
        self.space = space
        self._clock = clock
        self._known: dict[str, _Listed] = {}
        self._next_expiry = 0.0
        self._expiry_lock = threading.Lock()
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

    @contextlib.contextmanager
    def _folder_locked(self) -> Iterator[None]:
        """The folder's own lock (a directory can be ``flock``ed): one new upload at a time,
        across threads (each opens its own descriptor) and processes."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- counting and making room ---------------------------------------------------------

    def _listing(self) -> dict[str, _Listed]:
        """Every upload in the folder, by hashed name (call with the folder locked)."""
        with os.scandir(self.root) as entries:
            names = {e.name[: -len(".meta")] for e in entries if e.name.endswith(".meta")}
        for gone in self._known.keys() - names:
            del self._known[gone]
        for name in names - self._known.keys():
            try:
                data = json.loads((self.root / f"{name}.meta").read_text("ascii"))
                self._known[name] = _Listed(str(data.get("form", "")), int(data["size"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._known[name] = _Listed("", 0)  # deleted meanwhile, or unreadable
        return {name: self._known[name] for name in names}

    def _touched(self, name: str) -> float:
        """When an upload last received something (its creation, or its last piece)."""
        times = [0.0]
        for suffix in (".meta", ".part"):
            with contextlib.suppress(FileNotFoundError):
                times.append((self.root / f"{name}{suffix}").stat().st_mtime)
        return max(times)

    def _remove(self, name: str) -> None:
        (self.root / f"{name}.part").unlink(missing_ok=True)
        (self.root / f"{name}.meta").unlink(missing_ok=True)
        self._known.pop(name, None)

    def _make_room(self, listing: dict[str, _Listed], form: str, size: int) -> None:
        """Give up idle uploads until one more of ``size`` bytes for ``form`` fits the bounds,
        the one idle longest first; :class:`UploadError` 503 if that cannot be done."""
        bounds = self.bounds
        if size > bounds.max_total_bytes:
            raise UploadError(503, SERVER_FULL)
        count = len(listing)
        total = sum(listed.size for listed in listing.values())
        mine = sum(1 for listed in listing.values() if listed.form == form)

        def crowded() -> bool:
            return count >= bounds.max_uploads or total + size > bounds.max_total_bytes

        if mine < bounds.max_per_form and not crowded():
            return
        cutoff = self._clock() - EVICTABLE_AFTER_SECONDS
        touched = {name: self._touched(name) for name in listing}
        form_touched: dict[str, float] = {}
        for name, listed in listing.items():
            form_touched[listed.form] = max(form_touched.get(listed.form, 0.0), touched[name])
        idle = sorted((name for name in listing if touched[name] < cutoff), key=touched.__getitem__)
        given_up: set[str] = set()
        # This form's own idle uploads first, if it has too many: a page reloaded mid-upload.
        for name in idle:
            if mine < bounds.max_per_form:
                break
            if listing[name].form == form:
                self._remove(name)
                given_up.add(name)
                count, total, mine = count - 1, total - listing[name].size, mine - 1
        if mine >= bounds.max_per_form:
            raise UploadError(503, SERVER_FULL)
        # Then anyone's, but never an upload of a form still sending pieces.
        for name in idle:
            if not crowded():
                break
            if name not in given_up and form_touched[listing[name].form] < cutoff:
                self._remove(name)
                count, total = count - 1, total - listing[name].size
                mine -= listing[name].form == form
        if crowded():
            raise UploadError(503, SERVER_FULL)

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
        with self._folder_locked():
            return len(self._listing())

    def create(self, size: int, recipients: int, form_token: str) -> str:
        """Start an upload of an envelope of exactly ``size`` bytes; return its id.

        ``form_token`` is the anti-forgery token of the page that asks (only its hash is
        kept).  Raises :class:`UploadError`: 507 below the free-space floor, 503 when the
        bounds are reached and nothing can be given up to make room.
        """
        self._expire_now_and_then()
        if self.space is not None and not self.space.room_for(size):
            raise UploadError(507, DISK_FULL)
        upload_id = secrets.token_hex(16)
        meta, part = self._paths(upload_id)
        temp = meta.with_suffix(".tmp")
        form = form_hash(form_token)
        with self._folder_locked():
            self._make_room(self._listing(), form, size)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
                meta_fd = os.open(temp, flags, 0o600)
                with os.fdopen(meta_fd, "w", encoding="ascii") as meta_file:
                    # 0600 from creation, not after: never readable by others, even for a moment.
                    json.dump({"size": size, "recipients": recipients, "form": form}, meta_file)
                if self.pool is not None:
                    os.close(self.pool.claim(part))
                else:
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.rename(temp, meta)
            except OSError as error:
                temp.unlink(missing_ok=True)
                part.unlink(missing_ok=True)
                if is_no_space(error):
                    raise UploadError(507, DISK_FULL) from None
                raise
        return upload_id

    def _expire_now_and_then(self) -> None:
        """:meth:`expire`, at most every :data:`EXPIRE_EVERY_SECONDS` in this process: it looks
        at every upload, which new uploads should not pay for each time."""
        now = self._clock()
        with self._expiry_lock:
            if now < self._next_expiry:
                return
            self._next_expiry = now + EXPIRE_EVERY_SECONDS
        self.expire(now)

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
            if self.space is not None and not self.space.room_for(len(data)):
                raise UploadError(507, DISK_FULL)
            try:
                written = 0
                while written < len(data):  # a nearly full disk may take a piece in parts
                    written += os.pwrite(fd, data[written:], offset + written)
                os.fsync(fd)
            except OSError as error:
                # Whatever part of the piece was written goes: the upload stays as it was
                # acknowledged, and the page can send this piece again once there is room.
                os.ftruncate(fd, offset)
                if is_no_space(error):
                    raise UploadError(507, DISK_FULL) from None
                raise
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
                blobs.link_in(self._paths(upload_id)[1], name)
            except FileNotFoundError:  # expired (deleted) while it was being attached
                raise UploadError(404, "no such upload") from None
            return BlobRef(name, size, digest.hexdigest())

    def expire(self, now: float | None = None) -> int:
        """Delete uploads idle for :data:`IDLE_SECONDS`; return how many."""
        cutoff = (self._clock() if now is None else now) - IDLE_SECONDS
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
