"""Bundles in and out: importing a pickup bundle, and making reply bundles to carry back."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from journalist_interface import audit, matching
from journalist_interface.errors import ImportRefused, NothingToSend
from journalist_interface.importer import import_bundle
from journalist_interface.replies import make_reply_bundle
from journalist_interface.sandbox import SandboxUnavailable
from journalist_interface.vault import today
from journalist_interface.views import checked_id, login_required, vault

bp = Blueprint("transfer", __name__)

_COPY_SIZE = 1024 * 1024


@bp.get("/import")
@login_required
def import_form() -> ResponseReturnValue:
    return render_template("import.html")


@bp.post("/import")
@login_required
def import_upload() -> ResponseReturnValue:
    upload = request.files.get("bundle")
    if upload is None or not upload.filename:
        page = render_template("import.html", error=_("Choose a pickup bundle file first."))
        return Response(page, 400, mimetype="text/html")
    incoming = vault().paths.incoming / secrets.token_hex(16)
    try:
        fd = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as file:
            while chunk := upload.stream.read(_COPY_SIZE):
                file.write(chunk)
        result = import_bundle(vault(), incoming)
        audit.record_import(vault(), result.bundle, result.new_items, result.new_reports)
        known, checked = _check_known_content()
    except ImportRefused as refused:
        reason = str(refused).replace(str(incoming), os.path.basename(upload.filename))
        page = render_template("import.html", refused=reason)
        return Response(page, 400, mimetype="text/html")
    finally:
        incoming.unlink(missing_ok=True)
    return render_template("import.html", result=result, known=known, checked=checked)


def _check_known_content() -> tuple[int, bool]:
    """Fingerprint and check the new attachments against the hash lists (matching.py): how
    many matches were found, and whether the check could run (it needs the sandbox)."""
    config = current_app.extensions["workstation"].config
    thresholds = matching.Thresholds(config.match_pdq_distance, config.match_pdq_quality)
    try:
        return len(matching.after_import(vault(), thresholds)), True
    except SandboxUnavailable:
        return 0, False


@bp.get("/outbox")
@login_required
def outbox() -> ResponseReturnValue:
    bundles = vault().reply_bundles()
    return render_template(
        "outbox.html",
        pending=vault().pending(),
        bundles=bundles,
        downloadable={record.id for record in bundles if _outbox_file(record.file).is_file()},
        done=request.args.get("done", ""),
    )


@bp.post("/outbox")
@login_required
def make_bundle() -> ResponseReturnValue:
    name = f"replies-{today()}-{secrets.token_hex(4)}.bundle"
    try:
        made = make_reply_bundle(vault(), vault().paths.outbox / name)
    except NothingToSend:
        return redirect(url_for("transfer.outbox", done="nothing"), 303)
    audit.log(
        vault(),
        "reply_bundle",
        bundle=made.id,
        replies=made.replies,
        acknowledged=made.acknowledged,
        deletions=made.deletions,
    )
    return redirect(url_for("transfer.outbox", done=made.id), 303)


def _outbox_file(file: str) -> Path:
    """Where a reply bundle made by the app is; bundles the command wrote elsewhere are not
    served (the name is looked up in the outbox only)."""
    return vault().paths.outbox / os.path.basename(file)


@bp.get("/outbox/<bundle_id>")
@login_required
def download_bundle(bundle_id: str) -> ResponseReturnValue:
    record = vault().reply_bundle(checked_id(bundle_id))
    if record is None:
        abort(404)
    path = _outbox_file(record.file)
    if not path.is_file():
        abort(404)
    g.download = True
    return send_file(
        path,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=path.name,
        max_age=0,
    )
