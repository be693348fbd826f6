"""Running the source interface under gunicorn, the only server it may run under.

waitress buffers whole request bodies to temporary files before the app sees them, which would
put plaintext uploads on disk; gunicorn streams the body to the app, which seals it on arrival.
Its workers are event-driven (gevent, source_interface/worker.py): thousands of slow Tor
clients cost memory, not threads, and the limits of ``[limits]`` drop the abusive ones.
Access logs are off, and the error log says neither who nor exactly when
(source_interface/quietlog.py): the server keeps no record of who asked for what.  Responses
carry no ``Server`` header, and gunicorn's control socket (on by default in gunicorn 27) is off.
"""

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.http import wsgi

from blagh.config import Config
from blagh.datadir import DataDir
from blagh.serverstate import LastError
from source_interface.app import create_app, open_index, open_store, shared_writer_socket
from source_interface.janitor import Janitor, run_forever
from source_interface.quietlog import QuietLogger
from source_interface.security import HEADERS
from source_interface.services import Services
from source_interface.worker import paced_worker_class
from source_interface.writer_arbiter import WriterArbiter


def _without_server_header(default_headers: Any) -> Any:
    def headers(response: wsgi.Response) -> list[str]:
        return [line for line in default_headers(response) if not line.startswith("Server:")]

    headers.blagh_without_server = True  # type: ignore[attr-defined]
    return headers


def hide_server_header() -> None:
    """Make gunicorn send no ``Server`` header at all.

    gunicorn (27) has no setting for it: every HTTP/1 response starts with ``Server:
    gunicorn``, and a ``Server`` header set by the app is sent *as well*, not instead.  The
    usual trick, assigning ``gunicorn.SERVER``, does nothing since ``gunicorn.http.wsgi``
    copies that name at import.  So the status line and default headers the response builds
    are filtered here, once, in the master before workers fork (HTTP/2, which would bypass
    this, is off).  tests/test_source_gunicorn.py checks the header is absent on the wire.
    """
    current = wsgi.Response.default_headers
    if not getattr(current, "blagh_without_server", False):
        wsgi.Response.default_headers = _without_server_header(current)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code from our frozen config, not from a gunicorn.conf.py.

    The settings every blagh gunicorn shares live here; a subclass names its bind address,
    worker count, process name and start hook, and loads its app.
    """

    def __init__(
        self,
        config: Config,
        *,
        bind: str | list[str],
        workers: int,
        proc_name: str,
        on_starting: Callable[[object], None],
    ) -> None:
        self._config = config
        self._options: dict[str, Any] = {
            "bind": bind,
            "workers": workers,
            "worker_class": paced_worker_class(config.limits, HEADERS),
            # Also the header timeout: gunicorn times every header read with this.
            "keepalive": config.limits.header_timeout_seconds,
            "accesslog": None,
            "errorlog": "-",
            "logger_class": QuietLogger,
            "loglevel": "warning",
            "proc_name": proc_name,
            "forwarded_allow_ips": "",
            "on_starting": on_starting,
            # The event loop answers the arbiter's heartbeat while requests run (blocking work
            # is on threads), so the timeout bounds only a hang of the loop itself.
            "timeout": 120,
            "graceful_timeout": 30,
            "limit_request_field_size": 8190,
            # gunicorn 27 otherwise opens a control socket at ~/.gunicorn/gunicorn.ctl (or in
            # $XDG_RUNTIME_DIR), one path for every instance of the user: a second server
            # unlinks the first one's, and stopping either removes the other's.  systemd
            # manages these services; nothing needs to steer them through a socket.
            "control_socket_disable": True,
        }
        hide_server_header()
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)


class SourceServer(GunicornServer):
    """The onion service's listener, and the clearnet proxy's beside it when ``[clearnet]`` is
    on: the same workers, told apart per request by source_interface/listeners.py."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        binds = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        if config.clearnet.enabled:
            binds.append(config.clearnet.listen)
        if config.source_interface.health_port is not None:
            binds.append(
                f"[{host}]:{config.source_interface.health_port}"
                if ":" in host
                else f"{host}:{config.source_interface.health_port}"
            )
        super().__init__(
            config,
            bind=binds,
            workers=config.source_interface.workers,
            proc_name="blagh-source",
            on_starting=self._sweep,
        )

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("post_worker_init", _start_janitor)
        self.cfg.set("post_fork", _close_writer_listener)

    def load(self) -> Flask:
        return create_app(self._config, self._writer_socket())

    def _writer_socket(self) -> Path | None:
        return shared_writer_socket(DataDir(self._config.instance.data_dir), self._config.store)

    def run(self) -> None:
        """gunicorn's own ``run``, with an arbiter that also runs the index's shared writer
        (source_interface/writer_arbiter.py) unless the store is PostgreSQL."""
        socket_path = self._writer_socket()
        if socket_path is None:
            super().run()
            return
        data_dir = DataDir(self._config.instance.data_dir)
        try:
            WriterArbiter(self, socket_path, lambda: open_index(data_dir)).run()
        except RuntimeError as error:
            print(f"\nError: {error}\n", file=sys.stderr)
            sys.exit(1)

    def _sweep(self, _arbiter: object) -> None:
        """Remove the temporary files a crash left half-written, and fill the blob pool, before
        any worker accepts a request.  Only ``tmp/``: the orphan sweep lists the whole store,
        so the janitor does it in the background (source_interface/janitor.py), and start-up
        stays flat."""
        store = open_store(DataDir(self._config.instance.data_dir), self._config.store)
        try:
            store.blobs.clear_temporary()
            if store.blobs.pool is not None:
                store.blobs.pool.fill()
        finally:
            store.close()


def _close_writer_listener(server: Any, _worker: Any) -> None:
    """gunicorn's post_fork hook, in the new worker: the writer's socket is not its own."""
    if isinstance(server, WriterArbiter):
        server.close_writer_listener()


def _start_janitor(worker: Any) -> None:
    """gunicorn's post_worker_init hook: housekeeping in a greenlet beside the requests."""
    import gevent

    app: Flask = worker.wsgi
    services: Services = app.extensions["blagh"]
    last_error = LastError()
    logging.getLogger().addHandler(last_error)
    data_dir = services.config.instance.data_dir
    janitor = Janitor(
        services.store,
        app.extensions["blagh_uploads"],
        services.store.blobs.root.parent / "janitor.lock",
        report=lambda: last_error.flush_to(data_dir),
    )
    gevent.spawn(run_forever, janitor, gevent.sleep)


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    site = config.source_interface
    SourceServer(config, host or site.listen_host, port or site.listen_port).run()
