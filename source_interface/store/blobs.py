"""Envelopes on disk: written to a temporary name, fsynced, then renamed into place.

A blob becomes visible under its final name only once all its bytes are on disk, and the index
row that refers to it is committed only after that; so an acknowledged submission is never
lost and a crash leaves at most an unreferenced file, which :meth:`BlobFolder.sweep` removes.
A write or commit that fails (the disk full, above all) deletes its temporary file at once: the
sweep runs only at start-up, and a server that kept such files would stay full until a restart.
Blobs hold envelopes only: nothing here ever sees plaintext.
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
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
            os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self._temp, self._folder.path_of(self.name))
        except BaseException:
            self.discard()
            raise
        self._folder.renamed()

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

    def __init__(self, root: Path, *, defer_folder_sync: bool = False) -> None:
        """``defer_folder_sync``: a committed blob's rename is made durable by the next
        :meth:`sync_if_renamed` (the server store's index calls it before every COMMIT, so one
        folder fsync covers every blob a batch of rows refers to) instead of a folder fsync of
        its own."""
        self.root = root
        self._defer_sync = defer_folder_sync
        self._sync_lock = native_lock()
        self._renames = 0
        self._synced = 0
        self.temp_dir = root / "tmp"
        self.io = Offload("blob fsync", threads=IO_THREADS, queue=IO_QUEUE)
        """Where fsyncs run: beside the event loop, a few at a time."""
        # Each level with its own mode: mkdir(parents=True) would make ``root`` 0777 & ~umask.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.temp_dir.mkdir(mode=0o700, exist_ok=True)

    def new(self) -> PendingBlob:
        """A blob to stream into.  Its file is created on the I/O threads: creating a file
        waits for the folder's lock, which a rename or folder fsync may be holding, and under
        gevent that wait would stop the event loop."""
        return self.io.run(PendingBlob, self)

    def write_whole(self, data: bytes) -> BlobRef:
        """Store ``data`` (a small envelope held whole) as a durable blob, in one job on the
        I/O threads: create, write, fsync, rename, folder fsync."""
        return self.io.run(self._write_whole, data)

    def _write_whole(self, data: bytes) -> BlobRef:
        blob = PendingBlob(self)
        blob.write(data)
        return blob.commit()

    def path_of(self, name: str) -> Path:
        if len(name) != 2 * _NAME_BYTES or not all(c in "0123456789abcdef" for c in name):
            raise ValueError("not a blob name")
        return self.root / name

    def open(self, name: str) -> BinaryIO:
        return self.path_of(name).open("rb")

    def delete(self, name: str) -> None:
        self.path_of(name).unlink(missing_ok=True)

    def renamed(self) -> None:
        """A blob was renamed into the folder: sync the folder now, or note it for later."""
        if not self._defer_sync:
            self.sync_dir()
            return
        with self._sync_lock:
            self._renames += 1

    def sync_if_renamed(self) -> None:
        """Make every rename so far durable (one folder fsync), if there was any since the
        last; before a row that refers to a new blob commits."""
        with self._sync_lock:
            target = self._renames
        if target == self._synced:
            return
        self.sync_dir()
        with self._sync_lock:
            self._synced = max(self._synced, target)

    def sync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def sweep(self, referenced: set[str], min_age: float = 0.0) -> int:
        """Remove temporary files and blobs no index row refers to; return how many.

        Only files last written ``min_age`` seconds ago or more: with 0 (nothing in flight)
        every one of them.
        """
        cutoff = time.time() - min_age
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
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False
