"""The analysts' pages, in three blueprints: logging in, reports, and bundles in and out.

Every page but the login needs a live session (:func:`login_required`), which also checks the
form's anti-forgery token on every POST.  Views reach the vault through :func:`vault` only.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar, cast

from flask import abort, current_app, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from journalist_interface.config import WorkstationConfig
from journalist_interface.sessions import COOKIE, CSRF_FIELD, Sessions
from journalist_interface.vault import Vault

ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Services:
    """What the views share: the app's config and its sessions (and through them, the vault)."""

    config: WorkstationConfig
    sessions: Sessions


def services() -> Services:
    return cast(Services, current_app.extensions["workstation"])


def vault() -> Vault:
    return cast(Vault, g.vault)


_View = TypeVar("_View", bound=Callable[..., ResponseReturnValue])


def login_required(view: _View) -> _View:
    """Send a request without a live session to the login page; check POSTed forms' token."""

    @wraps(view)
    def checked(*args: object, **kwargs: object) -> ResponseReturnValue:
        found = services().sessions.current(request.cookies.get(COOKIE))
        if found is None:
            return redirect(url_for("auth.login"), 303)
        g.analyst_session, g.vault = found
        g.analyst_name = found[0].analyst
        if request.method == "POST":
            sent = request.form.get(CSRF_FIELD, "")
            if not hmac.compare_digest(sent.encode(), found[0].csrf.encode()):
                abort(400)
        return view(*args, **kwargs)

    return cast(_View, checked)


def admin_required(view: _View) -> _View:
    """Like :func:`login_required`, for admins only (403 for other analysts)."""

    @wraps(view)
    def checked(*args: object, **kwargs: object) -> ResponseReturnValue:
        if not g.analyst_session.admin:
            abort(403)
        return view(*args, **kwargs)

    return login_required(cast(_View, checked))


def checked_id(value: str) -> str:
    """A report or item id from a URL, or a 404."""
    if ID.fullmatch(value) is None:
        abort(404)
    return value
