"""Languages of the reporters' pages: which one a request gets, and what templates need to show it.

The operator's ``default_language`` decides what a first visit sees, not the browser: Tor Browser
reports ``en-US`` to everyone so that its users look alike, and most reporters read the default.
A reporter who picks another language from the picker (plain ``?lang=xx`` links, which work with
JavaScript off) keeps it through a ``lang`` cookie that reveals nothing but that choice.

The emergency notice on every page is here too, as a translation question: it comes from the
operator's config, in the operator's words, but left at its defaults it is shown translated, so
that a reporter reading Arabic is not warned in English; each number's label is shown in the
page's language when the operator wrote it in that language (``labels`` in ``[emergency] numbers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flask import Flask
from flask_babel import format_date, gettext
from markupsafe import Markup

from blagh.config import Config, EmergencyConfig
from blagh.web.language import COOKIE as COOKIE
from blagh.web.language import NATIVE_NAMES as NATIVE_NAMES
from blagh.web.language import RIGHT_TO_LEFT as RIGHT_TO_LEFT
from blagh.web.language import LanguageLink as LanguageLink
from blagh.web.language import current_language as current_language
from blagh.web.language import direction_of as direction_of
from blagh.web.language import init_language_choice, language_names

TRANSLATIONS = Path(__file__).with_name("translations")
"""Catalogs, ``<lang>/LC_MESSAGES/messages.po``, compiled at set-up (docs/translations.md)."""

DEFAULT_EMERGENCY_LABEL = "Emergency services"
"""The label of the default ``[emergency] numbers`` entry, translated when left as it is."""

_DIALABLE = frozenset("0123456789+*#")


@dataclass(frozen=True)
class EmergencyNumber:
    """One number of the emergency notice: what to show, and the ``tel:`` link that dials it."""

    label: str
    number: str
    href: str


def init_app(app: Flask, config: Config) -> None:
    """Set up Flask-Babel with our locale choice, the ``lang`` cookie, and the template names.

    Templates get ``current_language``, ``text_direction``, ``languages`` (a list of
    :class:`LanguageLink`), ``instance_name``, ``emergency_text``, ``emergency_numbers`` (a list
    of :class:`EmergencyNumber`), the ``_``/``ngettext`` functions from Flask-Babel, and the
    ``day`` filter (:func:`day`).
    """
    languages: tuple[str, ...] = config.source_interface.languages
    default = config.source_interface.default_language
    default_emergency_text = EmergencyConfig().text

    init_language_choice(app, languages, default, str(TRANSLATIONS))
    app.add_template_filter(day, "day")

    @app.context_processor
    def language_context() -> dict[str, object]:
        return {
            **language_names(languages, default),
            "instance_name": config.instance.name,
            **_emergency_notice(
                config, translate_text=config.emergency.text == default_emergency_text
            ),
        }


def day(value: str) -> Markup | str:
    """A day as the store keeps it (``2025-03-14``, never a finer time) written in the page's
    language — "14 mars 2025", "14 de marzo de 2025", "14 مارس 2025" — inside a ``<time>`` that
    keeps the ISO form for machines.  An ISO date means nothing to many reporters, and reads
    backwards in an Arabic sentence.  A value that is not a day is shown as it is."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return value
    return Markup('<time datetime="{iso}">{text}</time>').format(
        iso=parsed.isoformat(), text=format_date(parsed, "long")
    )


def isolate(text: str) -> str:
    """Someone's text set inside one of our translated sentences, between Unicode's isolate
    marks (FSI … PDI: ``<bdi>`` for plain text), so that Latin words in an Arabic sentence, or
    Arabic ones in a French sentence, keep their order and do not reorder the sentence."""
    return f"\u2068{text}\u2069"


def _emergency_notice(config: Config, *, translate_text: bool) -> dict[str, object]:
    """The notice's text and numbers, in this request's language where left at the defaults."""
    text = config.emergency.text
    if translate_text:
        # The same words as blagh.config's default, spelt out for extraction (a test checks).
        text = gettext(
            "If someone is in immediate danger, call the emergency services now: "
            "reports sent here are not read around the clock."
        )
    language = current_language()
    numbers = [
        EmergencyNumber(
            label=(
                entry.labels.get(language)
                or (
                    gettext("Emergency services")
                    if entry.label == DEFAULT_EMERGENCY_LABEL
                    else entry.label
                )
            ),
            number=entry.number,
            href=tel_href(entry.number),
        )
        for entry in config.emergency.numbers
    ]
    return {"emergency_text": text, "emergency_numbers": numbers}


def tel_href(number: str) -> str:
    """``tel:`` link for a number as people write it: ``+33 1 23`` dials ``tel:+33123``.

    Spaces, dots, dashes and brackets are dropped; ``#`` is escaped, as it would start a fragment.
    """
    digits = "".join(char for char in number if char in _DIALABLE)
    return "tel:" + digits.replace("#", "%23")
