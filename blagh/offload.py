"""Running blocking work beside an event loop, in a bounded number of real threads.

The source interface and the pickup API run on gevent workers (source_interface/server.py):
one OS thread serves thousands of connections, so anything that holds that thread — an
argon2id derivation, an fsync, a SQLCipher commit waiting for the write lock — would stall
every reporter at once.  Such work goes through an :class:`Offload`: under gevent it runs in
real OS threads of its own (the calling greenlet waits, the others go on), bounded in threads
and in how many callers may wait; past that bound :class:`Busy` is raised at once, so a flood
gets a "try again in a minute" page instead of a queue that grows without end.

Outside gevent (the Flask test client, the command line, a threaded server) the same object
runs the work in the caller's thread, with at most ``threads`` callers at a time: behaviour
and bounds are the same, only the thread differs.  Which of the two applies is decided at the
first call, after gunicorn's worker has patched the standard library, never at import.
"""

from __future__ import annotations

import _thread
import os
import threading
from _queue import SimpleQueue  # the C queue: gevent patches `queue`, never `_queue`
from collections import deque
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
_native_start: Callable[..., int] = (
    _thread.start_new_thread
    if monkey is None
    else monkey.get_original("_thread", "start_new_thread")
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
        self._pool: _LoopThreads | None = None
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
        for a thread that is waiting for it, and the threads serve only the loop that made them.
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
                # The job's exception comes back as a value, raised here, in the caller.
                pool = self._loop_threads()
                if pool is None:  # a thread of its own, not the loop's: nothing to stall
                    return self._in_pool(function, args, kwargs)
                failed, outcome = pool.apply(lambda: self._caught(function, args, kwargs))
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

    def _loop_threads(self) -> _LoopThreads | None:
        """This process's threads, made on the first job (after the fork, in the worker), for
        the loop of the thread that made them; None in any other thread (another loop's).

        Under gevent every thread of the worker but the jobs' own is a greenlet of its loop."""
        pool = self._pool
        if pool is None or pool.pid != os.getpid():
            pool = self._pool = _LoopThreads(self.threads)
        return pool if pool.loop_thread == native_thread_id() else None

    def close(self) -> None:
        """Refuse new jobs and let the threads end once the jobs queued are done."""
        with self._count_lock:
            self._closed = True
        if self._pool is not None and self._pool.pid == os.getpid():
            self._pool.stop()
        self._pool = None


class _LoopThreads:
    """OS threads serving one gevent loop: jobs go to them through a C queue, and results come
    back through one async watcher, which hands each to the greenlet waiting for it.

    gevent's own ThreadPool makes a watcher, an AsyncResult and a few greenlet switches per
    job: about 40 µs of CPU each time, against 6 µs here, and a report makes two hand-offs.
    """

    def __init__(self, threads: int) -> None:
        from gevent.hub import Waiter, get_hub

        self._waiter = Waiter
        self.pid = os.getpid()
        self.loop_thread = native_thread_id()
        self._threads = threads
        self._jobs: SimpleQueue[tuple[Callable[[], Any], Any] | None] = SimpleQueue()
        self._done: deque[tuple[Any, Any]] = deque()
        self._waiting = 0
        """Jobs given and not yet delivered (read and written on the loop's thread only)."""
        self._wake = get_hub().loop.async_()
        self._wake.start(self._deliver)
        self._wake.ref = False  # an idle pool does not keep the loop running
        for _ in range(threads):
            _native_start(self._work, ())

    def apply(self, job: Callable[[], Any]) -> Any:
        """Run ``job`` (which must not raise) on a thread; its result, once delivered."""
        waiter = self._waiter()
        self._waiting += 1
        self._wake.ref = True  # while a greenlet waits, the loop must run on
        self._jobs.put((job, waiter))
        return waiter.get()

    def stop(self) -> None:
        for _ in range(self._threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, waiter = item
            self._done.append((waiter, job()))
            self._wake.send()

    def _deliver(self) -> None:
        # On the loop's thread.  A waiter whose greenlet was killed meanwhile keeps the value.
        while self._done:
            waiter, outcome = self._done.popleft()
            self._waiting -= 1
            waiter.switch(outcome)
        if not self._waiting:
            self._wake.ref = False
