"""One ``blagh serve`` per data folder, and what it tells ``blagh status``.

Two servers on one data folder would each run a janitor, fill the same blob pool and answer
for the same store: the second one must not start.  :class:`ServerLock` is an ``fcntl`` lock on
``serve.lock`` held by ``blagh serve`` for as long as it runs (gunicorn's workers inherit the
open file, so the lock lives until the last of them exits).  A lock dies with its process, so a
killed server leaves nothing that reads as "running": :func:`running_pid` asks the lock, not a
pid in a file that may have been reused.

``state.json`` says how the running server was started (tor mode, addresses, when: a day, no
finer).  It is written atomically, 0600, by the ``blagh serve`` process only, at start and stop,
never per request.  ``last-error.json`` holds the last error a worker logged (its message, which
scripts/lint_logging.py keeps free of request data, and the day), written by the housekeeping
round that holds the janitor's lock, once a minute at most.  Nothing here names a reporter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blagh.errors import SetupError

LOCK_FILE = "serve.lock"
STATE_FILE = "state.json"
LAST_ERROR_FILE = "last-error.json"


def today() -> str:
    """The day, the finest time anything here records."""
    return datetime.now(UTC).date().isoformat()


class ServerLock:
    """The lock of one data folder's server: :meth:`acquire` or a clear error."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (process {pid})" if pid else ""
            raise SetupError(
                f"another blagh serve is already running on {self.path.parent}{who}: one data "
                "folder serves one server. Stop it first (systemctl stop, or Ctrl-C), or see "
                "`blagh status`"
            ) from None
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def running_pid(data_dir: Path) -> int | None:
    """The pid of the ``blagh serve`` holding ``data_dir``'s lock, or None when none runs."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, fsync, rename), mode 0600."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            json.dump(data, file, indent=2, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """``path``'s object, or None if it is missing or damaged (status reports, never fails)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class LastError(logging.Handler):
    """Remembers the last ERROR a process logged, for :meth:`flush_to` to write.

    The message is the record's own (with its arguments), without a traceback: a traceback's
    locals and reprs are not checked for request data the way log calls are.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.pending: dict[str, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call must not break the request that made it
            message = str(record.msg)
        self.pending = {"day": today(), "logger": record.name, "message": message[:300]}

    def flush_to(self, data_dir: Path) -> None:
        """Write the error remembered since the last call, if any, to ``last-error.json``."""
        pending, self.pending = self.pending, None
        if pending is not None:
            write_json(data_dir / LAST_ERROR_FILE, pending)
