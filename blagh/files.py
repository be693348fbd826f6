"""Writing files that hold secrets: created private, never over another file, flushed to disk.

Shared by ``blagh init`` and ``blagh keygen``, and by later code that writes key material.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data``; raise ``FileExistsError`` if anything is there already.

    ``O_EXCL`` makes the existence check and the creation one step, so a file, or a symlink an
    attacker planted, is never overwritten or followed.  The mode is set at creation (and again
    with ``fchmod``, since the umask may have narrowed it), so the secret is never readable by
    others, even for a moment.  A failed write removes the partial file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries, so the files just created in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
