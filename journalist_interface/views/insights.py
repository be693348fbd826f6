"""Across reports: connections (the same link, account or file in several reports) and
statistics, drawn as SVG on the server."""

from __future__ import annotations

import math

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from blagh.web.categories import label_of
from journalist_interface import charts, connections, stats, takedown
from journalist_interface.views import login_required, vault

bp = Blueprint("insights", __name__)

MAX_CLUSTERS = 200


@bp.get("/connections")
@login_required
def clusters() -> ResponseReturnValue:
    hashed = connections.hash_missing_files(vault())
    found, total = connections.clusters(vault(), limit=MAX_CLUSTERS)
    notices = takedown.states(vault(), [(c.kind, c.value) for c in found if c.kind != "file"])
    return render_template(
        "connections.html", clusters=found, total=total, hashed=hashed, takedown_states=notices
    )


def status_names() -> dict[str, str]:
    return {
        "new": _("New"),
        "triaged": _("Triaged"),
        "in_progress": _("In progress"),
        "escalated": _("Escalated"),
        "closed": _("Closed"),
    }


def _category(slug: str) -> str:
    try:
        return label_of(slug)
    except KeyError:
        return slug or _("Not received yet")


@bp.get("/statistics")
@login_required
def statistics() -> ResponseReturnValue:
    weeks_arg = request.args.get("weeks", "")
    weeks = int(weeks_arg) if weeks_arg in {str(w) for w in stats.WEEK_CHOICES} else None
    figures = stats.compute(vault(), weeks or stats.DEFAULT_WEEKS)
    short_weeks = [week[5:] for week in figures.weeks]  # MM-DD of each Monday
    names = status_names()
    per_category = charts.stacked_columns(
        "per-category",
        _("Reports per category per week"),
        _("Reports received each week (weeks begin on Monday), stacked by category."),
        short_weeks,
        [(_category(slug), values) for slug, values in figures.per_category.items()],
    )
    by_status = charts.horizontal_bars(
        "by-status",
        _("Open cases by status"),
        _("How many cases are at each status, closed cases left out."),
        [(names[status], count) for status, count in figures.open_by_status],
    )
    first_reply = charts.columns_with_gaps(
        "first-reply",
        _("Median time to a first reply, by week received"),
        _("For the reports of each week that have a reply, the median number of days to it."),
        short_weeks,
        figures.median_days_per_week,
        _("days"),
    )
    return render_template(
        "statistics.html",
        figures=figures,
        weeks=weeks or stats.DEFAULT_WEEKS,
        week_choices=stats.WEEK_CHOICES,
        status_names=names,
        category_name=_category,
        per_category=per_category,
        by_status=by_status,
        first_reply=first_reply,
        median_text=(
            ngettext(
                "%(days)s day",
                "%(days)s days",
                math.ceil(figures.median_days),
                days=f"{figures.median_days:g}",
            )
            if figures.median_days is not None
            else None
        ),
    )
