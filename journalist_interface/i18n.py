"""Languages of the analysts' pages: English, French and Arabic (right to left).

The pages' own strings are in ``journalist_interface/translations``; the category names come
from the reporters' catalogs (``source_interface/translations``), so that a category reads the
same to the analyst as it did to the reporter and is translated once.  The picker is plain
``?lang=xx`` links remembered in a cookie, as on the reporters' pages.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from flask import Flask
from flask_babel import format_date, format_datetime
from markupsafe import Markup

from blagh.web.language import REPORTER_CATALOGS, init_language_choice, language_names
from blagh.web.language import current_language as current_language
from journalist_interface.config import LANGUAGES, WorkstationConfig

TRANSLATIONS = Path(__file__).with_name("translations")
"""Catalogs, ``<lang>/LC_MESSAGES/messages.po``, compiled at set-up (docs/translations.md)."""


def init_app(app: Flask, config: WorkstationConfig) -> None:
    """Flask-Babel with the ``lang`` choice; templates get ``current_language``,
    ``text_direction`` and ``languages`` (a list of :class:`LanguageLink`)."""
    default = config.default_language

    # Later folders win: the workstation's own words over the reporters' catalogs.
    init_language_choice(app, LANGUAGES, default, f"{REPORTER_CATALOGS};{TRANSLATIONS}")

    @app.context_processor
    def language_context() -> dict[str, object]:
        return language_names(LANGUAGES, default)

    app.add_template_filter(day, "day")
    app.add_template_filter(moment, "moment")
    app.add_template_filter(bdi, "bdi")


def bdi(value: object) -> Markup:
    """Someone's text inside a sentence of the page, isolated so that its direction (Arabic in
    a French sentence, Latin in an Arabic one) cannot reorder the words around it."""
    return Markup("<bdi>{value}</bdi>").format(value=value)


def day(value: str | None) -> Markup | str:
    """An ISO day (``2025-03-14``) written in the page's language ("14 mars 2025"), in a
    ``<time>`` that keeps the ISO form; an empty or odd value is shown as it is."""
    if not value:
        return "—"
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return value
    return Markup('<time datetime="{iso}">{text}</time>').format(
        iso=parsed.isoformat(), text=format_date(parsed, "long")
    )


def moment(value: str | None) -> Markup | str:
    """A UTC time to the second (``2025-03-14T10:00:00Z``), in the page's language."""
    if not value:
        return "—"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return Markup('<time datetime="{iso}">{text}</time>').format(
        iso=value, text=format_datetime(parsed, "medium")
    )
