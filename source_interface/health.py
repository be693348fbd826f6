"""The server's health, for ``blagh status`` and for ``GET /health`` on the health listener.

The health listener (``[source_interface] health_port``) is a port of its own on loopback:
source_interface/listeners.py answers ``/health`` there and nowhere else, so neither a Tor
client nor a clearnet visitor can reach it (on their listeners the path is an ordinary 404).
What it says is about the server, never about a reporter: counts, days, disk space, and
whether a write goes through (``/health`` only: ``blagh status`` reads and never writes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from source_interface.diskspace import FreeSpace
from source_interface.store.protocol import ServerStore

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def snapshot(store: ServerStore, space: FreeSpace) -> dict[str, Any]:
    """Pending items, the last day the workstation acknowledged any, free disk and floor."""
    pending, last_day = store.monitoring()
    free = space.available()
    return {
        "pending_items": pending,
        "last_pickup_day": last_day,
        "disk_free_mb": free // MIB,
        "disk_floor_mb": space.floor_bytes // MIB,
        "disk_ok": space.floor_bytes <= 0 or free >= space.floor_bytes,
    }


def writes_ok(store: ServerStore) -> bool:
    """Whether a report could be stored now: a write that changes nothing goes through the
    writer every write takes (a gunicorn server's shared writer, which the reads above never
    reach), so a writer that is down or swamped shows here as it would to a reporter."""
    try:
        store.check_writes()
    except Exception as error:
        log.warning("the health check's write failed: %s", type(error).__name__)
        return False
    return True


def health_app(store: ServerStore, space: FreeSpace) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the health listener: ``GET /health`` only."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/health" or environ.get("REQUEST_METHOD") != "GET":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only GET /health here\n"]
        try:
            report = snapshot(store, space)
        except Exception:
            log.exception("the health check could not read the store")
            report = {"store": "unreadable"}
        report["writes_ok"] = writes_ok(store)
        report["ok"] = bool(report.get("disk_ok")) and report["writes_ok"]
        body = (json.dumps(report, sort_keys=True) + "\n").encode("utf-8")
        status = "200 OK" if report["ok"] else "503 Service Unavailable"
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return app
