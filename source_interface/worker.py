"""gunicorn's gevent worker, made to hold thousands of slow Tor clients and to drop abusive ones.

A connection costs a greenlet and a socket, not a thread, so honest reporters on slow circuits
(a 20 MB video at 50 KB/s is 400 s) no longer take the site down by merely uploading.  What
gunicorn's gevent worker does not bound, this one does:

* **headers**: a request's line and headers must arrive within ``header_timeout_seconds``
  (one timer around the whole header read, so trickling them byte by byte does not help);
* **bodies**: at least ``min_body_rate_bytes`` per second in every window of
  ``body_rate_window_seconds``; a client below it is treated exactly like one that
  disconnected (what it sent is discarded; sealed uploads are never stored half-way);
* **answers**: a client that does not read its answer at that rate either is dropped;
* **connections**: past ``max_connections_per_worker`` a connection gets a short static
  "busy" page (503) and is closed, without reading its request: a full worker never queues a
  visitor behind a 400-second upload.

Blocking work (argon2id, fsync, SQLCipher writes) is not done on the event loop: see
blagh/offload.py.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import resource
import socket
import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from blagh.config import LimitsConfig

OVERFLOW_CONNECTIONS = 256
"""Connections accepted past the cap only to be told "busy": gevent's pool is this much larger
than the cap, so an over-cap client gets the page instead of waiting to be accepted."""

BUSY_DRAIN_SECONDS = 1.0
"""How long a refused connection's request is read (and discarded) before closing, so that
closing does not reset the connection before the client has read the busy page."""

_BUSY_BODY = (
    "<!doctype html>\n"
    '<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>Busy</title></head><body>\n"
    '<p dir="rtl" lang="ar">الموقع مشغول جدا الآن. لم يُحفظ شيء من هذا الطلب. '
    "انتظر دقيقة ثم أعد المحاولة.</p>\n"
    '<p lang="fr">Le site est trop sollicité en ce moment. Rien de cette demande n\'a été '
    "enregistré. Attendez une minute, puis réessayez.</p>\n"
    '<p lang="es">El sitio está saturado en este momento. No se guardó nada de esta solicitud. '
    "Espere un minuto y vuelva a intentarlo.</p>\n"
    "<p>The site is too busy right now. Nothing of this request was saved. Wait a minute, "
    "then try again.</p>\n"
    "</body></html>\n"
).encode()


def busy_response(headers: dict[str, str]) -> bytes:
    """The whole 503 answer sent to a connection past the cap, security headers included."""
    lines = [
        "HTTP/1.1 503 Service Unavailable",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(_BUSY_BODY)}",
        "Retry-After: 60",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + _BUSY_BODY


class ClientTooSlow(BrokenPipeError):
    """A client sent or read below the minimum rate; gunicorn drops it like a broken pipe."""

    def __init__(self) -> None:
        super().__init__(errno.EPIPE, "client below the minimum rate")


class PacedSocket:
    """A client socket whose body reads and answer writes must keep a minimum rate.

    Outside a request's body (while headers are read) it behaves as the plain socket: the
    header deadline is the worker's timer.  Everything else is passed through.
    """

    def __init__(self, sock: Any, min_rate: int, window: float) -> None:
        self._sock = sock
        self._quota = min_rate * window
        self._window = window
        self._in_body = False
        self._window_start = 0.0
        self._window_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def begin_body(self) -> None:
        self._in_body = True
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def end_body(self) -> None:
        self._in_body = False
        self._sock.settimeout(None)

    def _time_left(self) -> float:
        left = self._window_start + self._window - time.monotonic()
        if left <= 0:
            raise ClientTooSlow()
        return left

    def _count(self, size: int) -> None:
        self._window_bytes += size
        if self._window_bytes >= self._quota:
            self._window_start = time.monotonic()
            self._window_bytes = 0

    def recv(self, size: int, *flags: int) -> bytes:
        if not self._in_body:
            data: bytes = self._sock.recv(size, *flags)
            return data
        try:
            self._sock.settimeout(self._time_left())
            data = self._sock.recv(size, *flags)
        except (TimeoutError, ClientTooSlow):
            return self._hang_up()
        self._count(len(data))
        return data

    def _hang_up(self) -> bytes:
        """Drop a client below the body rate as if it had disconnected: the body ends here
        (Werkzeug discards the request, and its sealed uploads, as a client disconnect; nothing
        is logged), and no answer can reach it."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        return b""

    def _paced_send(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        # A write's own window: the client was waiting for the answer, not sending.
        self._sock.settimeout(self._window)
        try:
            return method(*args, **kwargs)
        except TimeoutError:
            raise ClientTooSlow() from None
        finally:
            self._sock.settimeout(self._window_left_or_none())

    def _window_left_or_none(self) -> float | None:
        if not self._in_body:
            return None
        self._window_start = time.monotonic()
        self._window_bytes = 0
        return self._window

    def send(self, data: bytes, *flags: int) -> int:
        sent: int = self._paced_send(self._sock.send, data, *flags)
        return sent

    def sendall(self, data: bytes, *flags: int) -> None:
        # Pieces no larger than what the minimum rate moves in one window, each with its own.
        view = memoryview(data)
        step = max(int(self._quota), 8192)
        for start in range(0, len(view), step):
            self._paced_send(self._sock.sendall, view[start : start + step], *flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        # In the same pieces as sendall: a long download at honest speed is never cut, a
        # client that stops reading is dropped after one window.
        step = max(int(self._quota), 8192)
        total = 0
        while count is None or total < count:
            piece = step if count is None else min(step, count - total)
            sent: int = self._paced_send(self._sock.sendfile, file, offset + total, piece)
            if sent == 0:
                break
            total += sent
        return total


def raise_open_files_limit(needed: int) -> None:
    """Raise this process's open-file limit towards ``needed`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def paced_worker_class(limits: LimitsConfig, headers: dict[str, str]) -> type[GeventWorker]:
    """A gevent worker class bound to these limits (gunicorn takes a class, not an object)."""
    cap = limits.max_connections_per_worker
    busy = busy_response(headers)

    class PacedGeventWorker(GeventWorker):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.worker_connections = cap + OVERFLOW_CONNECTIONS
            self.open_connections = 0

        def init_process(self) -> None:
            raise_open_files_limit(2 * (cap + OVERFLOW_CONNECTIONS) + 256)
            super().init_process()

        def load_wsgi(self) -> None:
            super().load_wsgi()
            # Everything loaded so far lives as long as the worker: out of the collector's
            # sight, a full collection walks only what requests made (tens of ms less each).
            gc.freeze()

        def timeout_ctx(self) -> gevent.Timeout:
            # gunicorn wraps every header read (the first request's too) in this timer.
            return gevent.Timeout(limits.header_timeout_seconds, False)

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            if self.open_connections >= cap:
                self._refuse(client)
                return
            self.open_connections += 1
            try:
                paced = PacedSocket(
                    client, limits.min_body_rate_bytes, limits.body_rate_window_seconds
                )
                super().handle(listener, paced, addr)
            finally:
                self.open_connections -= 1

        def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
            sock.begin_body()
            try:
                return super().handle_request(listener_name, req, sock, addr)
            finally:
                sock.end_body()

        @staticmethod
        def _refuse(client: Any) -> None:
            try:
                client.settimeout(BUSY_DRAIN_SECONDS)
                client.sendall(busy)
                client.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + BUSY_DRAIN_SECONDS
                while time.monotonic() < deadline and client.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                client.close()

    return PacedGeventWorker
