"""Group commit: the index's writes, queued while the writer is busy, share one transaction.

Every write of a worker goes through one writer thread (no request sleeps in SQLite's busy
handler).  One commit with ``synchronous = FULL`` costs an fsync of the WAL, a few ms, so a
writer committing each report on its own is the limit of the whole worker.  Here the writes
that arrive while a transaction is being committed wait together and go in the next one, each
inside a savepoint of its own: one write that fails (a conflict, a constraint) is rolled back
alone, and one fsync makes a whole batch durable.  A write's caller gets its result only once
the batch's COMMIT has returned, so nothing is acknowledged before it is on disk; if the
COMMIT fails, every write of the batch fails with it.  The writers of the other processes on
the same index take turns with this one on a file lock (:class:`WriterTurns`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blagh.offload import Offload, native_lock, native_thread_id, thread_in_a_job

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
"""A write to run: the function, its positional and its keyword arguments."""

MAX_BATCH = 256
"""Writes in one transaction at most: a batch stays short for readers and for the WAL."""


class WriterTurns:
    """The writers of every process on one database take turns on a file lock (``flock``)
    before they ask SQLite for its write lock.

    SQLite's busy handler polls a held lock with sleeps that grow to 100 ms: two workers'
    writers meeting there made reports wait tens of ms more than the other worker's
    transaction lasted.  The kernel hands a released ``flock`` to the next waiter at once.
    SQLite's own lock still decides: anything that writes without a turn (a command-line tool,
    an older server) only meets the busy handler again.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = native_lock()
        self._fd: int | None = None
        self._pid = 0
        # Made now, when the index opens: made at the first write, its birth time would say
        # when the first submission after a start came.  Taking turns changes none of its times.
        self._open()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        # An flock belongs to the open file, which a fork shares: each process opens its own.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


@dataclass
class _Write:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    finished: bool = False
    take_over: bool = False
    """Set (with ``done``) when this write's caller must drain the queue next."""


@dataclass
class _Batch:
    writes: list[_Write]
    open: bool = True
    """Whether the writer may still add the writes queued meanwhile (under the queue's lock):
    false once its caller stops waiting for it, so no write is taken that nobody will wake."""


class GroupCommit:
    """Runs write functions on ``offload``'s one thread, several to a transaction.

    ``connection()`` gives the writer thread's connection; the functions it runs open their
    own ``transaction()``, which the index turns into a savepoint inside a batch.  The caller
    that finds the writer idle drains the queue until its own write is committed, then hands
    the queue to the next waiting caller: nobody drains for others forever.
    """

    def __init__(
        self,
        offload: Offload,
        connection: Callable[[], sqlite3.Connection],
        before_commit: Callable[[], None] = lambda: None,
        turn: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._offload = offload
        self._connection = connection
        self._before_commit = before_commit
        self._turn = turn
        self._fresh_savepoint: int | None = None
        """The thread running a write that has opened no transaction of its own yet."""
        self._lock = native_lock()
        """Guards the queue, which the writer thread reads too (:meth:`_take_more`)."""
        self._pending: list[_Write] = []
        self._draining = False
        self.batches = 0
        """How many transactions were committed (for tests and the bench)."""

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if thread_in_a_job():
            # Already on the writer thread (a write inside a write), or on another job's
            # thread, off the event loop: run here, in a transaction of its own if none is open.
            return function(*args, **kwargs)
        write = _Write(function, args, kwargs)
        with self._lock:
            self._pending.append(write)
            drain = not self._draining
            self._draining = True
        while not write.finished:
            if drain:
                self._drain_until(write)
            else:
                write.done.wait()
                if write.take_over:
                    write.take_over = False
                    write.done.clear()
                    drain = True
        if write.error is not None:
            raise write.error
        return write.value

    def run_here(self, calls: list[Call]) -> list[tuple[bool, Any]]:
        """Run ``calls`` as one batch in this thread, now: ``(True, value)`` or ``(False,
        exception)`` for each, once the batch's COMMIT has returned (or failed, failing all).

        The shared writer's loop (source_interface/store/shared_writer.py) gathers the batch
        itself: it is the only writer of its process, so there is no queue to drain."""
        writes = [_Write(function, args, kwargs) for function, args, kwargs in calls]
        try:
            # Through the offload, outside gevent, it runs here, marked as a job: a write that
            # calls another write runs that one in place, inside the batch.
            self._offload.run(self._commit, _Batch(writes, open=False))
        except Exception as error:  # no turn on the lock file, or no connection
            for write in writes:
                if write.error is None:
                    write.error, write.value = error, None
        return [
            (False, write.error) if write.error is not None else (True, write.value)
            for write in writes
        ]

    def take_fresh_savepoint(self) -> bool:
        """Whether the running write has opened no transaction of its own yet (and from now
        on, has): its first can use the write's savepoint, ``one_write``, instead of one more.
        Asked from any other thread (a write running on its own connection), False."""
        if self._fresh_savepoint is None or self._fresh_savepoint != native_thread_id():
            return False
        self._fresh_savepoint = None
        return True

    def _drain_until(self, mine: _Write) -> None:
        try:
            while not mine.finished:
                with self._lock:
                    batch = _Batch(self._pending[:MAX_BATCH])
                    del self._pending[:MAX_BATCH]
                error: BaseException | None = None
                try:
                    self._offload.run(self._commit, batch)
                except BaseException as caught:  # refused (busy, closed), or this caller killed
                    error = caught
                with self._lock:
                    batch.open = False  # from here on, the writer adds nothing to it
                for write in batch.writes:
                    if error is not None and write.error is None:
                        write.error, write.value = error, None
                    write.finished = True
                    write.done.set()
                if error is not None and not isinstance(error, Exception):
                    raise error
        finally:
            with self._lock:
                if self._pending:
                    self._pending[0].take_over = True
                    self._pending[0].done.set()
                else:
                    self._draining = False

    def _commit(self, batch: _Batch) -> None:
        db = self._connection()
        # Inside a transaction the caller opened on this connection (no gevent: the writer
        # runs in the caller's thread), the batch is a savepoint of it, committed with it.
        if db.in_transaction:
            self._run_batch(db, batch.writes, outer=True)
        else:
            with self._turn():
                self._take_more(batch)
                self._run_batch(db, batch.writes, outer=False)
        self.batches += 1

    def _take_more(self, batch: _Batch) -> None:
        """Add to ``batch`` the writes queued while it waited for its turn.

        Another process's writer held the index meanwhile; left in the queue, those writes
        would wait for one more turn, with its own pages read back (the other writer's commit
        emptied this connection's page cache) and its own fsync."""
        with self._lock:
            if batch.open:
                more = self._pending[: MAX_BATCH - len(batch.writes)]
                del self._pending[: len(more)]
                batch.writes.extend(more)

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Write], outer: bool) -> None:
        db.execute("SAVEPOINT batch" if outer else "BEGIN IMMEDIATE")
        try:
            for write in batch:
                db.execute("SAVEPOINT one_write")
                self._fresh_savepoint = native_thread_id()
                try:
                    write.value = write.function(*write.args, **write.kwargs)
                except BaseException as error:
                    db.execute("ROLLBACK TO one_write")
                    write.error = error
                finally:
                    self._fresh_savepoint = None
                db.execute("RELEASE one_write")
            if outer:
                db.execute("RELEASE batch")
            else:
                self._before_commit()
                db.execute("COMMIT")
        except BaseException as error:
            if outer:
                db.execute("ROLLBACK TO batch")
                db.execute("RELEASE batch")
            elif db.in_transaction:
                db.execute("ROLLBACK")
            for write in batch:
                if write.error is None:
                    write.error = error
                    write.value = None
