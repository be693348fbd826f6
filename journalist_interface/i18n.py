"""Languages of the analysts' pages: English, French and Arabic (right to left).

The pages' own strings are in ``journalist_interface/translations``; the category names come
from the reporters' catalogs (``source_interface/translations``), so that a category reads the
same to the analyst as it did to the reporter and is translated once.  The picker is plain
``?lang=xx`` links remembered in a cookie, as on the reporters' pages.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, has_request_context, request
from flask_babel import Babel

from journalist_interface.config import LANGUAGES, WorkstationConfig
from source_interface.i18n import COOKIE, COOKIE_MAX_AGE, NATIVE_NAMES, LanguageLink, direction_of
from source_interface.i18n import TRANSLATIONS as REPORTER_TRANSLATIONS
from source_interface.i18n import current_language as current_language

TRANSLATIONS = Path(__file__).with_name("translations")
"""Catalogs, ``<lang>/LC_MESSAGES/messages.po``, compiled at set-up (docs/translations.md)."""


def init_app(app: Flask, config: WorkstationConfig) -> None:
    """Flask-Babel with the ``lang`` choice; templates get ``current_language``,
    ``text_direction`` and ``languages`` (a list of :class:`LanguageLink`)."""
    default = config.default_language

    def chosen_language() -> str:
        if not has_request_context():
            return default
        for choice in (request.args.get(COOKIE), request.cookies.get(COOKIE)):
            if choice in LANGUAGES:
                return str(choice)
        return default

    # Later folders win: the workstation's own words over the reporters' catalogs.
    Babel(
        app,
        locale_selector=chosen_language,
        default_locale=default,
        default_translation_directories=f"{REPORTER_TRANSLATIONS};{TRANSLATIONS}",
    )

    @app.after_request
    def remember_choice(response: Response) -> Response:
        asked = request.args.get(COOKIE)
        if asked in LANGUAGES:
            response.set_cookie(
                COOKIE, str(asked), max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict"
            )
        return response

    @app.context_processor
    def language_context() -> dict[str, object]:
        current = current_language(default)
        return {
            "current_language": current,
            "text_direction": direction_of(current),
            "languages": [_picker_entry(code, current) for code in LANGUAGES],
        }


def _picker_entry(code: str, current: str) -> LanguageLink:
    """A link to this page in ``code``, its other query parameters kept."""
    kept = [(key, value) for key, value in request.args.items(multi=True) if key != COOKIE]
    href = "?" + urlencode([*kept, (COOKIE, code)])
    return LanguageLink(code, NATIVE_NAMES[code], direction_of(code), href, code == current)
