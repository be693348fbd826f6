"""Analysts' accounts: the list and adding or removing one (admins), and each analyst's own
second login step (TOTP)."""

from __future__ import annotations

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from markupsafe import Markup

from journalist_interface import accounts
from journalist_interface.accounts import AccountError
from journalist_interface.errors import WrongPassphrase
from journalist_interface.views import admin_required, login_required, services, vault

bp = Blueprint("analysts", __name__)

MAX_KEY_FILE = 4096
MAX_PASSPHRASE = 1024


def _message(error: AccountError) -> str:
    messages: dict[str, str] = {
        AccountError.BAD_NAME: _(
            "A name is 1 to 32 lower-case letters, digits, “_”, “.” or “-”, beginning with a "
            "letter."
        ),
        AccountError.NAME_TAKEN: _("This name is taken, or was used by an analyst removed since."),
        AccountError.KEY_TAKEN: _("This key file already belongs to an analyst of this vault."),
        AccountError.NO_ACCOUNT: _("There is no such analyst."),
        AccountError.LAST_ADMIN: _("The vault must keep at least one admin."),
        AccountError.SELF: _("You cannot remove your own account."),
        AccountError.WRONG_CODE: _(
            "Wrong code, or a code already used. Type the code your authenticator app shows now."
        ),
        AccountError.TOO_MANY: _("This vault has as many analysts as it can hold."),
    }
    return str(messages.get(error.reason, _("This change cannot be made.")))


def _list(error: str | None = None, status: int = 200) -> Response:
    page = render_template(
        "analysts.html",
        analysts=accounts.accounts(vault()),
        roles=accounts.ROLES,
        error=error,
        done=request.args.get("done", ""),
    )
    return Response(page, status, mimetype="text/html")


@bp.get("/analysts")
@admin_required
def analysts() -> ResponseReturnValue:
    return _list()


@bp.post("/analysts")
@admin_required
def add() -> ResponseReturnValue:
    upload = request.files.get("key_file")
    data = upload.stream.read(MAX_KEY_FILE + 1) if upload is not None else b""
    if not data:
        return _list(_("Choose the new analyst's key file first."), 400)
    try:
        accounts.add_analyst(
            vault(),
            request.form.get("name", "").strip().lower()[:64],
            request.form.get("role", "analyst"),
            data,
            request.form.get("passphrase", "")[:MAX_PASSPHRASE],
        )
    except WrongPassphrase:
        return _list(
            _("The passphrase does not open this key file. The new analyst types their own."), 400
        )
    except AccountError as error:
        return _list(_message(error), 400)
    return redirect(url_for("analysts.analysts", done="added"), 303)


@bp.post("/analysts/<name>/remove")
@admin_required
def remove(name: str) -> ResponseReturnValue:
    try:
        accounts.remove_analyst(vault(), name)
    except AccountError as error:
        return _list(_message(error), 400)
    services().sessions.end_sessions_of(name)
    return redirect(url_for("analysts.analysts", done="removed"), 303)


@bp.post("/analysts/<name>/role")
@admin_required
def role(name: str) -> ResponseReturnValue:
    new_role = request.form.get("role", "")
    try:
        accounts.set_role(vault(), name, new_role)
    except AccountError as error:
        return _list(_message(error), 400)
    services().sessions.set_role(name, new_role)
    return redirect(url_for("analysts.analysts", done="role"), 303)


# --- one's own account -------------------------------------------------------------------------


def _account_page(error: str | None = None, status: int = 200) -> Response:
    name = vault().analyst
    found = accounts.account(vault(), name)
    pending = accounts.totp_pending(vault(), name) if found and not found.totp else None
    page = render_template(
        "account.html",
        account=found,
        pending=accounts.grouped(pending) if pending else None,
        uri=accounts.provisioning_uri(pending, name) if pending else None,
        # segno draws the address as path geometry: no text of it reaches the markup.
        qr=Markup(accounts.qr_svg(accounts.provisioning_uri(pending, name)))  # noqa: S704
        if pending
        else None,
        error=error,
        done=request.args.get("done", ""),
    )
    return Response(page, status, mimetype="text/html")


@bp.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return _account_page()


@bp.post("/account/totp")
@login_required
def totp() -> ResponseReturnValue:
    action = request.form.get("action", "")
    name = g.vault.analyst
    code = request.form.get("code", "")[:32]
    try:
        if action == "begin":
            accounts.totp_begin(vault(), name)
            return redirect(url_for("analysts.account"), 303)
        if action == "confirm":
            accounts.totp_confirm(vault(), name, code)
            return redirect(url_for("analysts.account", done="on"), 303)
        if action == "disable":
            accounts.totp_disable(vault(), name, code)
            return redirect(url_for("analysts.account", done="off"), 303)
    except AccountError as error:
        return _account_page(_message(error), 400)
    return _account_page(_("This change cannot be made."), 400)
