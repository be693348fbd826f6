"""Running the pickup API under gunicorn (``blagh serve-pickup``), like the source interface.

One worker with a few threads is plenty: one transfer station or two fetch a bundle now and
then.  gunicorn streams request bodies to the app (an uploaded reply bundle goes straight to
a private temporary file in the store) and sends bundle files with ``sendfile``.  No access
log, no ``Server`` header, no control socket.  At start the retention purge runs and uploads
a crash left half-written are removed; the blob sweep is the source interface's job (it would
remove what the source interface is writing).
"""

from __future__ import annotations

from flask import Flask

from blagh.config import Config
from blagh.datadir import DataDir
from source_interface.app import open_store
from source_interface.pickup.app import create_pickup_app, remove_stale_uploads
from source_interface.server import GunicornServer


class PickupServer(GunicornServer):
    def __init__(self, config: Config, host: str, port: int) -> None:
        super().__init__(
            config,
            bind=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            workers=1,
            proc_name="blagh-pickup",
            on_starting=self._prepare,
        )

    def load(self) -> Flask:
        return create_pickup_app(self._config)

    def _prepare(self, _arbiter: object) -> None:
        store = open_store(DataDir(self._config.instance.data_dir), self._config.store)
        try:
            remove_stale_uploads(store)
            store.purge(self._config.retention.delivered_days)
        finally:
            store.close()


def serve_pickup(config: Config, host: str, port: int) -> None:
    PickupServer(config, host, port).run()
