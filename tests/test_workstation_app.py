"""The analysts' review app through Flask's test client, and once under waitress.

A real vault (SQLCipher, argon2id at its lowest cost), real pickup bundles, real replies.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    vault_state,
    workstation_app,
)

from blagh.bundles import BundleReader
from blagh.payloads import decode_document
from crypto.envelope import open_envelope
from crypto.keys import ServerSigningKey
from journalist_interface import i18n
from journalist_interface.config import WorkstationConfig
from journalist_interface.sessions import COOKIE, Sessions

SERVER = ServerSigningKey.generate()
PACKAGE = Path(i18n.__file__).parent
HOSTILE = b"<html><script>alert(document.cookie)</script></html>"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; "
    "base-uri 'none'"
)


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    report = bundle.report(
        source,
        danger=True,
        description="They wrote <b>this</b> & <script>alert(1)</script>",
        links=["https://evil.example/x?a=1&b=2", "javascript:alert(1)", "@account_handle"],
        identity={"name": "Samira", "phone": "+213 555 12 34", "email": "s@example.org"},
        files=[(HOSTILE, "x.html", "text/html"), (b"plain", 'a"b\r\nSet-Cookie: x=1.txt', "x")],
    )
    bundle.message(report, source, "Any news?")
    quiet = bundle.source(codename=False)
    bundle.report(quiet, category="harassment", description="No codename kept.")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def csrf(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def report_id(pickup: Pickup, index: int = 0) -> str:
    return str(pickup.reports[index]["id"])


# --- logging in --------------------------------------------------------------------------------


def test_every_page_needs_a_login(app: Flask, pickup: Pickup) -> None:
    client = app.test_client()
    for path in ("/", f"/reports/{report_id(pickup)}", "/import", "/outbox"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"] == "/login"


def test_a_wrong_passphrase_opens_nothing_and_says_so(app: Flask, vault_path: Path) -> None:
    client = app.test_client()
    response = client.post("/login", data={"passphrase": "guess"})
    assert response.status_code == 403
    assert "Wrong passphrase: nothing was opened." in text(response)
    assert "Set-Cookie" not in response.headers
    open_vault(vault_path).close()  # the app does not hold the vault


def test_login_cookie_is_opaque_and_strict_and_logout_locks_the_vault(
    app: Flask, vault_path: Path
) -> None:
    client = app.test_client()
    response = client.post("/login", data={"passphrase": PASSPHRASE})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40 and PASSPHRASE not in cookie
    assert client.get("/").status_code == 200
    with pytest.raises(Exception, match="open in another program"):
        open_vault(vault_path)

    response = client.post("/logout", data={"csrf": csrf(client)})
    assert response.status_code == 303
    assert f"{COOKIE}=;" in response.headers["Set-Cookie"]
    # The old token is worthless now, even sent again by hand.
    client.set_cookie(COOKIE, token)
    assert client.get("/").status_code == 303
    open_vault(vault_path).close()  # unlocked by the logout


def test_an_idle_session_ends_and_locks_the_vault(vault_path: Path) -> None:
    sessions = Sessions(vault_path, idle_seconds=0.2)
    token = sessions.login(PASSPHRASE)
    assert sessions.current(token) is not None
    time.sleep(0.3)
    sessions.expire()  # what the server's timer does, with no request needed
    open_vault(vault_path).close()
    assert sessions.current(token) is None
    sessions.close()


def test_forms_need_their_token_and_the_same_origin(client: FlaskClient, pickup: Pickup) -> None:
    path = f"/reports/{report_id(pickup)}/reply"
    assert client.post(path, data={"text": "x"}).status_code == 400
    assert client.post(path, data={"text": "x", "csrf": "forged"}).status_code == 400
    token = csrf(client)
    foreign = client.post(
        path, data={"text": "x", "csrf": token}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert client.post(path, data={"text": "x", "csrf": token}).status_code == 303


def test_other_host_names_are_refused(client: FlaskClient) -> None:
    assert client.get("/login", headers={"Host": "127.0.0.1:8090"}).status_code == 200
    assert client.get("/login", headers={"Host": "localhost:8090"}).status_code == 303  # cookie
    assert client.get("/login", headers={"Host": "rebound.example"}).status_code == 400


def test_the_app_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        WorkstationConfig(vault=tmp_path, host="0.0.0.0")  # noqa: S104


# --- pages -------------------------------------------------------------------------------------


def test_strict_headers_on_every_page(client: FlaskClient, pickup: Pickup) -> None:
    for path in ("/", f"/reports/{report_id(pickup)}", "/import", "/outbox", "/login", "/nope"):
        response = client.get(path)
        assert response.headers["Content-Security-Policy"] == CSP, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "<script" not in text(response)


def test_inbox_puts_immediate_danger_first(client: FlaskClient, pickup: Pickup) -> None:
    page = text(client.get("/?lang=en"))
    first, second = report_id(pickup, 0), report_id(pickup, 1)
    assert page.index(first) < page.index(second)
    assert "Immediate danger" in page
    assert "Online harassment or threats" in page  # the reporters' words for the category


def test_search(client: FlaskClient, pickup: Pickup) -> None:
    assert report_id(pickup, 1) in text(client.get("/?q=codename"))
    assert report_id(pickup, 0) not in text(client.get("/?q=codename"))
    assert "No report matches" in text(client.get('/?q="unlikely" OR'))


def test_report_page_shows_everything_as_text(client: FlaskClient, pickup: Pickup) -> None:
    page = text(client.get(f"/reports/{report_id(pickup)}?lang=en"))
    assert "They wrote &lt;b&gt;this&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "https://evil.example/x?a=1&amp;b=2" in page
    assert 'href="https://evil.example' not in page
    assert 'href="javascript:' not in page
    assert "@account_handle" in page
    for shown in ("Samira", "+213 555 12 34", "s@example.org", "Any news?", "x.html"):
        assert shown in page
    assert "mailto:" not in page and "tel:" not in page
    assert "The reporter says someone is in immediate danger." in page
    assert 'name="text"' in page  # a reply box
    quiet = text(client.get(f"/reports/{report_id(pickup, 1)}?lang=en"))
    assert "The reporter stayed anonymous." in quiet
    assert "no reply can reach them" in quiet and 'name="text"' not in quiet


def test_unknown_reports_and_files_are_not_found(client: FlaskClient, pickup: Pickup) -> None:
    assert client.get("/reports/" + "0" * 32).status_code == 404
    assert client.get("/reports/../../etc/passwd").status_code == 404
    assert client.get(f"/reports/{report_id(pickup)}/files/{'0' * 32}").status_code == 404


@pytest.mark.parametrize(
    ("language", "direction", "words"),
    [
        ("en", "ltr", ["Inbox", "Immediate danger", "Fraud, scam or phishing"]),
        ("fr", "ltr", ["Boîte de réception", "Danger immédiat", "Fraude, arnaque ou hameçonnage"]),
        ("ar", "rtl", ["صندوق الوارد", "خطر داهم", "احتيال أو نصب أو تصيّد احتيالي"]),
    ],
)
def test_pages_in_three_languages(
    client: FlaskClient, pickup: Pickup, language: str, direction: str, words: list[str]
) -> None:
    for path in ("/", f"/reports/{report_id(pickup)}", "/import", "/outbox"):
        page = text(client.get(f"{path}?lang={language}"))
        assert f'<html lang="{language}" dir="{direction}">' in page
    inbox = text(client.get("/"))  # the choice is remembered
    for word in words:
        assert word in inbox
    logged_out = text(client.application.test_client().get(f"/login?lang={language}"))
    assert f'dir="{direction}"' in logged_out


# --- attachments -------------------------------------------------------------------------------


def download_links(client: FlaskClient, report: str) -> dict[str, str]:
    """The report page's file names (as shown, escaped) and their download links."""
    page = text(client.get(f"/reports/{report}"))
    rows = re.findall(r'<tr><td><bdi>([^<]*)</bdi></td>.*?<a href="([^"]+)" download>', page, re.S)
    return dict(rows)


def test_a_hostile_html_attachment_is_only_ever_downloaded(
    client: FlaskClient, pickup: Pickup
) -> None:
    links = download_links(client, report_id(pickup))
    assert set(links) == {"x.html", "a&#34;b\r\nSet-Cookie: x=1.txt"}
    response = client.get(links["x.html"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"x.html\"; filename*=UTF-8''x.html"
    )
    assert response.headers["Content-Length"] == str(len(HOSTILE))
    assert response.get_data() == HOSTILE


def test_a_file_name_cannot_break_out_of_its_header(client: FlaskClient, pickup: Pickup) -> None:
    links = download_links(client, report_id(pickup))
    response = client.get(links["a&#34;b\r\nSet-Cookie: x=1.txt"])
    disposition = response.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition == (
        'attachment; filename="a_b__Set-Cookie__x_1.txt"; '
        "filename*=UTF-8''a%22b%0D%0ASet-Cookie%3A%20x%3D1.txt"
    )
    assert "Set-Cookie" not in response.headers
    assert response.get_data() == b"plain"


# --- import, reply, reply bundle ---------------------------------------------------------------


def test_import_form(
    client: FlaskClient, tmp_path: Path, analyst: Analyst, vault_path: Path
) -> None:
    more = Pickup([analyst.key])
    new_report = more.report(more.source(), category="hate", description="Posted today.")
    bundle = more.write(tmp_path / "more", SERVER)
    response = client.post(
        "/import?lang=en",
        data={"csrf": csrf(client), "bundle": (BytesIO(bundle.read_bytes()), "more.bundle")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, text(response)
    assert "The bundle is verified and imported." in text(response)
    assert "New reports: 1" in text(response)
    assert new_report in text(client.get("/"))
    assert list((vault_path / "incoming").iterdir()) == []


def test_import_form_refuses_a_tampered_bundle_whole(
    client: FlaskClient, app: Flask, tmp_path: Path, analyst: Analyst, vault_path: Path
) -> None:
    more = Pickup([analyst.key])
    more.report(more.source())
    forged = more.write(tmp_path / "forged", ServerSigningKey.generate())
    token = csrf(client)
    client.post("/logout", data={"csrf": token})
    before = vault_state(vault_path)
    client.post("/login", data={"passphrase": PASSPHRASE})
    response = client.post(
        "/import?lang=fr",
        data={"csrf": csrf(client), "bundle": (BytesIO(forged.read_bytes()), "forged.bundle")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    page = text(response)
    assert "Le paquet a été refusé en entier" in page
    assert "forged.bundle: the manifest&#39;s signature does not verify" in page
    assert str(vault_path) not in page
    client.post("/logout", data={"csrf": csrf(client)})
    assert vault_state(vault_path) == before


def test_reply_in_the_app_reaches_the_reporter(
    client: FlaskClient, pickup: Pickup, analyst: Analyst, tmp_path: Path
) -> None:
    report = report_id(pickup)
    response = client.post(
        f"/reports/{report}/reply", data={"csrf": csrf(client), "text": "We have it. Stay safe."}
    )
    assert response.status_code == 303
    page = text(client.get(response.headers["Location"] + "&lang=en"))
    assert "Your reply is saved." in page and "not sent yet" in page

    empty = client.post(f"/reports/{report}/reply", data={"csrf": csrf(client), "text": "  "})
    assert empty.status_code == 400 and "Write a reply first." in text(empty)

    made = client.post("/outbox", data={"csrf": csrf(client)})
    assert made.status_code == 303
    bundle_id = made.headers["Location"].rsplit("done=", 1)[1]
    download = client.get(f"/outbox/{bundle_id}")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    saved = tmp_path / "replies.bundle"
    saved.write_bytes(download.get_data())

    with BundleReader(saved, [analyst.key.public().verify], "blagh-replies") as bundle:
        (item,) = bundle.manifest["items"]
        assert item["report"] == report
        assert len(bundle.manifest["acknowledged"]) == len(pickup.items)
        envelope = bundle.read_item(item["id"])
    secret = pickup.sources[0].secret_key
    assert secret is not None
    assert decode_document(open_envelope(envelope, [secret]), "reply")["text"] == (
        "We have it. Stay safe."
    )
    again = client.post("/outbox", data={"csrf": csrf(client)})
    assert again.headers["Location"].endswith("done=nothing")
    assert "Nothing to send" in text(client.get(again.headers["Location"] + "&lang=en"))


def test_case_notes_and_deletion_request(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup)
    client.post(
        f"/reports/{report}/case",
        data={"csrf": csrf(client), "status": "in_progress", "notes": "Call the platform."},
    )
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert '<option value="in_progress" selected>' in page and "Call the platform." in page
    assert (
        client.post(
            f"/reports/{report}/case", data={"csrf": csrf(client), "status": "x"}
        ).status_code
        == 400
    )
    client.post(f"/reports/{report}/deletion", data={"csrf": csrf(client), "ask": "1"})
    assert "Cancel the deletion request" in text(client.get(f"/reports/{report}?lang=en"))
    assert "deletion asked" in text(client.get("/?lang=en"))  # fmt: skip


# --- catalogs ----------------------------------------------------------------------------------


def workstation_messages() -> set[str]:
    """Every string journalist_interface/ marks, as `make messages` extracts it."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"newstyle_gettext": "true", "silent": "false"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}
    found = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            PACKAGE, method_map, options, keywords=keywords
        )
    }
    assert len(found) > 80
    return found


@pytest.mark.parametrize("language", ["ar", "fr"])
def test_every_workstation_string_is_translated(language: str) -> None:
    po = PACKAGE / "translations" / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as file:
        catalog = read_po(file, locale=language)
    done = {
        m.id[0] if isinstance(m.id, tuple) else m.id
        for m in catalog
        if m.id and not m.fuzzy and all([m.string] if isinstance(m.string, str) else m.string)
    }
    assert not sorted(workstation_messages() - done)
    assert not [(m.id, errors) for m, errors in catalog.check() if errors]
    with po.with_suffix(".mo").open("rb") as file:  # compiled by `make catalogs`
        compiled = {as_key(m.id) for m in read_mo(file) if m.id}
    assert {as_key(m.id) for m in catalog if m.id and not m.fuzzy and m.string} <= compiled


def as_key(message_id: str | Sequence[str]) -> str | tuple[str, ...]:
    return message_id if isinstance(message_id, str) else tuple(message_id)


# --- under waitress ----------------------------------------------------------------------------


def test_serve_runs_waitress_on_loopback(tmp_path: Path, vault_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).parent / "blagh", "workstation", "serve", "--vault", vault_path,
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/login")
                response = connection.getresponse()
                break
            except OSError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        body = response.read().decode()
        assert response.status == 200
        assert response.getheader("Server") is None
        assert response.getheader("Content-Security-Policy") == CSP
        assert 'name="passphrase"' in body
        connection.close()
        with pytest.raises(OSError):
            socket.create_connection(("::1", port), timeout=1).close()
    finally:
        server.terminate()
        server.wait(timeout=10)
