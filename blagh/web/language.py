"""Which language a request of either web app gets, and what its templates need to show it.

Both apps choose the same way (``?lang=``, then a ``lang`` cookie, then the operator's default) and
show the same picker; the reporters' pages (source_interface.i18n) add their emergency notice and
dates on top, the analysts' app (journalist_interface.i18n) its own catalogs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, has_request_context, request
from flask_babel import Babel, get_locale

REPORTER_CATALOGS = Path(__file__).parents[2] / "source_interface" / "translations"
"""The reporters' catalogs, which the analysts' app loads under its own: they translate what both
apps show (the report categories, blagh.web.categories).  A folder of data beside this package, in
a checkout as in the wheel; no import of the server's code."""

COOKIE = "lang"
"""A session cookie (no expiry): the choice must not outlive the browser session, or a seized
phone's ordinary browser would show that it visited."""

NATIVE_NAMES = {"ar": "العربية", "fr": "Français", "en": "English", "es": "Español"}
"""Each language named in itself: a reporter looks for the language they can read."""

RIGHT_TO_LEFT = frozenset({"ar"})


@dataclass(frozen=True)
class LanguageLink:
    """One entry of the language picker."""

    code: str
    name: str
    direction: str
    href: str
    current: bool


def direction_of(language: str) -> str:
    """``rtl`` or ``ltr``: the ``dir`` attribute of a page, or of a word, in ``language``."""
    return "rtl" if language in RIGHT_TO_LEFT else "ltr"


def init_language_choice(
    app: Flask, languages: Collection[str], default: str, translation_directories: str
) -> None:
    """Flask-Babel choosing among ``languages``: ``?lang=``, then the ``lang`` cookie, then
    ``default``; a language picked with ``?lang=`` is remembered in the cookie.

    ``translation_directories`` is Flask-Babel's ``;``-separated list (later folders win).
    """

    def chosen_language() -> str:
        if not has_request_context():
            return default
        for choice in (request.args.get(COOKIE), request.cookies.get(COOKIE)):
            if choice is not None and choice in languages:
                return choice
        return default

    Babel(
        app,
        locale_selector=chosen_language,
        default_locale=default,
        default_translation_directories=translation_directories,
    )

    @app.after_request
    def remember_choice(response: Response) -> Response:
        """Keep a language picked with ``?lang=`` for the next pages (links do not carry it)."""
        asked = request.args.get(COOKIE)
        if asked is not None and asked in languages:
            response.set_cookie(
                COOKIE,
                asked,
                path="/",
                secure=request.is_secure,
                httponly=True,
                samesite="Strict",
            )
        return response


def language_names(languages: Iterable[str], default: str) -> dict[str, object]:
    """What templates need to show this request's language: ``current_language``,
    ``text_direction``, and ``languages``, the picker (this page in each of ``languages``)."""
    current = current_language(default)
    return {
        "current_language": current,
        "text_direction": direction_of(current),
        "languages": [
            LanguageLink(
                code=code,
                name=NATIVE_NAMES[code],
                direction=direction_of(code),
                href=_link_to(code),
                current=code == current,
            )
            for code in languages
        ],
    }


def current_language(default: str = "en") -> str:
    """The language code of this request's pages (``default`` outside a request)."""
    locale = get_locale()
    return default if locale is None else str(locale.language)


def _link_to(language: str) -> str:
    """A relative ``?…&lang=xx`` link: the same page, its other query parameters kept.

    Relative to the current path, so it stays right whatever prefix the app is mounted under.
    """
    if not has_request_context():
        return "?" + urlencode([(COOKIE, language)])
    query = [(key, value) for key, value in request.args.items(multi=True) if key != COOKIE]
    query.append((COOKIE, language))
    return "?" + urlencode(query)
