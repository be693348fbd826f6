"""Housekeeping beside the requests: expired drafts, sessions and partial uploads, orphan blobs,
and what keeps the disk from telling when things came (docs/threat-model.md): the index
scrubbed after deletions, the blob pool refilled, the blobs' change times evened out.

None of it runs on the request path (a submission used to scan every draft) nor before serving
(start-up used to list the whole blob folder).  Each worker runs a janitor greenlet; a
non-blocking file lock lets one worker at a time do a round, and the work itself runs on the
blob folder's I/O threads, so the event loop keeps serving.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from source_interface.presealed import UploadFolder
from source_interface.store.protocol import ServerStore

HOUSEKEEPING_SECONDS = 60.0
"""Drafts, sessions and partial uploads are expired at most this long after their time; a
scrub held back by readers is tried again this often."""

SWEEP_SECONDS = 2 * 3600.0
"""How often the blob folder is listed for files no row refers to (a crash's leftovers), and
every blob touched so that its change time is the pass's, not its arrival's: a blob's change
time tells when it came for at most this long.  More than :data:`SWEEP_MIN_AGE_SECONDS`, since
a touched file looks recent to the next sweep for that long."""

FIRST_SWEEP_SECONDS = 300.0
"""The first listing, a while after start rather than before serving."""

SWEEP_MIN_AGE_SECONDS = 3600.0
"""Files younger than this may belong to a request in flight: the sweep leaves them."""

log = logging.getLogger(__name__)


class Janitor:
    """One round of housekeeping at a time, across the workers of one data folder."""

    def __init__(
        self,
        store: ServerStore,
        uploads: UploadFolder,
        lock_path: Path,
        report: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._lock_path = lock_path
        self._report = report
        self._next_sweep = time.monotonic() + FIRST_SWEEP_SECONDS

    def housekeeping(self) -> None:
        """Expire drafts, sessions and idle partial uploads (indexed deletes; no listing)."""
        self._store.housekeeping()
        self._uploads.expire()

    def sweep(self, now: float | None = None) -> int:
        """Remove orphan blobs unchanged for an hour, then touch every other blob (its change
        time becomes now); return how many were removed.  ``now`` stands for the clock."""
        removed = self._store.sweep(min_age=SWEEP_MIN_AGE_SECONDS, now=now)
        self._store.blobs.restamp()
        return removed

    def round(self) -> None:
        """What is due now, if no other worker is doing it."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            self._store.blobs.io.run(self.housekeeping)
            if self._report is not None:  # blagh/serverstate.py: the last error, for status
                self._store.blobs.io.run(self._report)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
                self._store.blobs.io.run(self.sweep)
        finally:
            os.close(fd)


def run_forever(janitor: Janitor, wait: Callable[[float], object]) -> None:
    """Rounds every :data:`HOUSEKEEPING_SECONDS`; a failed round is logged and retried."""
    while True:
        wait(HOUSEKEEPING_SECONDS)
        try:
            janitor.round()
        except Exception:
            log.exception("housekeeping failed; trying again in a minute")
