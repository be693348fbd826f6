"""The free-space floor: new files are refused before anything is written, text still goes through.

Someone who wants reports to stop can try to fill the server's disk.  Below the floor
(``[limits] free_space_floor_mb``) the source interface refuses new files, on both paths, with a
page that says what to do (send the text now, the files later), while text-only reports, which
are a few kilobytes each, keep working.  The check is one ``statvfs`` of the data folder's file
system: cheap enough for every request that carries a file and every piece of a chunked upload.

A write can still run out of space (another program, a floor of 0, a file larger than what is
left): :func:`is_no_space` tells such an error apart, and whoever was writing deletes its
temporary file at once, so the disk is not left fuller than before, and the next request finds
the space that was there.  Nothing here remembers a failure: as soon as space returns, files
are accepted again, with no restart.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from werkzeug.exceptions import HTTPException

from source_interface.errors import SourceInterfaceError

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""A full file system, or the server user's quota used up: both mean "no room", not a bug."""


class NoSpace(SourceInterfaceError, HTTPException):
    """No room to store what was sent (a write ran out of space): a 507 page, nothing kept."""

    code = 507
    description = "insufficient storage"


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for lack of space."""
    return isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS


@dataclass(frozen=True)
class FreeSpace:
    """The floor for one folder's file system; ``floor_bytes`` 0 turns the check off."""

    path: Path
    floor_bytes: int

    def available(self) -> int:
        """Bytes an unprivileged process may still write there (``f_bavail``, not ``f_bfree``:
        the blocks reserved for root are no use to the server)."""
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes would leave at least the floor free."""
        if self.floor_bytes <= 0:
            return True
        return self.available() - max(size, 0) >= self.floor_bytes
