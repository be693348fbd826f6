"""Reading and checking what reporters type, so every mistake is named next to its field.

Values are kept exactly as typed (after trimming; Arabic-Indic digits in a phone number become
ASCII digits) so that a form sent back with errors shows everything the reporter wrote; nothing
here stores or logs them.  Messages are translated when the form is read, inside the request:
lazy strings would reach templates marked as safe HTML.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from babel.dates import get_month_names
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from blagh.web.categories import CATEGORIES

MAX_DESCRIPTION = 20_000
MAX_MESSAGE = 20_000
MAX_LINKS = 50
MAX_LINK = 2_048
MAX_PLATFORM = 200
MAX_NAME = 200
MAX_PHONE = 40
MAX_EMAIL = 254
_PHONE_CHARACTERS = set("0123456789+-(). /")
_LOCAL_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")

Errors = dict[str, Any]


@dataclass
class ReportForm:
    category: str = ""
    danger: bool = False
    description: str = ""
    links: str = ""
    platform: str = ""
    seen_day: str = ""
    seen_month: str = ""
    seen_year: str = ""
    name: str = ""
    phone: str = ""
    email: str = ""
    keep_codename: bool = True
    errors: Errors = field(default_factory=dict)

    @classmethod
    def read(cls, form: MultiDict[str, str]) -> "ReportForm":
        def text(name: str) -> str:
            return form.get(name, "").strip()

        day, month, year = _day_parts(form)
        report = cls(
            category=text("category"),
            danger=form.get("danger") == "yes",
            description=text("description"),
            links=text("links"),
            platform=text("platform"),
            seen_day=day,
            seen_month=month,
            seen_year=year,
            name=text("name"),
            phone=text("phone").translate(_LOCAL_DIGITS),
            email=text("email"),
            keep_codename=form.get("keep_codename", "yes") != "no",
        )
        report.errors = report._check()
        return report

    def seen_on(self) -> str | None:
        """The day the content was seen, as year-month-day, or None (checked beforehand)."""
        day = _day(self.seen_day, self.seen_month, self.seen_year)
        return day.isoformat() if day else None

    def link_list(self) -> list[str]:
        return [line.strip() for line in self.links.splitlines() if line.strip()]

    def _check(self) -> Errors:
        errors: Errors = {}
        if self.category not in {slug for slug, _ in CATEGORIES}:
            errors["category"] = _("Choose what kind of crime you are reporting.")
        if not self.description:
            errors["description"] = _("Describe what happened: a few sentences are enough.")
        elif len(self.description) > MAX_DESCRIPTION:
            errors["description"] = _(
                "The description is too long (%(count)d characters, at most %(limit)d). "
                "Shorten it, or attach the rest as a text file.",
                count=len(self.description),
                limit=MAX_DESCRIPTION,
            )
        links = self.link_list()
        if len(links) > MAX_LINKS or any(len(link) > MAX_LINK for link in links):
            errors["links"] = _(
                "Give at most %(count)d links, one per line, each under %(size)d characters.",
                count=MAX_LINKS,
                size=MAX_LINK,
            )
        if len(self.platform) > MAX_PLATFORM:
            errors["platform"] = _("The platform name is too long.")
        if self.seen_day or self.seen_month or self.seen_year:
            errors.update(_check_day(self.seen_day, self.seen_month, self.seen_year))
        if len(self.name) > MAX_NAME:
            errors["name"] = _("The name is too long.")
        if self.phone and (len(self.phone) > MAX_PHONE or set(self.phone) - _PHONE_CHARACTERS):
            errors["phone"] = _("Write the phone number with digits, spaces and + only.")
        if self.email and (
            len(self.email) > MAX_EMAIL or "@" not in self.email.strip("@") or " " in self.email
        ):
            errors["email"] = _("This e-mail address does not look right: check it.")
        if any("\ufffd" in value for value in vars(self).values() if isinstance(value, str)):
            errors["form"] = _(
                "Some text was not sent in a form we can read (not UTF-8). "
                "Check your browser's text encoding and submit again."
            )
        return errors

    def document(self, attachments: list[str]) -> dict[str, Any]:
        """The report's fields as sealed for the analysts (docs/payloads.md)."""
        identity = {"name": self.name, "phone": self.phone, "email": self.email}
        return {
            "category": self.category,
            "danger": self.danger,
            "description": self.description,
            "links": self.link_list(),
            "platform": self.platform,
            # The one form the workstation expects (docs/payloads.md), whatever was typed.
            "seen_on": self.seen_on(),
            "identity": identity if any(identity.values()) else None,
            "attachments": attachments,
        }


def month_names() -> list[tuple[int, str]]:
    """The months, numbered from 1, named in the page's language (Babel's CLDR data)."""
    names = get_month_names("wide", context="stand-alone", locale=get_locale())
    return [(number, str(names[number])) for number in range(1, 13)]


def _day_parts(form: MultiDict[str, str]) -> tuple[str, str, str]:
    """The day, month and year as typed in their three fields.

    A form made before the three fields (a page left open across an upgrade) sends one
    ``seen_on`` field as year-month-day: it is read into the same three parts.
    """
    day, month, year = (
        form.get(name, "").strip().translate(_LOCAL_DIGITS)
        for name in ("seen_day", "seen_month", "seen_year")
    )
    legacy = form.get("seen_on", "").strip()
    if legacy and not (day or month or year):
        year, _dash, rest = legacy.partition("-")
        month, _dash, day = rest.partition("-")
    return day, month, year


def _day(day: str, month: str, year: str) -> date | None:
    """The date the three parts name, or None if they do not name one."""
    if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4):
        return None
    if len(day) > 2 or len(month) > 2:
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def _check_day(day: str, month: str, year: str) -> Errors:
    """The messages name the three fields the page shows (day, month, year), in its language:
    not a format such as mm/dd/yyyy that the browser may show in another one."""
    if not (day and month and year) or not (day.isdigit() and year.isdigit() and len(year) == 4):
        return {
            "seen_on": _(
                "Give the day (a number from 1 to 31), choose the month, and give the year in "
                "four digits, or leave all three empty."
            )
        }
    found = _day(day, month, year)
    if found is None:
        return {"seen_on": _("This date does not exist: check the day and the month.")}
    if found > datetime.now(UTC).date() + timedelta(days=1):
        return {"seen_on": _("This day is in the future: check it.")}
    return {}


def read_message(form: MultiDict[str, str]) -> tuple[str, Errors]:
    """A follow-up message's text and the errors in it."""
    text = form.get("message", "").strip()
    if len(text) > MAX_MESSAGE:
        return text, {
            "message": _(
                "The message is too long (%(count)d characters, at most %(limit)d).",
                count=len(text),
                limit=MAX_MESSAGE,
            )
        }
    if "\ufffd" in text:
        return text, {"message": _("Some text was not sent in a form we can read (not UTF-8).")}
    return text, {}
