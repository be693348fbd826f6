"""Case work from a report's page: status, priority, assignee, notes and tags.

Each form posts here and comes back to the report's page (303), which shows the change in the
case's history; a change that cannot be made shows the page again with the reason (400).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Blueprint, abort, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from journalist_interface import cases, search
from journalist_interface.vault import STATUSES
from journalist_interface.views import checked_id, login_required, vault
from journalist_interface.views.reports import _report_page, inbox_page

bp = Blueprint("cases", __name__)

_KEEP = "keep"
"""The assignee or priority field left as it was."""
_NONE_TICKED = "none_ticked"
"""A change to the ticked reports, with none ticked."""


def _back(report_id: str, done: str) -> ResponseReturnValue:
    return redirect(url_for("reports.report", report_id=report_id, done=done), 303)


@bp.post("/reports/<report_id>/case")
@login_required
def update(report_id: str) -> ResponseReturnValue:
    """Status (with a reason to close), priority and assignee; ``notes`` adds a note too."""
    checked_id(report_id)
    status = request.form.get("status", "")
    if status not in STATUSES:
        abort(400)
    assignee_field = request.form.get("assignee", _KEEP)
    priority_field = request.form.get("priority", _KEEP)
    changes: dict[str, object] = {}
    if assignee_field != _KEEP:
        changes["assignee"] = assignee_field or None
    if priority_field == "auto":
        changes["priority"] = None
    elif priority_field != _KEEP:
        if priority_field not in {str(p) for p in cases.PRIORITIES}:
            abort(400)
        changes["priority"] = int(priority_field)
    note = request.form.get("notes", "")
    try:
        cases.update(
            vault(),
            report_id,
            status=status,
            reason=request.form.get("reason", ""),
            **changes,  # type: ignore[arg-type]
        )
        if note.strip():
            cases.add_note(vault(), report_id, note[: cases.MAX_NOTE])
    except cases.CaseError as error:
        return _report_page(report_id, case_error=_case_error(error))
    return _back(report_id, "case")


@bp.post("/reports/<report_id>/notes")
@login_required
def add_note(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        cases.add_note(vault(), report_id, request.form.get("note", "")[: cases.MAX_NOTE + 1])
    except cases.CaseError as error:
        return _report_page(report_id, case_error=_case_error(error))
    return _back(report_id, "note")


@bp.post("/reports/<report_id>/notes/<int:note_id>/delete")
@login_required
def delete_note(report_id: str, note_id: int) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        cases.delete_note(vault(), report_id, note_id)
    except cases.CaseError as error:
        return _report_page(report_id, case_error=_case_error(error))
    return _back(report_id, "note_deleted")


@bp.post("/reports/<report_id>/tags")
@login_required
def add_tag(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        cases.add_tag(vault(), report_id, request.form.get("tag", "")[:200])
    except cases.CaseError as error:
        return _report_page(report_id, case_error=_case_error(error))
    return _back(report_id, "tag")


@bp.post("/reports/<report_id>/tags/remove")
@login_required
def remove_tag(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        cases.remove_tag(vault(), report_id, request.form.get("tag", "")[:200])
    except cases.CaseError as error:
        return _report_page(report_id, case_error=_case_error(error))
    return _back(report_id, "tag_removed")


@bp.post("/bulk")
@login_required
def bulk() -> ResponseReturnValue:
    """The same change to the reports ticked in the inbox (at most a page of them): a status
    (with a reason to close), an assignee, a tag.  Every report's change is recorded in its own
    history, as if made on its page.  What is asked is checked before anything changes."""
    back = search.InboxQuery.from_args(dict(parse_qsl(request.form.get("back", "")[:2000])))
    reports = list(dict.fromkeys(request.form.getlist("report")))[: search.PER_PAGE]
    for report_id in reports:
        checked_id(report_id)
    status = request.form.get("status", _KEEP)
    assignee = request.form.get("assignee", _KEEP)
    tag = request.form.get("tag", "").strip()
    if status != _KEEP and status not in STATUSES:
        abort(400)
    reason = request.form.get("reason", "")
    try:
        if not reports:
            raise cases.CaseError(_NONE_TICKED, "no report ticked")
        if status == "closed" and not reason.strip():
            raise cases.CaseError(cases.CaseError.NO_REASON, "a reason is needed to close")
        if assignee not in (_KEEP, "") and assignee not in cases.analyst_names(vault()):
            raise cases.CaseError(cases.CaseError.NO_ANALYST, "there is no such analyst")
        tag = cases.clean_tag(tag[:200]) if tag else ""
        for report_id in reports:
            changes: dict[str, object] = {}
            if assignee != _KEEP:
                changes["assignee"] = assignee or None
            if status != _KEEP or changes:
                cases.update(
                    vault(),
                    report_id,
                    status=None if status == _KEEP else status,
                    reason=reason,
                    **changes,  # type: ignore[arg-type]
                )
            if tag:
                cases.add_tag(vault(), report_id, tag)
    except cases.CaseError as error:
        return inbox_page(back, bulk_error=_case_error(error))
    target = url_for("reports.inbox", **{**back.args(), "done": str(len(reports))})  # type: ignore[arg-type]
    return redirect(target, 303)


def _case_error(error: cases.CaseError) -> str:
    """The message of a refused change, in the page's language."""
    messages: dict[str, str] = {
        cases.CaseError.NO_REASON: _("Say why the case is closed: a reason is required."),
        cases.CaseError.EMPTY_NOTE: _("Write the note first."),
        cases.CaseError.LONG_NOTE: _(
            "The note is too long: at most %(limit)d characters.", limit=cases.MAX_NOTE
        ),
        cases.CaseError.BAD_TAG: _(
            "A tag is letters, digits, spaces and - _ . + #, at most %(limit)d characters.",
            limit=cases.MAX_TAG,
        ),
        cases.CaseError.TOO_MANY_TAGS: _(
            "A report has at most %(limit)d tags.", limit=cases.MAX_TAGS
        ),
        cases.CaseError.NOT_AUTHOR: _("Only the analyst who wrote a note can delete it."),
        cases.CaseError.NO_ANALYST: _("There is no such analyst."),
        _NONE_TICKED: _("Tick at least one report first."),
    }
    return str(messages.get(error.reason, _("This change cannot be made.")))
