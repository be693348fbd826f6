"""gunicorn's arbiter with one more child: the shared writer of the index.

The workers send their index writes to one process (source_interface/store/shared_writer.py).
gunicorn supervises only its workers, and reaps every child with ``waitpid(-1)``, so this
arbiter does for the writer what gunicorn does for its own sidecar (the "dirty arbiter"): it
forks the writer before the first worker, reaps it by pid before gunicorn's ``waitpid(-1)`` can,
forks another when it dies, and stops it after the workers, whose last writes it still serves.

The listening socket is made here, in the arbiter, once: a new writer inherits it, so a
worker's write made while the writer restarts waits in the socket's backlog instead of being
refused.  The master has no thread of its own, so forking it is safe; the writer does not exec.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn import util
from gunicorn.arbiter import Arbiter

from source_interface.store.index import Index
from source_interface.store.shared_writer import listen

RESPAWN_PAUSE_SECONDS = 1.0
"""At least this long between two starts of the writer: one that cannot open the index does
not fork in a loop (the workers get the busy page meanwhile)."""

STOP_TIMEOUT_SECONDS = 10.0
"""How long the writer has to finish its batch when the server stops, before SIGKILL."""


class WriterArbiter(Arbiter):  # type: ignore[misc]
    """An arbiter that runs ``open_index()``'s :meth:`Index.serve_writes` in a child."""

    def __init__(self, app: Any, socket_path: Path, open_index: Callable[[], Index]) -> None:
        self.writer_socket = socket_path
        self.writer_pid = 0
        self._open_index = open_index
        self._listener: socket.socket | None = None
        self._writer_started = 0.0
        super().__init__(app)

    def start(self) -> None:
        super().start()
        self._listener = listen(self.writer_socket)

    def manage_workers(self) -> None:
        self._manage_writer()
        super().manage_workers()

    def handle_chld(self) -> None:
        self._reap_writer()
        super().handle_chld()

    handle_cld = handle_chld  # gunicorn looks SIGCHLD up by either of its two names

    def stop(self, graceful: bool = True) -> None:
        super().stop(graceful)
        self._stop_writer()

    def close_writer_listener(self) -> None:
        """In a worker, just forked: the listening socket is the writer's, not the worker's."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _manage_writer(self) -> None:
        if self.writer_pid or self._listener is None:
            return
        if time.monotonic() - self._writer_started < RESPAWN_PAUSE_SECONDS:
            return
        self._writer_started = time.monotonic()
        pid = os.fork()
        if pid:
            self.writer_pid = pid
            self.log.info("Started the shared writer (pid: %s)", pid)
            return
        status = 1
        try:
            self._writer_main()
            status = 0
        except BaseException:
            self.log.exception("The shared writer failed")
        finally:
            os._exit(status)

    def _writer_main(self) -> None:
        stopping = False

        def on_stop(_signal: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        for number in self.SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(number, on_stop)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for listener in self.LISTENERS:  # the HTTP ports are the workers'
            listener.sock.close()
        util._setproctitle(f"writer [{self.proc_name}]")
        master = self.pid
        assert self._listener is not None
        index = self._open_index()
        try:
            index.serve_writes(self._listener, lambda: stopping or os.getppid() != master)
        finally:
            index.close()

    def _reap_writer(self) -> None:
        if not self.writer_pid:
            return
        try:
            pid, status = os.waitpid(self.writer_pid, os.WNOHANG)
        except ChildProcessError:  # gunicorn's waitpid(-1) took it first
            pid, status = self.writer_pid, 0
        if pid:
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"code {os.waitstatus_to_exitcode(status)}"
            )
            self.log.warning(
                "The shared writer (pid: %s) ended with %s; another one starts", pid, how
            )
            self.writer_pid = 0

    def _stop_writer(self) -> None:
        pid, self.writer_pid = self.writer_pid, 0
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            while not _reaped(pid):
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    break
                time.sleep(0.05)  # the master, stopping: no request waits on it
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.writer_socket.unlink()


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return bool(done)
