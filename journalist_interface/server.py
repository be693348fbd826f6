"""Serving the review app with waitress, on 127.0.0.1 only.

waitress suits the workstation: one process, a few threads, pure Python.  (It buffers request
bodies to temporary files, which is why the reporters' side does not use it; here the only
uploads are pickup bundles, ciphertext already.)  No ``Server`` header, no access log.
"""

from __future__ import annotations

import threading

import waitress

from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig

THREADS = 8
"""Previews take at most 4 of them (one decoding, three waiting: safeview.QUEUE), so other
pages always find a free thread, whatever a report's images do."""
EXPIRY_CHECK_SECONDS = 30


def serve(config: WorkstationConfig) -> None:
    app = create_app(config)
    sessions = app.extensions["workstation"].sessions
    stop = threading.Event()

    def lock_when_idle() -> None:
        """Sessions also end while nobody makes a request: the key does not wait for one."""
        while not stop.wait(EXPIRY_CHECK_SECONDS):
            sessions.expire()

    threading.Thread(target=lock_when_idle, name="blagh-expiry", daemon=True).start()
    try:
        waitress.serve(
            app,
            host=config.host,
            port=config.port,
            threads=THREADS,
            ident="",
            max_request_body_size=config.max_import_mb * 1024 * 1024,
            clear_untrusted_proxy_headers=True,
            expose_tracebacks=False,
            _quiet=True,
        )
    finally:
        stop.set()
        sessions.close()
