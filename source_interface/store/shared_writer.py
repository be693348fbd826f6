"""One writer for every worker of a server: the index's writes travel to it over a Unix socket.

Each worker writing on a connection of its own cost about a sixth of the server's rate
(docs/availability.md): the workers' writers took turns on the index, so each batch waited for
the other worker's commit and its fsync, then read back from disk the pages that commit had
changed.  Here one process holds the only writing connection, keeps its pages cached, and puts
everything the workers sent meanwhile in one transaction (:meth:`GroupCommit.run_here`).

A worker sends ``(method, args, kwargs)`` for a write method of :class:`Index` and waits on the
socket: under gevent only the calling greenlet waits.  A reply is sent once the batch's COMMIT
has returned, so nothing is acknowledged before it is on disk; if the writer dies first, the
caller gets :class:`WriterUnavailable` (the busy page) and SQLite rolls the batch back.  Both
ends unpickle through an allow-list of the index's records and of exception classes, never a
function.  The socket lives in the store's 0700 folder, so only the server's user reaches it.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import os
import pickle
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlcipher3

from blagh.blobs import BlobRef
from blagh.errors import SetupError
from blagh.offload import Busy, native_lock
from source_interface.errors import SourceInterfaceError
from source_interface.store import records
from source_interface.store.writes import Call

_FRAME = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
"""The largest request or reply: a bundle of replies is the largest write, and far below it."""

CONNECTIONS_PER_CLIENT = 32
"""Writes one worker has on their way at once; the rest wait for a connection (and past
``waiting``, get the busy page)."""

MAX_CONNECTIONS = 1024
"""Connections the writer holds at once, every worker's together."""

REPLY_TIMEOUT_SECONDS = 60.0
"""How long a write waits for its reply before the worker gives up on it (a hung disk)."""

SOCKET_PATH_MAX = 100
"""A Unix socket's path is limited to 108 bytes with its terminating zero, less on some kernels."""

log = logging.getLogger(__name__)


class WriterUnavailable(Busy):
    """The shared writer could not be reached, or went away before it answered: the write may
    or may not have been committed; the submission's key tells (a second try is refused as a
    duplicate if the first one went in)."""


class WriteFailed(SourceInterfaceError):
    """A write failed with an exception that cannot travel back as it is (its class is named)."""


class SocketPathTooLong(SourceInterfaceError, SetupError):
    """The data folder's path leaves no room for the writer's socket (a Unix socket's limit)."""


class Refused(SourceInterfaceError):
    """A frame named a class, or a method, that the other end does not accept."""


def _allowed_classes() -> dict[tuple[str, str], type]:
    allowed: dict[tuple[str, str], type] = {}

    def allow(cls: type) -> None:
        allowed[cls.__module__, cls.__qualname__] = cls

    for value in vars(records).values():
        if isinstance(value, type) and value.__module__ == records.__name__:
            allow(value)
    allow(BlobRef)
    # Exceptions a write may raise; never SystemExit, KeyboardInterrupt or GeneratorExit.
    for value in vars(builtins).values():
        if isinstance(value, type) and issubclass(value, Exception):
            allow(value)
    for cls in (set, frozenset, bytearray, WriteFailed, WriterUnavailable, Busy):
        allow(cls)
    for value in vars(sqlcipher3).values():
        if isinstance(value, type) and issubclass(value, Exception):
            allow(value)
    return allowed


_ALLOWED: dict[tuple[str, str], type] | None = None


def _allowed(module: str, name: str) -> type | None:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_classes()
    return _ALLOWED.get((module, name))


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        cls = _allowed(module, name)
        if cls is None:
            raise Refused(f"{module}.{name} may not cross the writer's socket")
        return cls


def encode(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME:
        raise WriteFailed(f"a message of {len(body)} bytes is larger than {MAX_FRAME}")
    return _FRAME.pack(len(body)) + body


def decode(body: bytes) -> Any:
    return _Unpickler(io.BytesIO(body)).load()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionResetError("the writer closed the connection")
        chunks += chunk
    return bytes(chunks)


def _read_frame(sock: socket.socket) -> bytes:
    """One frame's body; a reply usually comes whole in the first read (one call, not two)."""
    data = sock.recv(1 << 16)
    if not data:
        raise ConnectionResetError("the writer closed the connection")
    if len(data) < _FRAME.size:
        data += _recv_exactly(sock, _FRAME.size - len(data))
    (size,) = _FRAME.unpack_from(data)
    if size > MAX_FRAME:
        raise ConnectionResetError("the writer sent an oversized reply")
    end = _FRAME.size + size
    if len(data) < end:
        data += _recv_exactly(sock, end - len(data))
    return data[_FRAME.size : end]


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise SocketPathTooLong(
            f"{path} is too long for a Unix socket ({SOCKET_PATH_MAX} bytes at most): "
            "use a data folder with a shorter path"
        )


class RemoteWrites:
    """A worker's end: what :class:`~source_interface.store.writes.GroupCommit` is in one
    process, on the shared writer's socket.  A bounded pool of connections, reused."""

    def __init__(
        self, path: Path, connections: int = CONNECTIONS_PER_CLIENT, waiting: int = 4096
    ) -> None:
        check_socket_path(path)
        self._path = path
        self._connections = connections
        self._waiting_limit = waiting
        self._lock = native_lock()
        self._waiting = 0
        self._idle: list[socket.socket] = []
        self._pid = os.getpid()
        self._slots: threading.BoundedSemaphore | None = None

    def take_fresh_savepoint(self) -> bool:
        return False  # writes never run in this process

    def run(self, function: Callable[..., Any], index: object, *args: Any, **kwargs: Any) -> Any:
        request = encode((function.__name__, args, kwargs))
        with self._lock:
            if self._waiting >= self._connections + self._waiting_limit:
                raise Busy("the index's writer: too many writes waiting")
            self._waiting += 1
        try:
            slots = self._pool_slots()
            with slots:
                ok, value = self._call(request)
        finally:
            with self._lock:
                self._waiting -= 1
        if not ok:
            raise value
        return value

    def _pool_slots(self) -> threading.BoundedSemaphore:
        # Made on first use, in the worker, after gevent patched threading (a cooperative
        # semaphore there); a fork's child starts with no connection of its parent's.
        if self._slots is None or self._pid != os.getpid():
            self._idle = []
            self._pid = os.getpid()
            self._slots = threading.BoundedSemaphore(self._connections)
        return self._slots

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(REPLY_TIMEOUT_SECONDS)
        try:
            sock.connect(os.fspath(self._path))
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(self, request: bytes) -> socket.socket:
        """A connection that took ``request``.  A kept one whose writer has died refuses it
        whole (nothing reached a writer): then every kept one is as stale, and a new one
        waits in the listener's backlog while the arbiter starts the next writer."""
        while self._idle:
            sock = self._idle.pop()
            try:
                sock.sendall(request)
                return sock
            except OSError:
                sock.close()
                for stale in self._idle:
                    stale.close()
                self._idle = []
        sock = self._connect()
        try:
            sock.sendall(request)
        except BaseException:
            sock.close()
            raise
        return sock

    def _call(self, request: bytes) -> tuple[bool, Any]:
        sock = None
        try:
            sock = self._send(request)
            reply = decode(_read_frame(sock))
        except (OSError, EOFError) as error:
            if sock is not None:
                sock.close()
            raise WriterUnavailable(
                "the index's writer is restarting or unreachable; try again in a moment"
            ) from error
        except BaseException:
            if sock is not None:
                sock.close()  # interrupted half-way: the connection's state is unknown
            raise
        self._idle.append(sock)
        if not (isinstance(reply, tuple) and len(reply) == 2):
            raise WriteFailed("the writer's reply was not understood")
        return reply

    def close(self) -> None:
        for sock in self._idle:
            sock.close()
        self._idle = []


def listen(path: Path) -> socket.socket:
    """The writer's listening socket at ``path`` (a stale one from a crash is replaced)."""
    check_socket_path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(os.fspath(path))
    finally:
        os.umask(old_mask)
    listener.listen(socket.SOMAXCONN)
    listener.set_inheritable(False)
    return listener


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()


class WriterService:
    """The writer's end: reads every request that has arrived, runs them as one batch (at most
    :data:`~source_interface.store.writes.MAX_BATCH`), answers each, and starts again.

    ``batch(calls)`` runs ``[(function, args, kwargs)]`` in one transaction and gives
    ``[(ok, value or exception)]``; ``functions`` maps the method names a worker may send to
    what runs them.  Single-threaded and blocking: it is the only thing its process does.
    """

    def __init__(
        self,
        listener: socket.socket,
        functions: Mapping[str, Callable[..., Any]],
        batch: Callable[[list[Call]], list[tuple[bool, Any]]],
        max_batch: int,
    ) -> None:
        self._listener = listener
        self._functions = functions
        self._batch = batch
        self._max_batch = max_batch
        self._selector = selectors.DefaultSelector()
        self._clients: dict[socket.socket, _Client] = {}
        self.batches = 0
        """How many transactions were committed (for tests and the bench)."""
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)

    def serve(self, stop: Callable[[], bool], tick: float = 1.0) -> None:
        """Serve until ``stop()``, asked at least every ``tick`` seconds."""
        try:
            while not stop():
                self.serve_once(tick)
        finally:
            self.close()

    def serve_once(self, timeout: float) -> None:
        calls: list[tuple[_Client, Any]] = []
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._listener:
                self._accept()
            else:
                self._read(self._clients[key.fileobj], calls)  # type: ignore[index]
        while calls:
            self._run(calls[: self._max_batch])
            del calls[: self._max_batch]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self._clients) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.settimeout(REPLY_TIMEOUT_SECONDS)  # bounds a reply's send
            self._clients[sock] = _Client(sock)
            self._selector.register(sock, selectors.EVENT_READ)

    def _drop(self, client: _Client) -> None:
        self._selector.unregister(client.sock)
        del self._clients[client.sock]
        client.sock.close()

    def _read(self, client: _Client, calls: list[tuple[_Client, Any]]) -> None:
        try:
            data = client.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.buffer += data
        while len(client.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(client.buffer)
            if size > MAX_FRAME:
                log.warning("the shared writer dropped a connection: oversized request")
                self._drop(client)
                return
            if len(client.buffer) < _FRAME.size + size:
                return
            body = bytes(client.buffer[_FRAME.size : _FRAME.size + size])
            del client.buffer[: _FRAME.size + size]
            try:
                calls.append((client, self._request(decode(body))))
            except (Refused, pickle.UnpicklingError, ValueError, TypeError, EOFError) as error:
                log.warning("the shared writer dropped a connection: %s", type(error).__name__)
                calls[:] = [call for call in calls if call[0] is not client]
                self._drop(client)
                return

    def _request(self, message: Any) -> Call:
        if not (isinstance(message, tuple) and len(message) == 3):
            raise ValueError("not a request")
        name, args, kwargs = message
        function = self._functions.get(name) if isinstance(name, str) else None
        if function is None or not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise Refused("not a write of the index")
        return function, args, kwargs

    def _run(self, calls: list[tuple[_Client, Any]]) -> None:
        outcomes = self._batch([request for _, request in calls])
        self.batches += 1
        for (client, _), outcome in zip(calls, outcomes, strict=True):
            if client.sock not in self._clients:
                continue  # dropped meanwhile
            ok, value = outcome
            if not ok and _allowed(type(value).__module__, type(value).__qualname__) is None:
                outcome = (False, WriteFailed(f"{type(value).__name__} in a write"))
            try:
                reply = encode(outcome)
            except Exception as error:  # an unpicklable result or exception
                reply = encode((False, WriteFailed(f"{type(error).__name__} in a write")))
            try:
                client.sock.sendall(reply)
            except OSError:
                self._drop(client)

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        self._selector.close()
