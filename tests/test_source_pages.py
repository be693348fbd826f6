"""The reporters' page layer: languages, the landing page, security headers and error pages.

The app here is built from these parts alone (i18n, security, the landing blueprint, and stubs
for the report and follow-up endpoints the landing page links to), so that the layer is tested
on its own, whatever state the rest of the source interface is in.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Blueprint, Flask, Response, request
from flask.testing import FlaskClient
from werkzeug.exceptions import Forbidden
from werkzeug.test import TestResponse

from blagh.config import (
    Config,
    EmergencyConfig,
    EmergencyLabels,
    EmergencyNumber,
    SourceInterfaceConfig,
)
from blagh.web import categories
from source_interface import i18n, security, static_files
from source_interface.security import HEADERS, ReporterError
from source_interface.views import landing

PACKAGE = Path(i18n.__file__).parent
VERSION = static_files.StaticFiles.load().version
"""The static folder's version, in every static URL (source_interface/static_files.py)."""
ROOT = PACKAGE.parent
TRANSLATIONS = PACKAGE / "translations"
TRANSLATED = ("ar", "fr", "es")
UPLOAD_LIMIT = 4096
SECRET = "do-not-show-this-cause"  # noqa: S105 (not a password: a marker)

TRANSLATED_FILES = tuple(
    sorted(
        str(path.relative_to(ROOT))
        for pattern in ("**/*.py", "templates/**/*.html")  # as babel.cfg
        for path in PACKAGE.glob(pattern)
    )
)
"""The files whose every string the catalogs must translate: all of ``source_interface/``."""

ARABIC = re.compile(r"[\u0600-\u06ff]{3,}")


def build_app(config: Config) -> Flask:
    """The page layer on a bare Flask app, plus stub views that fail in each way tested."""
    app = Flask(
        "source_interface",
        template_folder=str(PACKAGE / "templates"),
        static_folder=None,
    )
    app.config["MAX_CONTENT_LENGTH"] = UPLOAD_LIMIT
    i18n.init_app(app, config)
    security.init_app(app, config)
    static_files.init_app(app)
    app.register_blueprint(landing.bp)

    report = Blueprint("report", __name__)
    report.add_url_rule("/report", "new", lambda: "report form")
    followup = Blueprint("followup", __name__)
    followup.add_url_rule("/followup", "login", lambda: "login form")
    app.register_blueprint(report)
    app.register_blueprint(followup)

    @app.post("/upload")
    def upload() -> str:
        return str(len(request.form))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(SECRET)

    @app.get("/forbidden")
    def forbidden() -> str:
        raise Forbidden(SECRET)

    @app.get("/expired")
    def expired() -> str:
        raise ReporterError(400, "This form has expired.", "Reload it.")

    @app.get("/folder/")
    def folder() -> str:
        return "a route with a trailing slash"

    @app.get("/chatty")
    def chatty() -> Response:
        return Response("hello", headers={"Server": "Werkzeug/3.1 Python/3.11"})

    @app.get("/cached")
    def cached() -> Response:
        # What the security headers replace, set by the view in mixed case.
        return Response("hello", headers={"cache-control": "max-age=60", "X-Frame-Options": "x"})

    return app


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogs() -> None:
    """The catalogs are compiled at set-up (``make catalogs``), not committed: say so if stale."""
    for language in TRANSLATED:
        po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            pytest.fail(f"{mo.relative_to(ROOT)} is missing or stale: run `make catalogs`")


@pytest.fixture
def app(config: Config) -> Flask:
    return build_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def with_settings(config: Config, **settings: Any) -> Config:
    site = dataclasses.replace(config.source_interface, **settings)
    return dataclasses.replace(config, source_interface=site)


def html_tag(body: str) -> str:
    match = re.search(r"<html[^>]*>", body)
    assert match
    return match.group()


# --- languages ----------------------------------------------------------------------------------

LANDING_TEXT = {
    "ar": ("ما يمكنك الإبلاغ عنه", "الابتزاز الجنسي", "rtl"),
    "fr": ("Ce que vous pouvez signaler", "hameçonnage", "ltr"),
    "en": ("What you can report", "Fraud, scam or phishing", "ltr"),
    "es": ("Qué puede denunciar", "Fraude, estafa o phishing", "ltr"),
}


@pytest.mark.parametrize("language", ["ar", "fr", "en", "es"])
def test_landing_page_in_each_language(client: FlaskClient, language: str) -> None:
    response = client.get(f"/?lang={language}")
    body = response.get_data(as_text=True)
    heading, category, direction = LANDING_TEXT[language]

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert html_tag(body) == f'<html lang="{language}" dir="{direction}">'
    assert heading in body
    assert category in body
    assert 'name="viewport"' in body
    assert 'href="/report"' in body
    assert 'href="/followup"' in body
    if language == "ar":
        assert len(ARABIC.findall(body)) > 100
    else:
        assert not ARABIC.search(body.replace("العربية", ""))


def test_first_visit_gets_the_operators_language_not_the_browsers(client: FlaskClient) -> None:
    """Tor Browser sends en-US for everyone: the operator's default wins over Accept-Language."""
    response = client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9,en-US"})
    assert html_tag(response.get_data(as_text=True)) == '<html lang="ar" dir="rtl">'
    assert "Set-Cookie" not in response.headers


def test_default_language_comes_from_config(config: Config) -> None:
    client = build_app(with_settings(config, default_language="fr")).test_client()
    assert 'lang="fr"' in html_tag(client.get("/").get_data(as_text=True))


def test_chosen_language_is_remembered_in_a_session_cookie(client: FlaskClient) -> None:
    response = client.get("/?lang=fr")
    cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith("lang=fr;")
    # A session cookie: the choice must not outlive the browser session (a seized phone).
    assert "max-age" not in attributes and "expires" not in attributes
    assert attributes["path"].strip() == "Path=/"
    assert attributes["samesite"].strip() == "SameSite=Strict"
    assert "httponly" in attributes
    assert "secure" not in attributes  # plain HTTP: an onion address is not HTTPS

    # The next pages come in French without the parameter, error pages too.
    assert 'lang="fr"' in html_tag(client.get("/").get_data(as_text=True))
    assert "Page introuvable" in client.get("/nowhere").get_data(as_text=True)

    # And a new choice replaces it.
    client.get("/?lang=en")
    assert 'lang="en"' in html_tag(client.get("/").get_data(as_text=True))


def test_cookie_is_secure_over_https(client: FlaskClient) -> None:
    response = client.get("/?lang=fr", base_url="https://blagh.example")
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize("asked", ["de", "AR", "", "fr-FR", "../en", "ar\x00"])
def test_unknown_language_is_ignored(client: FlaskClient, asked: str) -> None:
    response = client.get("/", query_string={"lang": asked})
    assert response.status_code == 200
    assert html_tag(response.get_data(as_text=True)) == '<html lang="ar" dir="rtl">'
    assert "Set-Cookie" not in response.headers


def test_unknown_language_cookie_is_ignored(client: FlaskClient) -> None:
    client.set_cookie("lang", "de")
    assert 'lang="ar"' in html_tag(client.get("/").get_data(as_text=True))


def test_language_left_out_of_config_is_not_offered(config: Config) -> None:
    client = build_app(
        with_settings(config, languages=("fr", "en"), default_language="fr")
    ).test_client()
    response = client.get("/?lang=ar")
    body = response.get_data(as_text=True)
    assert 'lang="fr"' in html_tag(body)
    assert "Set-Cookie" not in response.headers
    assert "?lang=ar" not in body
    assert "العربية" not in body


def test_language_picker_is_plain_links_that_keep_the_page(client: FlaskClient) -> None:
    body = client.get("/?lang=fr&page=2").get_data(as_text=True)
    links = re.findall(
        r'<li><a href="([^"]*)" lang="(\w+)" hreflang="\w+" dir="(\w+)"([^>]*)>', body
    )
    assert [(href, lang, direction) for href, lang, direction, _ in links] == [
        ("?page=2&amp;lang=ar", "ar", "rtl"),
        ("?page=2&amp;lang=fr", "fr", "ltr"),
        ("?page=2&amp;lang=en", "en", "ltr"),
        ("?page=2&amp;lang=es", "es", "ltr"),
    ]
    assert [extra for *_, extra in links] == ["", ' aria-current="true"', "", ""]
    for name in ("العربية", "Français", "English", "Español"):
        assert name in body


# --- the landing page ---------------------------------------------------------------------------


def test_landing_page_lists_every_category(client: FlaskClient) -> None:
    with client.application.test_request_context("/?lang=fr"):
        labels = [str(category.label) for category in categories.CATEGORIES]
    body = client.get("/?lang=fr").get_data(as_text=True)
    for label in labels:
        # A category with a guidance page has its link after the label (tests/test_guidance.py).
        assert re.search(f"<li>{re.escape(label)}(</li>| — <a )", body.replace("&#39;", "'"))


def test_categories_api() -> None:
    assert [category.slug for category in categories.CATEGORIES] == [
        "terrorism",
        "sextortion",
        "harassment",
        "minors",
        "hate",
        "fraud",
        "hacking",
        "impersonation",
        "illegal_trade",
        "other",
    ]
    assert {category.slug for category in categories.CATEGORIES} == categories.SLUGS
    slug, label = categories.CATEGORIES[0]  # a (slug, label) pair, as the brief promised
    assert (slug, label) == categories.CATEGORIES[0]
    with pytest.raises(KeyError):
        categories.label_of("weather")


def test_category_labels_follow_the_request_language(app: Flask) -> None:
    with app.test_request_context("/?lang=fr"):
        assert categories.label_of("fraud") == "Fraude, arnaque ou hameçonnage"
    with app.test_request_context("/?lang=en"):
        assert categories.label_of("fraud") == "Fraud, scam or phishing"


def test_emergency_notice_defaults_are_translated(client: FlaskClient) -> None:
    english = client.get("/?lang=en").get_data(as_text=True)
    # The words spelt out in i18n.py for translation are exactly blagh.config's default.
    assert EmergencyConfig().text in english
    assert '<a href="tel:112">Emergency services <bdi class="number" dir="ltr">112</bdi></a>' in (
        english
    )
    french = client.get("/?lang=fr").get_data(as_text=True)
    assert "Si quelqu’un est en danger immédiat" in french
    assert "Services d’urgence" in french
    arabic = client.get("/?lang=ar").get_data(as_text=True)
    assert "خدمات الطوارئ" in arabic


def test_emergency_notice_shows_the_operators_words(config: Config) -> None:
    emergency = EmergencyConfig(
        text="Danger? Call the <police> now.",
        numbers=(
            EmergencyNumber(label="Police", number="17"),
            EmergencyNumber(label="Helpline", number="+33 (0)1 23-45.67 #2"),
        ),
    )
    client = build_app(dataclasses.replace(config, emergency=emergency)).test_client()
    body = client.get("/?lang=fr").get_data(as_text=True)
    assert "Danger? Call the &lt;police&gt; now." in body
    assert 'href="tel:17">Police <bdi class="number" dir="ltr">17</bdi>' in body
    assert 'href="tel:+3301234567%232">Helpline' in body


def test_emergency_labels_follow_the_page_language(config: Config) -> None:
    """Moroccan numbers: each label in the page's language, the label itself where none given."""
    numbers = (
        EmergencyNumber(
            label="Police",
            labels=EmergencyLabels(ar="الشرطة", fr="Police", es="Policía"),
            number="19",
        ),
        EmergencyNumber(
            label="Royal Gendarmerie",
            labels=EmergencyLabels(
                ar="الدرك الملكي", fr="Gendarmerie royale", es="Gendarmería Real"
            ),
            number="177",
        ),
        EmergencyNumber(label="Emergency services", number="112"),
    )
    emergency = dataclasses.replace(EmergencyConfig(), numbers=numbers)
    client = build_app(dataclasses.replace(config, emergency=emergency)).test_client()

    arabic = client.get("/?lang=ar").get_data(as_text=True)
    assert 'href="tel:19">الشرطة <bdi' in arabic
    assert 'href="tel:177">الدرك الملكي <bdi' in arabic
    assert 'href="tel:112">خدمات الطوارئ <bdi' in arabic
    french = client.get("/?lang=fr").get_data(as_text=True)
    assert 'href="tel:177">Gendarmerie royale <bdi' in french
    assert 'href="tel:112">Services d’urgence <bdi' in french
    english = client.get("/?lang=en").get_data(as_text=True)
    assert 'href="tel:177">Royal Gendarmerie <bdi' in english
    spanish = client.get("/?lang=es").get_data(as_text=True)
    assert 'href="tel:19">Policía <bdi' in spanish
    assert 'href="tel:177">Gendarmería Real <bdi' in spanish
    assert 'href="tel:112">Servicios de emergencia <bdi' in spanish


def test_emergency_notice_can_be_removed(config: Config) -> None:
    client = build_app(
        dataclasses.replace(config, emergency=EmergencyConfig(text="", numbers=()))
    ).test_client()
    assert 'class="emergency"' not in client.get("/").get_data(as_text=True)


def test_instance_name_is_shown_and_escaped(config: Config) -> None:
    instance = dataclasses.replace(config.instance, name="Unit <b>42</b>")
    client = build_app(dataclasses.replace(config, instance=instance)).test_client()
    body = client.get("/").get_data(as_text=True)
    assert "Unit &lt;b&gt;42&lt;/b&gt;" in body
    assert "<b>" not in body


def test_landing_page_weighs_under_30_kb_with_its_style_sheet(client: FlaskClient) -> None:
    style_url = f"/static/{VERSION}/style.css"
    style = client.get(style_url)
    assert style.status_code == 200
    assert len(style.data) < 8 * 1024
    for language in ("ar", "fr", "en", "es"):
        page = client.get(f"/?lang={language}")
        links = re.findall(r'(?:href|src)="(/[^"]*)"', page.get_data(as_text=True))
        loaded = [link for link in links if link.startswith("/static/")]
        assert loaded == [style_url]
        assert len(page.data) + len(style.data) < 30 * 1024, language


# --- what every page must and must not contain --------------------------------------------------

PAGES: list[tuple[str, str]] = [
    ("GET", "/?lang=ar"),
    ("GET", "/?lang=fr"),
    ("GET", "/?lang=en"),
    ("GET", "/?lang=es"),
    ("GET", "/nowhere?lang=ar"),
    ("GET", "/nowhere?lang=fr"),
    ("GET", "/nowhere?lang=es"),
    ("POST", "/?lang=en"),
    ("GET", "/forbidden"),
    ("GET", "/expired"),
    ("GET", "/boom"),
]


@pytest.mark.parametrize(("method", "path"), PAGES)
def test_pages_have_no_inline_code_and_load_nothing_from_elsewhere(
    client: FlaskClient, method: str, path: str
) -> None:
    body = client.open(path, method=method).get_data(as_text=True)
    assert "<!doctype html>" in body
    assert "<script" not in body.lower()
    assert "<style" not in body.lower()
    assert "style=" not in body.lower()
    assert not re.search(r"\son\w+\s*=", body, re.IGNORECASE), "inline event handler"
    for url in re.findall(r'(?:href|src|action)="([^"]*)"', body):
        assert url.startswith(("/", "?", "#", "tel:")) and not url.startswith("//"), url


def test_every_page_links_a_same_origin_style_sheet(client: FlaskClient) -> None:
    body = client.get("/").get_data(as_text=True)
    assert f'<link rel="stylesheet" href="/static/{VERSION}/style.css">' in body


# --- headers ------------------------------------------------------------------------------------


def big_upload(client: FlaskClient, language: str = "fr") -> TestResponse:
    return client.post(
        f"/upload?lang={language}",
        data={"file": (io.BytesIO(b"x" * (UPLOAD_LIMIT * 2)), "big.bin")},
    )


REQUESTS: dict[str, Callable[[FlaskClient], TestResponse]] = {
    "landing": lambda c: c.get("/"),
    "landing, language chosen": lambda c: c.get("/?lang=fr"),
    "head": lambda c: c.head("/"),
    "style sheet, unversioned (redirected)": lambda c: c.get("/static/style.css"),
    "missing static file": lambda c: c.get("/static/nothing.css"),
    "missing versioned static file": lambda c: c.get(f"/static/{VERSION}/nothing.css"),
    "not found": lambda c: c.get("/nowhere"),
    "method not allowed": lambda c: c.post("/"),
    "too large": big_upload,
    "forbidden": lambda c: c.get("/forbidden"),
    "reporter error": lambda c: c.get("/expired"),
    "server error": lambda c: c.get("/boom"),
    "view that sets Server": lambda c: c.get("/chatty"),
    "view that sets Cache-Control": lambda c: c.get("/cached"),
    "redirect": lambda c: c.get("/folder"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_security_headers_on_every_response(client: FlaskClient, name: str) -> None:
    response = REQUESTS[name](client)
    for header, value in HEADERS.items():
        assert response.headers.get_all(header) == [value], header
    assert "Server" not in response.headers


def test_the_policy_is_the_one_specified() -> None:
    assert HEADERS["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert HEADERS["Referrer-Policy"] == "no-referrer"
    assert HEADERS["Cache-Control"] == "no-store"
    for feature in ("camera", "microphone", "geolocation"):
        assert f"{feature}=()" in HEADERS["Permissions-Policy"]


# --- error pages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "title", "back"),
    [
        ("en", "Page not found", "Back to the home page"),
        ("fr", "Page introuvable", "Retour à la page d’accueil"),
        ("ar", "الصفحة غير موجودة", "العودة إلى الصفحة الرئيسية"),
        ("es", "Página no encontrada", "Volver a la página de inicio"),
    ],
)
def test_not_found_page_is_translated(
    client: FlaskClient, language: str, title: str, back: str
) -> None:
    response = client.get(f"/nowhere?lang={language}")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert f"<h1>{title}</h1>" in body
    assert f'<a href="/">{back}</a>' in body
    assert f'lang="{language}"' in html_tag(body)


def test_too_large_states_the_limits(client: FlaskClient) -> None:
    response = big_upload(client)
    body = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "Trop de données à envoyer en une fois" in body
    limits = SourceInterfaceConfig()
    assert f"{limits.max_files_per_report} fichiers" in body
    assert f"{limits.max_upload_mb}\u00a0Mo" in body


def test_too_large_in_arabic(client: FlaskClient) -> None:
    body = big_upload(client, "ar").get_data(as_text=True)
    assert "ميغابايت" in body
    assert 'dir="rtl"' in html_tag(body)


def test_method_not_allowed_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.post("/?lang=en")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "This action is not possible here" in response.get_data(as_text=True)


def test_server_error_says_nothing_of_the_cause(client: FlaskClient) -> None:
    response = client.get("/boom?lang=fr")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Une erreur s’est produite" in body
    assert SECRET not in body
    assert "RuntimeError" not in body
    assert "Traceback" not in body


def test_forbidden_shows_our_words_not_the_exceptions(client: FlaskClient) -> None:
    response = client.get("/forbidden")
    assert response.status_code == 403
    assert "رُفض الوصول" in response.get_data(as_text=True)
    assert SECRET not in response.get_data(as_text=True)


def test_reporter_error_shows_its_message(client: FlaskClient) -> None:
    response = client.get("/expired?lang=en")
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<p>This form has expired.</p>" in body
    assert "<p>Reload it.</p>" in body
    assert "<h1>The request could not be understood</h1>" in body


def test_redirects_are_not_error_pages(client: FlaskClient) -> None:
    response = client.get("/folder")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/folder/")


@pytest.mark.parametrize(
    ("number", "href"),
    [("112", "tel:112"), ("+33 1 23 45", "tel:+3312345"), ("*#06#", "tel:*%2306%23")],
)
def test_tel_href(number: str, href: str) -> None:
    assert i18n.tel_href(number) == href


# --- catalogs -----------------------------------------------------------------------------------


def extracted_messages() -> set[str]:
    """Every string ``source_interface/`` marks for translation, as ``make messages`` finds it."""
    # Babel's default keywords, plus -k lazy_gettext -k _l as in the Makefile.
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}
    found: set[str] = set()
    for path in TRANSLATED_FILES:
        method = "jinja2" if path.endswith(".html") else "python"
        options = {"newstyle_gettext": "true", "silent": "false"} if method == "jinja2" else {}
        with (ROOT / path).open("rb") as source:
            for _line, message, _comments, _context in extract(
                method, source, keywords=keywords, options=options
            ):
                found.add(message if isinstance(message, str) else message[0])
    assert len(found) > 50  # the extraction itself worked
    return found


def as_tuple(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """A message's id or string as a tuple: one item, or one per plural form."""
    return (text,) if isinstance(text, str) else tuple(text or ())


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_of_the_source_interface_is_translated(language: str) -> None:
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as file:
        catalog = read_po(file, locale=language)
    translated = {  # a plural message by its singular, and only if every form is filled
        message.id[0] if isinstance(message.id, tuple) else message.id
        for message in catalog
        if message.id and not message.fuzzy and all(as_tuple(message.string))
    }
    missing = sorted(extracted_messages() - translated)
    assert not missing, f"not translated in {po.relative_to(ROOT)}: {missing}"
    problems = [(message.id, errors) for message, errors in catalog.check() if errors]
    assert not problems


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_catalog_matches_its_source(language: str) -> None:
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as file:
        source = {
            as_tuple(m.id): as_tuple(m.string)
            for m in read_po(file)
            if m.id and not m.fuzzy and m.string
        }
    with po.with_suffix(".mo").open("rb") as file:
        compiled = {as_tuple(m.id): as_tuple(m.string) for m in read_mo(file) if m.id}
    assert compiled == source
