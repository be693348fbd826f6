"""The status an analyst set on a report, as the reporter reads it (blagh/reporter_status.py).

Labels and messages are translated here, from the codes in the sealed ``status`` document: the
analysts pick from a fixed list precisely so that each reporter reads them in their language.
"""

from __future__ import annotations

from datetime import date

from flask_babel import format_date, lazy_gettext

from blagh.reporter_status import Status

LABELS = {
    "received": lazy_gettext("Received"),
    "being_reviewed": lazy_gettext("Being reviewed"),
    "referred": lazy_gettext("Referred to another unit"),
    "content_removed": lazy_gettext("Content removed"),
    "closed": lazy_gettext("Closed"),
}
MESSAGES = {
    "thanks": lazy_gettext("Thank you for your report."),
    "more_information": lazy_gettext("If you know more, add a message to this report."),
    "other_unit_contact": lazy_gettext("The unit in charge may contact you through this page."),
    "danger_call": lazy_gettext(
        "If someone is in danger now, call the emergency number on this site."
    ),
}


def label(status: Status) -> str:
    return str(LABELS[status.status])


def message(status: Status) -> str:
    return str(MESSAGES[status.message]) if status.message else ""


def day(status: Status) -> str:
    """The day it was set, as the page's language writes a date."""
    return str(format_date(date.fromisoformat(status.day), format="long"))
