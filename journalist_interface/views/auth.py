"""Logging in with the analyst's passphrase, and out."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from journalist_interface.accounts import AccountError
from journalist_interface.errors import VaultError, WrongPassphrase
from journalist_interface.sessions import COOKIE
from journalist_interface.views import login_required, services

bp = Blueprint("auth", __name__)

MAX_PASSPHRASE = 1024
MAX_NAME = 64


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    svc = services()
    if svc.sessions.current(request.cookies.get(COOKIE)) is not None:
        return redirect(url_for("reports.inbox"), 303)
    error = None
    name = request.form.get("name", "")[:MAX_NAME].strip().lower()
    if request.method == "POST":
        passphrase = request.form.get("passphrase", "")[:MAX_PASSPHRASE]
        code = request.form.get("code", "")[:32]
        try:
            token = svc.sessions.login(passphrase, name, code)
        except WrongPassphrase:
            error = _("Wrong passphrase: nothing was opened. Check the name and type it again.")
        except AccountError as refused:
            if refused.reason == AccountError.CODE_NEEDED:
                error = _("This account needs the 6-digit code from your authenticator app.")
            elif refused.reason == AccountError.WRONG_CODE:
                error = _(
                    "Wrong code, or a code already used. Type the code your authenticator "
                    "app shows now."
                )
            else:
                error = _("This key has no account in this vault: ask an admin to add you.")
        except VaultError:
            error = _(
                "The vault cannot be opened now: it is in use by a blagh workstation command, "
                "or damaged. Wait for the command to end, then try again."
            )
        else:
            response = redirect(url_for("reports.inbox"), 303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response
    page = render_template(
        "login.html", error=error, name=name, logged_out=request.args.get("out") == "1"
    )
    return make_response(page, 403 if error else 200)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    services().sessions.logout(request.cookies.get(COOKIE))
    response = redirect(url_for("auth.login", out=1), 303)
    response.delete_cookie(COOKIE, httponly=True, samesite="Strict", path="/")
    return response
