"""Running the pickup API under gunicorn (``blagh serve-pickup``), like the source interface.

One worker with a few threads is plenty: one transfer station or two fetch a bundle now and
then.  gunicorn streams request bodies to the app (an uploaded reply bundle goes straight to
a private temporary file in the store) and sends bundle files with ``sendfile``.  No access
log, no ``Server`` header, no control socket.  At start the retention purge runs and uploads
a crash left half-written are removed; the blob sweep is the source interface's job (it would
remove what the source interface is writing).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from blagh.config import Config
from blagh.datadir import DataDir
from source_interface.app import open_store
from source_interface.pickup.app import create_pickup_app, remove_stale_uploads
from source_interface.server import hide_server_header

THREADS = 4


class PickupServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code from the frozen config."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self._config = config
        self._options: dict[str, Any] = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": THREADS,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "blagh-pickup",
            "forwarded_allow_ips": "",
            "on_starting": self._prepare,
            # Bundles are large and tor is slow: a download may take long.  gthread workers
            # answer the arbiter's heartbeat while requests run, so this bounds only a hang.
            "timeout": 120,
            "graceful_timeout": 30,
            "limit_request_field_size": 8190,
            "control_socket_disable": True,
        }
        hide_server_header()
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return create_pickup_app(self._config)

    def _prepare(self, _arbiter: object) -> None:
        store = open_store(DataDir(self._config.instance.data_dir))
        try:
            remove_stale_uploads(store)
            store.purge(self._config.retention.delivered_days)
        finally:
            store.close()


def serve_pickup(config: Config, host: str, port: int) -> None:
    PickupServer(config, host, port).run()
