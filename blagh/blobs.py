"""Envelopes on disk: written to a temporary name, fsynced, then renamed into place.

A blob becomes visible under its final name only once all its bytes are on disk, and the index
row that refers to it is committed only after that; so an acknowledged submission is never
lost and a crash leaves at most an unreferenced file, which :meth:`BlobFolder.sweep` removes.
A write or commit that fails (the disk full, above all) deletes its temporary file at once: the
sweep runs only at start-up, and a server that kept such files would stay full until a restart.
Blobs hold envelopes only: nothing here ever sees plaintext.

A blob's file says no more than its row of when it came (docs/threat-model.md):

* its access and modification times are set to the start of the day (UTC) before it is made
  durable, and it is read with ``O_NOATIME``;
* its inode's birth time cannot be set, so, on the server, a blob is not a file created when it
  arrives: it is taken from a :class:`FilePool` of empty files made ahead, in batches, by the
  janitor, and taken at random, so neither its birth time nor its inode number follows arrival;
* its change time (ctime) cannot be set either: the janitor's pass (:meth:`BlobFolder.restamp`)
  touches every blob in turn, so after it every blob has about the same one.
"""

import contextlib
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from blagh.offload import Offload, native_lock

_NAME_BYTES = 16
IO_THREADS = 4
IO_QUEUE = 4096
DAY_SECONDS = 86_400
POOL_SIZE = 1024
"""Empty files the server's pool holds after a refill: a day of reports on a quiet server."""
EMPTY_POOL_RECHECK = 1.0
"""Seconds an empty pool is taken at its word before its folder is listed again: a busy server
empties it in seconds, and the janitor refills it once a minute at most, so listing the empty
folder at every claim in between was work for nothing."""


def day_start_ns(ns: int | None = None) -> int:
    """The start of the UTC day of ``ns`` (now by default), in ns: the time files are given."""
    day = DAY_SECONDS * 10**9
    return ((time.time_ns() if ns is None else ns) // day) * day


def stamp_day(target: int | Path) -> None:
    """Set a file's access and modification times (a descriptor or a path) to today's start.

    Its change time becomes now: :meth:`BlobFolder.restamp` evens those out later."""
    day = day_start_ns()
    os.utime(target, ns=(day, day))


class FilePool:
    """Empty files made ahead of need, in one folder, handed out at random.

    A file takes the birth time of the batch it was made in, not of the submission that fills
    it.  :meth:`fill` makes a batch only when fewer than a quarter are left: a batch's birth
    time then says only that hundreds of files were taken since the last one.  An empty pool
    is not an error: :meth:`claim` makes a file of its own then (with its own birth time).
    """

    def __init__(self, root: Path, size: int = POOL_SIZE) -> None:
        self.root = root
        self.size = size
        self._lock = native_lock()
        self._names: list[str] = []
        self._listed_empty = -EMPTY_POOL_RECHECK
        """When a listing last found the folder empty (``time.monotonic``)."""
        root.mkdir(mode=0o700, exist_ok=True)

    def claim(self, dest: Path) -> int:
        """Move a pooled file to ``dest`` (a new name) and open it for writing; a new file
        if the pool is empty.  Safe across processes: a rename either takes a file or fails."""
        listed = False
        while True:
            with self._lock:
                if not self._names and not listed:
                    now = time.monotonic()
                    if now - self._listed_empty >= EMPTY_POOL_RECHECK:
                        self._names = _file_names(self.root)
                        secrets.SystemRandom().shuffle(self._names)
                        if not self._names:
                            self._listed_empty = now
                    listed = True
                name = self._names.pop() if self._names else None
            if name is None:
                return os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.rename(self.root / name, dest)
            except FileNotFoundError:
                continue  # another worker took it
            return os.open(dest, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)

    def count(self) -> int:
        return len(_file_names(self.root))

    def fill(self) -> int:
        """Make a batch of files if fewer than a quarter of :attr:`size` are left; how many."""
        missing = self.size - self.count()
        if missing <= self.size - self.size // 4:
            return 0
        for _ in range(missing):
            path = self.root / secrets.token_hex(_NAME_BYTES)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                stamp_day(fd)
            finally:
                os.close(fd)
        _sync_dir(self.root)
        with self._lock:
            self._listed_empty = -EMPTY_POOL_RECHECK  # filled here: the next claim looks again
        return missing


@dataclass(frozen=True)
class BlobRef:
    """A committed blob: its file name in the folder, size and SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


class PendingBlob:
    """A blob being written. Either :meth:`commit` or :meth:`discard` it."""

    def __init__(self, folder: "BlobFolder") -> None:
        self._folder = folder
        self.name = secrets.token_hex(_NAME_BYTES)
        self._temp = folder.temp_dir / self.name
        fd = folder.claim(self._temp)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        """Append ``data``; if that fails (no space left), the blob is discarded, then the error
        raised."""
        try:
            self._file.write(data)
        except BaseException:
            self.discard()
            raise
        self._hash.update(data)
        self._size += len(data)

    def commit(self) -> BlobRef:
        """Flush, fsync, and move into place; the blob then survives a crash.  A failure
        discards the blob before it is raised.

        The fsyncs run on the folder's I/O threads: under gevent the event loop serves
        everyone else meanwhile.
        """
        self._folder.io.run(self._make_durable)
        self._done = True
        return BlobRef(self.name, self._size, self._hash.hexdigest())

    def _make_durable(self) -> None:
        try:
            self._file.flush()
            stamp_day(self._file.fileno())
            os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self._temp, self._folder.path_of(self.name))
        except BaseException:
            self.discard()
            raise
        try:
            self._folder.renamed()
        except BaseException:
            self._folder.delete(self.name)  # no row will name it: not left for the sweep
            raise

    def discard(self) -> None:
        """Delete the temporary file (closing it may fail again on a full disk: it is closed
        all the same, and the file removed)."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._file.close()
        self._temp.unlink(missing_ok=True)


class BlobFolder:
    """The folder of envelope files, with a ``tmp/`` beside them for blobs being written."""

    pending_class: "type[PendingBlob]" = PendingBlob
    """What :meth:`new` makes: another backend keeps committed blobs elsewhere
    (source_interface/store/postgres.py)."""

    def __init__(self, root: Path, *, pool_size: int = 0) -> None:
        """``pool_size``: new blobs are taken from a :class:`FilePool` of that many files in
        ``pool/`` (the server's store); 0, each is a new file (the workstation, which receives
        in bundles, not one submission at a time)."""
        self.root = root
        self._count_lock = native_lock()
        self._renames = 0
        self._sync_lock = native_lock()
        self._synced = 0
        self.temp_dir = root / "tmp"
        self.io = Offload("blob fsync", threads=IO_THREADS, queue=IO_QUEUE)
        """Where fsyncs run: beside the event loop, a few at a time."""
        # Each level with its own mode: mkdir(parents=True) would make ``root`` 0777 & ~umask.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.temp_dir.mkdir(mode=0o700, exist_ok=True)
        self.pool = FilePool(root / "pool", pool_size) if pool_size else None

    def claim(self, dest: Path) -> int:
        """A new file at ``dest``, open for writing: from the pool if there is one."""
        if self.pool is not None:
            return self.pool.claim(dest)
        return os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def new(self) -> PendingBlob:
        """A blob to stream into.  Its file is created on the I/O threads: creating a file
        waits for the folder's lock, which a rename or folder fsync may be holding, and under
        gevent that wait would stop the event loop."""
        return self.io.run(self.pending_class, self)

    def write_whole(self, data: bytes) -> BlobRef:
        """Store ``data`` (a small envelope held whole) as a durable blob, in one job on the
        I/O threads: create, write, fsync, rename, folder fsync."""
        return self.io.run(self._write_whole, data)

    def _write_whole(self, data: bytes) -> BlobRef:
        blob = self.pending_class(self)
        blob.write(data)
        return blob.commit()

    def path_of(self, name: str) -> Path:
        if len(name) != 2 * _NAME_BYTES or not all(c in "0123456789abcdef" for c in name):
            raise ValueError("not a blob name")
        return self.root / name

    def open(self, name: str) -> BinaryIO:
        """Open a blob for reading without recording when (``O_NOATIME``, which only the
        file's owner may ask for: anyone else reads it plainly)."""
        path = self.path_of(name)
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags | os.O_NOATIME)
        except PermissionError:
            fd = os.open(path, flags)
        return os.fdopen(fd, "rb")

    def link_in(self, path: Path, name: str) -> None:
        """Make the finished file at ``path`` the committed blob ``name`` (a hard link: the
        file stays where it is too), durably."""
        os.link(path, self.path_of(name))
        self.sync_dir()

    def stamp(self, name: str) -> None:
        """Give a blob that was not written through :class:`PendingBlob` (a finished upload
        linked in) today's start as its times."""
        stamp_day(self.path_of(name))

    def restamp(self) -> int:
        """Touch every blob, in the folder's order: each one's change time becomes this pass's,
        so that it no longer tells when the blob was stored; access and modification times are
        set back to the start of their day.  Returns how many."""
        touched = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    os.utime(
                        entry.path,
                        ns=(day_start_ns(st.st_atime_ns), day_start_ns(st.st_mtime_ns)),
                        follow_symlinks=False,
                    )
                    touched += 1
        return touched

    def delete(self, name: str) -> None:
        self.path_of(name).unlink(missing_ok=True)

    def renamed(self) -> None:
        """A blob was renamed into the folder: return once that rename is durable.

        Blobs committed together share folder fsyncs: a commit whose rename an fsync already
        covers (one that began after the rename) returns at once, the others wait for the
        one running and then start the next, for every rename made so far.  On a busy server
        a few fsyncs cover dozens of blobs, and the index's COMMIT, which follows, waits for
        none of them: a :class:`BlobRef` is never handed out before its blob is durable.
        """
        with self._count_lock:
            self._renames += 1
            mine = self._renames
        with self._sync_lock:
            if self._synced >= mine:
                return
            with self._count_lock:
                covered = self._renames
            self.sync_dir()
            self._synced = covered

    def sync_dir(self) -> None:
        _sync_dir(self.root)

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def sweep(self, referenced: set[str], min_age: float = 0.0, now: float | None = None) -> int:
        """Remove temporary files and blobs no index row refers to; return how many.

        Only files whose inode last changed ``min_age`` seconds ago or more (``now`` being
        the time, by default the clock's): with 0 (nothing in flight) every one of them.  The
        change time, not the modification time, which is the day's start for every blob:
        writing, renaming, stamping and :meth:`restamp` all move it to the present.
        """
        cutoff = (time.time() if now is None else now) - min_age
        removed = self._remove_temporary(cutoff)
        for name in self.names() - referenced:
            if _older(self.root / name, cutoff):
                self.delete(name)
                removed += 1
        return removed

    def clear_temporary(self) -> int:
        """Remove every temporary file: what a crash left half-written.  Only before serving."""
        return self._remove_temporary(float("inf"))

    def _remove_temporary(self, cutoff: float) -> int:
        removed = 0
        for temp in self.temp_dir.iterdir():
            if _older(temp, cutoff):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_ctime <= cutoff
    except FileNotFoundError:
        return False


def _file_names(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
