"""Which listener a request came on: the onion service's, or the clearnet proxy's.

Both are on this machine (tor and the HTTPS proxy connect from loopback), so the peer address
says nothing, and headers say whatever the client wants: a Tor client can send
``X-Forwarded-Proto: https`` as easily as a proxy can.  What cannot be forged is the socket the
connection was accepted on.  :class:`ListenerMiddleware` reads it, and then:

* on the clearnet listener, takes the scheme from the proxy's ``X-Forwarded-Proto`` (so
  ``request.is_secure`` and ``Secure`` cookies follow the reporter's real connection) and marks
  the request ``clearnet``;
* on the health listener (``[source_interface] health_port``, source_interface/health.py),
  answers ``GET /health`` and nothing else, without the app;
* on every other (the onion listener, tests without gunicorn), removes every forwarded header
  before the app sees it, so that nothing downstream can be steered by one.

The client's address is never taken from a header: the app keeps none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from blagh.config import ClearnetConfig

LISTENER = "blagh.listener"
"""The environ key this middleware sets: ``"clearnet"`` or ``"onion"``."""

FORWARDED = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_X_REAL_IP",
)

WSGIApp = Any


def is_clearnet(environ: dict[str, Any]) -> bool:
    return bool(environ.get(LISTENER) == "clearnet")


class ListenerMiddleware:
    def __init__(
        self,
        app: WSGIApp,
        clearnet: ClearnetConfig,
        health: WSGIApp | None = None,
        health_port: int | None = None,
    ) -> None:
        self.app = app
        self._enabled = clearnet.enabled
        self._unix = clearnet.unix_socket
        self._port = clearnet.port
        self._health = health if health_port is not None else None
        self._health_port = health_port

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self._health is not None and _local_port(environ) == self._health_port:
            health: Iterable[bytes] = self._health(environ, start_response)
            return health
        clearnet = self._enabled and self._accepted_on_clearnet(environ.get("gunicorn.socket"))
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
        for key in FORWARDED:
            environ.pop(key, None)
        environ[LISTENER] = "clearnet" if clearnet else "onion"
        if clearnet:
            environ["wsgi.url_scheme"] = "https" if proto == "https" else "http"
        result: Iterable[bytes] = self.app(environ, start_response)
        return result

    def _accepted_on_clearnet(self, sock: Any) -> bool:
        """Whether the connection's own end is the clearnet listener's socket file or port
        (no other listener has that port: blagh/config.py refuses it)."""
        if sock is None:
            return False
        try:
            local = sock.getsockname()
        except OSError:
            return False
        if self._unix is not None:
            return bool(local == self._unix)
        return isinstance(local, tuple) and local[1] == self._port


def _local_port(environ: dict[str, Any]) -> int | None:
    """The port of the listening socket the connection came on (None: not a TCP socket)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    try:
        local = sock.getsockname()
    except OSError:
        return None
    return local[1] if isinstance(local, tuple) else None
