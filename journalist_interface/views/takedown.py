"""Takedown notices, the reporter-visible status, notice templates and the indicators export.

The forms post from a report's page (its "Takedown notices" and "Status the reporter sees"
sections) and come back to it (303); a refused change shows the page again with the reason
(400).  Templates are edited by admins only.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from journalist_interface import audit, indicators, reporter_status, takedown
from journalist_interface.notice_templates import LANGUAGES
from journalist_interface.views import admin_required, checked_id, login_required, services, vault
from journalist_interface.views.reports import _report_page

bp = Blueprint("takedown", __name__)


def _page_with(report_id: str, message: str) -> ResponseReturnValue:
    return _report_page(report_id, case_error=message)


@bp.post("/reports/<report_id>/notices")
@login_required
def draft(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        takedown.draft(
            vault(),
            report_id,
            request.form.get("kind", ""),
            request.form.get("value", ""),
            language=request.form.get("language", ""),
            explanation=request.form.get("explanation", "")[: takedown.MAX_EXPLANATION * 2],
            unit=services().config.unit,
        )
    except takedown.TakedownError as error:
        return _page_with(report_id, _("The notice was not drafted: %(why)s", why=str(error)))
    return redirect(
        url_for("reports.report", report_id=report_id, done="notice") + "#takedown", 303
    )


@bp.post("/reports/<report_id>/notices/state")
@login_required
def state(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    try:
        takedown.set_state(
            vault(),
            report_id,
            request.form.get("kind", ""),
            request.form.get("value", ""),
            request.form.get("state", ""),
        )
    except takedown.TakedownError as error:
        return _page_with(
            report_id, _("The notice's state was not changed: %(why)s", why=str(error))
        )
    return redirect(
        url_for("reports.report", report_id=report_id, done="notice") + "#takedown", 303
    )


@bp.post("/reports/<report_id>/reporter-status")
@login_required
def reporter_visible_status(report_id: str) -> ResponseReturnValue:
    checked_id(report_id)
    status = request.form.get("status", "")
    message = request.form.get("message", "")
    if status not in reporter_status.STATUSES or message not in reporter_status.MESSAGES:
        abort(400)
    try:
        reporter_status.set_status(vault(), report_id, status, message)
    except reporter_status.StatusError as error:
        return _page_with(report_id, _("The status was not set: %(why)s", why=str(error)))
    return redirect(
        url_for("reports.report", report_id=report_id, done="reporter_status") + "#reporter-status",
        303,
    )


@bp.route("/notice-templates", methods=["GET", "POST"])
@admin_required
def templates() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        try:
            takedown.set_template(
                vault(),
                request.form.get("category", "").strip(),
                request.form.get("platform", "").strip().lower(),
                request.form.get("language", ""),
                request.form.get("body", ""),
            )
        except takedown.TakedownError as refused:
            error = str(refused)
        else:
            return redirect(url_for("takedown.templates", done=1), 303)
    with vault().transaction() as db:
        rows = db.execute(
            "SELECT category, platform, language, body, updated, analyst FROM notice_templates"
            " ORDER BY category, platform, language"
        ).fetchall()
    page = render_template("notice_templates.html", rows=rows, languages=LANGUAGES, error=error)
    return Response(page, 400 if error else 200, mimetype="text/html")


@bp.get("/indicators.csv")
@login_required
def indicators_csv() -> ResponseReturnValue:
    found = indicators.indicators(vault())
    audit.log(vault(), "export", kind="indicators_csv", count=len(found))
    return Response(
        indicators.to_csv(found),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="indicators.csv"'},
    )


@bp.get("/indicators.stix.json")
@login_required
def indicators_stix() -> ResponseReturnValue:
    found = indicators.indicators(vault())
    audit.log(vault(), "export", kind="indicators_stix", count=len(found))
    return Response(
        indicators.to_stix(found, services().config.unit.name),
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="indicators.stix.json"'},
    )
