"""The inbox, a report's page, replying, case notes, deletion requests and attachments."""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from journalist_interface.replies import MAX_REPLY, ReplyError, add_reply
from journalist_interface.vault import STATUSES, Attachment
from journalist_interface.views import checked_id, login_required, vault

bp = Blueprint("reports", __name__)

MAX_NOTES = 100_000
MAX_QUERY = 200


@bp.get("/")
@login_required
def inbox() -> ResponseReturnValue:
    query = request.args.get("q", "")[:MAX_QUERY].strip()
    return render_template(
        "inbox.html", reports=vault().inbox(query), query=query, pending=vault().pending()
    )


@bp.get("/reports/<report_id>")
@login_required
def report(report_id: str) -> ResponseReturnValue:
    return _report_page(report_id)


def _report_page(report_id: str, error: str | None = None, typed: str = "") -> Response:
    found = vault().report(checked_id(report_id))
    if found is None:
        abort(404)
    page = render_template(
        "report.html",
        report=found,
        statuses=STATUSES,
        done=request.args.get("done", ""),
        error=error,
        typed=typed,
        max_reply=MAX_REPLY,
    )
    return Response(page, 400 if error else 200, mimetype="text/html")


@bp.post("/reports/<report_id>/reply")
@login_required
def reply(report_id: str) -> ResponseReturnValue:
    text = request.form.get("text", "")
    try:
        add_reply(vault(), checked_id(report_id), text)
    except ReplyError:
        if not text.strip():
            error = _("Write a reply first.")
        elif len(text.strip()) > MAX_REPLY:
            error = _("The reply is too long: at most %(limit)d characters.", limit=MAX_REPLY)
        else:
            error = _("This reporter kept no codename: no reply can reach them.")
        return _report_page(report_id, error, text[: MAX_REPLY * 2])
    return redirect(url_for("reports.report", report_id=report_id, done="reply"), 303)


@bp.post("/reports/<report_id>/case")
@login_required
def case(report_id: str) -> ResponseReturnValue:
    status = request.form.get("status", "")
    if status not in STATUSES:
        abort(400)
    vault().set_case(checked_id(report_id), status, request.form.get("notes", "")[:MAX_NOTES])
    return redirect(url_for("reports.report", report_id=report_id, done="case"), 303)


@bp.post("/reports/<report_id>/deletion")
@login_required
def deletion(report_id: str) -> ResponseReturnValue:
    asked = request.form.get("ask") == "1"
    vault().ask_deletion(checked_id(report_id), asked)
    done = "delete" if asked else "keep"
    return redirect(url_for("reports.report", report_id=report_id, done=done), 303)


@bp.get("/reports/<report_id>/files/<item_id>")
@login_required
def attachment(report_id: str, item_id: str) -> ResponseReturnValue:
    """Download an attachment, as an opaque file: never shown, whatever it claims to be."""
    found = vault().attachment(checked_id(report_id), checked_id(item_id))
    if found is None:
        abort(404)
    g.download = True
    return Response(
        vault().attachment_chunks(found),
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": content_disposition(found),
            "Content-Length": str(found.size),
            "X-Content-Type-Options": "nosniff",
        },
        direct_passthrough=True,
    )


def content_disposition(found: Attachment) -> str:
    """``attachment``, with the reporter's file name made harmless for a header and a disk.

    The ASCII fallback keeps letters, digits, dots, dashes and underscores; ``filename*`` carries
    the name in full, percent-encoded, for browsers that read it.  Neither can break out of the
    header, and neither can name a folder.
    """
    name = found.name.replace("/", "_").replace("\\", "_").strip(". ") or "attachment"
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
