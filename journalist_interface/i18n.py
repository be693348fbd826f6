"""Languages of the analysts' pages: English, French and Arabic (right to left).

The pages' own strings are in ``journalist_interface/translations``; the category names come
from the reporters' catalogs (``source_interface/translations``), so that a category reads the
same to the analyst as it did to the reporter and is translated once.  The picker is plain
``?lang=xx`` links remembered in a cookie, as on the reporters' pages.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from journalist_interface.config import LANGUAGES, WorkstationConfig
from source_interface.i18n import TRANSLATIONS as REPORTER_TRANSLATIONS
from source_interface.i18n import current_language as current_language
from source_interface.i18n import init_language_choice, language_names

TRANSLATIONS = Path(__file__).with_name("translations")
"""Catalogs, ``<lang>/LC_MESSAGES/messages.po``, compiled at set-up (docs/translations.md)."""


def init_app(app: Flask, config: WorkstationConfig) -> None:
    """Flask-Babel with the ``lang`` choice; templates get ``current_language``,
    ``text_direction`` and ``languages`` (a list of :class:`LanguageLink`)."""
    default = config.default_language

    # Later folders win: the workstation's own words over the reporters' catalogs.
    init_language_choice(app, LANGUAGES, default, f"{REPORTER_TRANSLATIONS};{TRANSLATIONS}")

    @app.context_processor
    def language_context() -> dict[str, object]:
        return language_names(LANGUAGES, default)
