"""Shared set-up for the source interface's tests through Flask's test client.

A plain module, not a conftest: test modules import what they need and define their own small
fixtures around :func:`make_site`.  Everything is real: a data folder made like ``blagh init``
makes it, a SQLCipher index, a blob folder, argon2id codename derivations (about 0.2 s each, so
tests keep the number of codenames and logins low), and an analyst key that opens what the
server sealed, as the workstation would.
"""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.dates import format_date
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from blagh.config import Config, load_config
from blagh.datadir import DataDir
from blagh.payloads import decode_document, split_attachment
from crypto.envelope import open_envelope
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.app import create_app
from source_interface.services import Services
from source_interface.sessions import CSRF_COOKIE, SESSION_COOKIE
from source_interface.store import Store

CATEGORY_LABELS = {
    "fraud": "Fraud, scam or phishing",
    "harassment": "Online harassment or threats",
    "sextortion": "Sextortion or non-consensual intimate images",
}
"""English labels of a few categories, as the pages show them (sites here default to English)."""

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

File = tuple[bytes, str, str]
"""A file to upload: its bytes, its name and its declared content type."""


@dataclass
class Site:
    """One source interface over its own data folder, with the analyst who can read it."""

    data_dir: Path
    analyst: AnalystKey
    config: Config
    app: Flask

    @property
    def services(self) -> Services:
        services: Services = self.app.extensions["blagh"]
        return services

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def blobs_dir(self) -> Path:
        return self.store.blobs.root

    @property
    def tmp_dir(self) -> Path:
        return self.store.blobs.temp_dir

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def rows(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on the real index: SQLCipher, or PostgreSQL (``?`` marks become
        ``%s``)."""
        if self.config.store.backend == "postgresql":
            import psycopg

            with psycopg.connect(self.config.store.dsn) as pg:
                found = pg.execute(sql.replace("?", "%s"), tuple(parameters)).fetchall()
            return [tuple(row) for row in found]
        with self.store.index.transaction() as db:
            return db.execute(sql, tuple(parameters)).fetchall()

    def close(self) -> None:
        self.store.close()


def make_site(
    tmp_path: Path,
    limits: Mapping[str, Any] | None = None,
    *,
    store: Mapping[str, str] | None = None,
    **source_interface: Any,
) -> Site:
    """A fresh data folder and app; ``source_interface`` overrides that config section,
    ``limits`` the ``[limits]`` one and ``store`` the ``[store]`` one.

    Pages are in English unless ``default_language`` says otherwise, so tests can read them.
    """
    data_dir = tmp_path / "data"
    analyst = generate_analyst_key()
    DataDir(data_dir).create([analyst.public()])
    config = load_config(
        {
            "instance": {"data_dir": str(data_dir)},
            "recipients": {"analysts": [analyst.public().to_line()]},
            "source_interface": {"default_language": "en", **source_interface},
            "limits": dict(limits or {}),
            "store": dict(store or {}),
        }
    )
    return Site(data_dir, analyst, config, create_app(config))


@contextmanager
def open_site(
    tmp_path: Path, limits: Mapping[str, Any] | None = None, **source_interface: Any
) -> Iterator[Site]:
    site = make_site(tmp_path, limits, **source_interface)
    try:
        yield site
    finally:
        site.close()


# --- reading pages ------------------------------------------------------------------------


class FormState(HTMLParser):
    """What a page's forms hold: field values, checked boxes, hidden fields, error texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, list[str]] = {}
        self.checked: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}
        self.invalid: set[str] = set()
        self._textarea: str | None = None
        self._select: str | None = None
        self._error: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag in ("input", "textarea", "select") and a.get("aria-invalid") == "true":
            self.invalid.add(name)
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    self.checked.setdefault(name, []).append(a.get("value", "on"))
            elif kind != "file":
                self.values.setdefault(name, []).append(a.get("value", ""))
        elif tag == "textarea":
            self._textarea, self._text = name, []
        elif tag == "select":
            self._select = name
            self.values.setdefault(name, [])
        elif tag == "option" and self._select is not None and "selected" in a:
            self.values[self._select].append(a.get("value", ""))
        elif tag == "p" and "error" in a.get("class", "").split() and a.get("id"):
            self._error, self._text = a["id"].removesuffix("-error"), []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None or self._error is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            self.values.setdefault(self._textarea, []).append("".join(self._text))
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "p" and self._error is not None:
            self.errors[self._error] = "".join(self._text).strip()
            self._error = None

    def value(self, name: str) -> str:
        """The first value of field ``name`` ("" if absent)."""
        return (self.values.get(name) or [""])[0]


def form_state(response: TestResponse) -> FormState:
    state = FormState()
    state.feed(response.get_data(as_text=True))
    state.close()
    return state


def shown_day(iso_day: str, language: str = "en") -> str:
    """A stored day (``2025-03-14``) as the reporters' pages write it in ``language``."""
    return format_date(date.fromisoformat(iso_day), "long", locale=language)


def page_text(response: TestResponse) -> str:
    """A page's visible text, entities decoded and whitespace collapsed, for ``in`` checks."""
    without_tags = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return " ".join(html.unescape(without_tags).split())


def page_token(response: TestResponse) -> str:
    """The hidden anti-forgery token of the page's forms."""
    return form_state(response).value("form_token")


def shown_codename(response: TestResponse) -> str:
    found = re.search(r'<p class="codename"[^>]*>([^<]+)</p>', response.get_data(as_text=True))
    assert found is not None, "no codename on this page"
    return html.unescape(found.group(1)).strip()


# --- acting as a reporter -----------------------------------------------------------------


REPORT_FIELDS = {"category": "fraud", "description": "Someone sells fake tickets."}


def fresh_token(client: FlaskClient, path: str = "/report") -> str:
    """Open a page with forms (which sets the token cookie) and return its token."""
    response = client.get(path)
    assert response.status_code == 200, path
    return page_token(response)


def multipart(fields: Mapping[str, str | list[str]], files: Iterable[File] = ()) -> dict[str, Any]:
    """The ``data`` argument of a multipart POST through the test client."""
    data: dict[str, Any] = dict(fields)
    uploads = [(BytesIO(content), name, kind) for content, name, kind in files]
    if uploads:
        data["files"] = uploads
    return data


def post_report(
    client: FlaskClient,
    token: str | None,
    files: Iterable[File] = (),
    /,
    **fields: str | list[str],
) -> TestResponse:
    """POST /report as the no-JavaScript form does; ``token=None`` leaves the token out."""
    values: dict[str, str | list[str]] = {**REPORT_FIELDS, **fields}
    if token is not None:
        values["form_token"] = token
    return client.post("/report", data=multipart(values, files), content_type="multipart/form-data")


def submit_for_codename(
    client: FlaskClient, files: Iterable[File] = (), /, **fields: str | list[str]
) -> str:
    """Send a report keeping a codename; return the codename shown (not yet typed back)."""
    response = post_report(client, fresh_token(client), files, keep_codename="yes", **fields)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == "/report/codename"
    page = client.get("/report/codename")
    assert page.status_code == 200
    return shown_codename(page)


def confirm_codename(client: FlaskClient, words: str) -> TestResponse:
    """Type the codename back; a refusal is the page after its redirect (what a browser
    shows), a success the redirect to the follow-up page."""
    token = client.get_cookie(CSRF_COOKIE)
    assert token is not None
    response = client.post("/report/codename", data={"form_token": token.value, "codename": words})
    return after_refusal(client, response, "/report/codename")


def login(client: FlaskClient, words: str) -> TestResponse:
    """Log in without JavaScript; a refusal is the login page after its redirect."""
    response = client.post(
        "/login", data={"form_token": fresh_token(client, "/login"), "codename": words}
    )
    return after_refusal(client, response, "/login")


def after_refusal(client: FlaskClient, response: TestResponse, page: str) -> TestResponse:
    """A refused codename is redirected back to its own page (no page answers the POST, so
    going back never shows "Document Expired"): follow that one redirect."""
    if response.status_code == 303 and response.headers["Location"] == page:
        return client.get(page)
    return response


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return None if cookie is None else cookie.value


def raw_multipart(
    parts: Iterable[tuple[str, bytes] | tuple[str, bytes, str, str]],
    boundary: str = "blaghboundary",
) -> bytes:
    """A multipart body built byte by byte, for what the test client will not send.

    A part is ``(name, value)``, or ``(name, content, filename, content_type)`` for a file; the
    file name goes into the header as given (escape ``"`` as ``\\"`` as browsers may).
    """
    body = b""
    for name, value, *file in parts:
        disposition = f'form-data; name="{name}"'
        extra = ""
        if file:
            disposition += f'; filename="{file[0]}"'
            extra = f"Content-Type: {file[1]}\r\n"
        body += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
            + value
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


# --- acting as the analyst, and looking at the store -------------------------------------


@dataclass
class OpenedFile:
    name: str
    type: str
    content: bytes


@dataclass
class OpenedReport:
    """A report as the analyst's workstation would see it, opened with the analyst's key."""

    id: str
    source_id: str
    day: str
    fields: dict[str, Any]
    files: list[OpenedFile] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def analyst_open(site: Site, blob: str) -> bytes:
    return open_envelope(site.store.read_blob(blob), [site.analyst.encryption_secret])


def analyst_reports(site: Site) -> list[OpenedReport]:
    """Every stored report, each item opened with the analyst's key, by day and then by id:
    the store keeps no order of arrival finer than a day (docs/threat-model.md)."""
    reports = []
    for report_id, source_id, day in site.rows(
        "SELECT id, source_id, day FROM reports ORDER BY day, id"
    ):
        report = site.store.index.report(source_id, report_id)
        assert report is not None
        opened = OpenedReport(report_id, source_id, day, {})
        for item in report.items:
            opened.kinds.append(item.kind)
            plaintext = analyst_open(site, item.blob)
            if item.kind == "fields":
                opened.fields = decode_document(plaintext, "report")
            elif item.kind == "file":
                description, content = split_attachment(plaintext)
                opened.files.append(OpenedFile(description["name"], description["type"], content))
            elif item.kind == "message":
                opened.messages.append(decode_document(plaintext, "message"))
            else:
                opened.replies.append(decode_document(plaintext, "reply"))
        reports.append(opened)
    return reports


def counts(site: Site) -> dict[str, int]:
    """How much is stored: rows per table, committed blobs, and files being written."""
    found = {
        table: site.rows(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 (fixed names)
        for table in ("sources", "reports", "items", "drafts", "sessions")
    }
    found["blobs"] = len(site.store.blobs.names())
    found["tmp"] = len(list(site.tmp_dir.iterdir()))
    return found


def assert_consistent(site: Site) -> None:
    """Every blob is referenced, every reference has its blob, nothing is being written."""
    referenced = site.store.index.blob_names()
    assert site.store.blobs.names() == referenced
    assert list(site.tmp_dir.iterdir()) == []
    if site.config.store.backend == "sqlcipher":
        (check,) = site.rows("PRAGMA integrity_check")[0]
        assert check == "ok"


def sqlite_error(path: Path) -> str:
    """The error plain SQLite gives for ``path`` (it cannot read a SQLCipher file)."""
    db = sqlite3.connect(path)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        return str(error)
    finally:
        db.close()
    return ""
