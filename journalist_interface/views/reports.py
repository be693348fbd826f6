"""The inbox, a report's page, replying, deletion requests and attachments.

Case work (status, notes, tags) is ``views/cases.py``; the inbox's filters and search are
``journalist_interface/search.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from blagh.web.categories import CATEGORIES
from journalist_interface import audit, cases, connections, reporter_status, search, takedown
from journalist_interface.notice_templates import LANGUAGES
from journalist_interface.replies import MAX_REPLY, ReplyError, add_reply
from journalist_interface.vault import STATUSES, Attachment
from journalist_interface.views import checked_id, login_required, services, vault

bp = Blueprint("reports", __name__)


@bp.get("/")
@login_required
def inbox() -> ResponseReturnValue:
    return inbox_page(search.InboxQuery.from_args(request.args))


def inbox_page(
    query: search.InboxQuery, bulk_error: str | None = None, done: int | None = None
) -> Response:
    """The inbox for ``query``; with ``bulk_error``, the refusal of a change to the selected
    reports (400)."""
    if done is None and request.args.get("done", "").isdigit():
        done = min(int(request.args["done"]), search.PER_PAGE)
    page = render_template(
        "inbox.html",
        bulk_error=bulk_error,
        done=done,
        page=search.inbox(vault(), query),
        query=query,
        pending=vault().pending(),
        statuses=STATUSES,
        priorities=cases.PRIORITIES,
        categories=CATEGORIES,
        analysts=cases.analyst_names(vault(), active_only=False),
        tags=cases.all_tags(vault()),
        sorts=search.SORTS,
        unassigned=search.UNASSIGNED,
        active_analysts=cases.analyst_names(vault()),
    )
    return Response(page, 400 if bulk_error else 200, mimetype="text/html")


@bp.get("/reports/<report_id>")
@login_required
def report(report_id: str) -> ResponseReturnValue:
    page = _report_page(report_id)
    cases.mark_seen(vault(), report_id)
    audit.log(vault(), "view", report=report_id)
    return page


def _report_page(
    report_id: str, error: str | None = None, typed: str = "", case_error: str | None = None
) -> Response:
    found = vault().report(checked_id(report_id))
    case = cases.case(vault(), report_id)
    if found is None or case is None:
        abort(404)
    words = " ".join(request.args.get("q", "")[: search.MAX_QUERY].split())
    page = render_template(
        "report.html",
        report=found,
        case=case,
        follows=cases.tombstone(vault(), report_id),
        statuses=STATUSES,
        priorities=cases.PRIORITIES,
        analysts=cases.analyst_names(vault()),
        known_tags=cases.all_tags(vault()),
        connected=connections.of_report(vault(), report_id),
        words=words,
        found=search.snippets_for(vault(), words, report_id) if words else [],
        done=request.args.get("done", ""),
        error=error,
        case_error=case_error,
        typed=typed,
        max_reply=MAX_REPLY,
        max_note=cases.MAX_NOTE,
        **_takedown_context(report_id),
    )
    return Response(page, 400 if error or case_error else 200, mimetype="text/html")


@bp.post("/reports/<report_id>/reply")
@login_required
def reply(report_id: str) -> ResponseReturnValue:
    text = request.form.get("text", "")
    try:
        reply_id = add_reply(vault(), checked_id(report_id), text)
    except ReplyError:
        if not text.strip():
            error = _("Write a reply first.")
        elif len(text.strip()) > MAX_REPLY:
            error = _("The reply is too long: at most %(limit)d characters.", limit=MAX_REPLY)
        else:
            error = _("This reporter kept no codename: no reply can reach them.")
        return _report_page(report_id, error, text[: MAX_REPLY * 2])
    audit.log(vault(), "reply", report=report_id, reply=reply_id)
    return redirect(url_for("reports.report", report_id=report_id, done="reply"), 303)


@bp.post("/reports/<report_id>/deletion")
@login_required
def deletion(report_id: str) -> ResponseReturnValue:
    asked = request.form.get("ask") == "1"
    vault().ask_deletion(checked_id(report_id), asked)
    audit.log(vault(), "deletion_request", report=report_id, asked=asked)
    done = "delete" if asked else "keep"
    return redirect(url_for("reports.report", report_id=report_id, done=done), 303)


@bp.get("/reports/<report_id>/files/<item_id>")
@login_required
def attachment(report_id: str, item_id: str) -> ResponseReturnValue:
    """Download an attachment, as an opaque file: never shown, whatever it claims to be."""
    found = vault().attachment(checked_id(report_id), checked_id(item_id))
    if found is None:
        abort(404)
    audit.log(vault(), "view_file", report=report_id, item=found.id, mode="download")
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


def _takedown_context(report_id: str) -> dict[str, Any]:
    """What the report page shows of notices and statuses (views/takedown.py acts on them)."""
    found = takedown.targets(vault(), report_id)
    drafts = {}
    for target in found:
        steps = [s for s in takedown.history(vault(), target.kind, target.value) if s.notice]
        if steps:
            drafts[(target.kind, target.value)] = steps[-1].notice
    return {
        "takedown_targets": found,
        "takedown_drafts": drafts,
        "takedown_states": takedown.states(vault(), [(t.kind, t.value) for t in found]),
        "notice_languages": LANGUAGES,
        "unit_configured": bool(services().config.unit.name and services().config.unit.contact),
        "reporter_statuses": reporter_status.statuses(vault(), report_id),
        "reporter_status_labels": reporter_status.LABELS,
        "reporter_message_labels": reporter_status.MESSAGE_LABELS,
    }
