"""Running the source interface under gunicorn, the only server it may run under.

waitress buffers whole request bodies to temporary files before the app sees them, which would
put plaintext uploads on disk; gunicorn streams the body to the app, which seals it on arrival.
Access logs are off: the server keeps no record of who asked for what.
"""

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from blagh.config import Config
from blagh.datadir import DataDir
from source_interface.app import create_app, open_store

THREADS_PER_WORKER = 4


class SourceServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code from our frozen config, not from a gunicorn.conf.py."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self._config = config
        self._options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": config.source_interface.workers,
            "worker_class": "gthread",
            "threads": THREADS_PER_WORKER,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "blagh-source",
            "forwarded_allow_ips": "",
            "on_starting": self._sweep,
            "timeout": 120,
            "graceful_timeout": 30,
            "limit_request_field_size": 8190,
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return create_app(self._config)

    def _sweep(self, _arbiter: object) -> None:
        """Remove what a crash left half-written, before any worker accepts a request."""
        store = open_store(DataDir(self._config.instance.data_dir))
        try:
            store.sweep()
        finally:
            store.close()


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    site = config.source_interface
    SourceServer(config, host or site.listen_host, port or site.listen_port).run()
