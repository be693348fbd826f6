"""The app's daily purge of closed cases (``WorkstationConfig.purge_closed_after_days``).

Once a day, on the first request of a logged-in analyst, the closed cases whose time has come are
purged (:func:`journalist_interface.retention.purge`); each purge is in the audit log under the
name ``blagh:retention``.  Nothing runs while nobody is logged in: the vault is locked then.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app, request

from journalist_interface import retention
from journalist_interface.sessions import COOKIE
from journalist_interface.vault import today
from journalist_interface.views import services


def init_app(app: Flask, days: int | None) -> None:
    if days is None:
        return
    state = {"day": ""}
    lock = threading.Lock()

    @app.before_request
    def daily_purge() -> None:
        if state["day"] == today() or request.endpoint in (None, "static", "base_css"):
            return
        found = services().sessions.current(request.cookies.get(COOKIE))
        if found is None:
            return
        with lock:
            if state["day"] == today():
                return
            done = retention.purge(found[1], days, analyst=retention.AUTOMATIC)
            if done.purged:
                current_app.extensions["previews"].forget()
            state["day"] = today()
