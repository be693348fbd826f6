"""Running blocking work beside an event loop, in a bounded number of real threads.

The source interface and the pickup API run on gevent workers (source_interface/server.py):
one OS thread serves thousands of connections, so anything that holds that thread — an
argon2id derivation, an fsync, a SQLCipher commit waiting for the write lock — would stall
every reporter at once.  Such work goes through an :class:`Offload`: under gevent it runs in a
gevent thread pool (real OS threads; the calling greenlet waits, the others go on), bounded in
threads and in how many callers may wait; past that bound :class:`Busy` is raised at once, so
a flood gets a "try again in a minute" page instead of a queue that grows without end.

Outside gevent (the Flask test client, the command line, a threaded server) the same object
runs the work in the caller's thread, with at most ``threads`` callers at a time: behaviour
and bounds are the same, only the thread differs.  Which of the two applies is decided at the
first call, after gunicorn's worker has patched the standard library, never at import.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from blagh.errors import BlaghError

try:
    from gevent import monkey
except ImportError:
    # The workstation reaches this module through the blob folder (the vault keeps its envelopes
    # in one) and installs no gevent (pyproject.toml, extra `workstation`): nothing is ever
    # patched there, so the standard library's own lock and thread id are the native ones.
    monkey = None

_T = TypeVar("_T")

_native_lock = threading.Lock if monkey is None else monkey.get_original("threading", "Lock")
_native_ident: Callable[[], int] = (
    _thread.get_ident if monkey is None else monkey.get_original("_thread", "get_ident")
)
_in_a_job: set[int] = set()
"""Native ids of the threads running an offloaded job now, whichever offload it came from."""


class Busy(BlaghError):
    """Every thread of an :class:`Offload` is busy and its queue is full."""


def native_thread_id() -> int:
    """The OS thread's id, the same for every greenlet of that thread (gevent or not)."""
    return _native_ident()


def native_lock() -> Any:
    """A lock of the OS threads, never gevent's: for state shared with offloaded jobs."""
    return _native_lock()


def thread_in_a_job() -> bool:
    """Whether this thread is running an offloaded job now (so it is off the event loop)."""
    return native_thread_id() in _in_a_job


def under_gevent() -> bool:
    """Whether this process is a gevent worker (the standard library is patched)."""
    return monkey is not None and bool(monkey.is_module_patched("threading"))


class Offload:
    """At most ``threads`` jobs at once, at most ``queue`` more waiting, the rest refused."""

    def __init__(self, name: str, threads: int, queue: int) -> None:
        if threads < 1 or queue < 0:
            raise ValueError("an offload needs a thread and a non-negative queue")
        self.name = name
        self.threads = threads
        self.queue = queue
        self._count_lock = _native_lock()
        self._waiting = 0
        self._pool: Any = None
        self._inline: threading.BoundedSemaphore | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Jobs running or waiting now."""
        return self._waiting

    def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``function(*args, **kwargs)`` within the bounds; its result or its exception.

        A job started from inside a job (of this offload or another) runs at once in that
        thread: it is already off the event loop, a nested call to the same offload would wait
        for a thread that is waiting for it, and a gevent pool serves only the loop that made it.
        """
        if native_thread_id() in _in_a_job:
            return function(*args, **kwargs)
        with self._count_lock:
            if self._closed:
                raise Busy(f"{self.name}: closed")
            if self._waiting >= self.threads + self.queue:
                raise Busy(f"{self.name}: every thread is busy and the queue is full")
            self._waiting += 1
        try:
            if under_gevent():
                # The job's exception comes back as a value: gevent's pool would print it, with
                # its traceback and message, to the error log before handing it over.
                failed, outcome = self._gevent_pool().apply(self._caught, (function, args, kwargs))
                if failed:
                    raise outcome
                return outcome  # type: ignore[no-any-return]
            if self._inline is None:
                self._inline = threading.BoundedSemaphore(self.threads)
            with self._inline:
                return self._in_pool(function, args, kwargs)
        finally:
            with self._count_lock:
                self._waiting -= 1

    def _in_pool(self, function: Callable[..., _T], args: Any, kwargs: Any) -> _T:
        me = native_thread_id()
        _in_a_job.add(me)
        try:
            return function(*args, **kwargs)
        finally:
            _in_a_job.discard(me)

    def _caught(
        self, function: Callable[..., _T], args: Any, kwargs: Any
    ) -> tuple[bool, _T | BaseException]:
        try:
            return False, self._in_pool(function, args, kwargs)
        except BaseException as error:
            return True, error

    def _gevent_pool(self) -> Any:
        if self._pool is None:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(self.threads)
        return self._pool

    def close(self) -> None:
        """Refuse new jobs and let the pool's threads end once idle."""
        with self._count_lock:
            self._closed = True
        if self._pool is not None:
            self._pool.kill()
            self._pool = None
