"""A reporter's whole journey through the Flask test client, checked from the analyst's side.

Submit (with and without identity, several files, one over 5 MB), keep or refuse a codename,
type it back, come back with it, read a reply, add a message with a file, log out, delete.
Everything stored is opened with the analyst's key to check it is exactly what was sent.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_helpers import (
    CATEGORY_LABELS,
    DAY,
    REPORT_FIELDS,
    OpenedFile,
    Site,
    analyst_open,
    analyst_reports,
    assert_consistent,
    confirm_codename,
    counts,
    form_state,
    fresh_token,
    login,
    multipart,
    open_site,
    page_text,
    page_token,
    post_report,
    session_cookie,
    shown_codename,
    shown_day,
    submit_for_codename,
)
from werkzeug.test import TestResponse

from crypto import codename as codenames
from crypto import wrap
from crypto.envelope import open_envelope
from crypto.errors import DecryptionError
from source_interface.sessions import SESSION_COOKIE
from source_interface.store import Item
from source_interface.store.index import EXPIRY_GRAIN_SECONDS
from source_interface.submissions import seal_document

BIG = os.urandom(5 * 1024 * 1024 + 4321)
"""Over 5 MB, and not a multiple of the 64 KiB chunk size."""

FILES = [
    (b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "screenshot.png", "image/png"),
    (BIG, "video.mp4", "video/mp4"),
    (b"%PDF-1.7\nnot much of a pdf\n", "capture d'écran (1).pdf", "application/pdf"),
    (b"", "empty.txt", "text/plain"),
]


@pytest.fixture(params=["sqlcipher", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """Every flow on each store backend (PostgreSQL: a database of its own in the session's
    throw-away cluster, tests/postgres_helpers.py)."""
    store = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        store = {"backend": "postgresql", "dsn": postgres.new_database(f"s{secrets.token_hex(6)}")}
    with open_site(tmp_path, store=store) as site:
        yield site


def report_id_on(page_html: str) -> list[str]:
    return re.findall(r'action="/followup/([0-9a-f]{32})/message"', page_html)


def source_id_of(site: Site, report_id: str) -> str:
    [(source_id,)] = site.rows("SELECT source_id FROM reports WHERE id = ?", [report_id])
    return str(source_id)


def add_reply(site: Site, report_id: str, text: str) -> None:
    """Store an analysts' reply the way the reply bundle import will: sealed to the source
    (and the analysts), added as a ``reply`` item of the report."""
    source_id = source_id_of(site, report_id)
    source = site.store.index.source(source_id)
    assert source is not None and source.public_key is not None
    ref = seal_document(
        site.services, [*site.services.analysts, source.public_key], "reply", {"text": text}
    )
    assert site.store.index.add_items(source_id, report_id, [("reply", ref)])


# --- submitting -------------------------------------------------------------------------


def test_anonymous_report_without_codename_reaches_the_analyst_exactly(site: Site) -> None:
    client = site.client()
    response = post_report(
        client,
        fresh_token(client),
        FILES,
        category="harassment",
        description="  Threats sent every night.\nSee the links.  ",
        links="https://example.com/post/1\n\n  @someone_bad  \nhttps://example.org/x?y=1&z=2\n",
        platform="Example social",
        seen_on="2024-02-29",
        keep_codename="no",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/report/received"
    assert session_cookie(client) is None
    assert SESSION_COOKIE not in response.headers.get("Set-Cookie", "")
    received = client.get("/report/received")
    assert received.status_code == 200
    assert "Your report was received" in page_text(received)
    assert session_cookie(client) is None

    [report] = analyst_reports(site)
    assert report.fields == {
        "v": 1,
        "kind": "report",
        "category": "harassment",
        "danger": False,
        "description": "Threats sent every night.\nSee the links.",
        "links": ["https://example.com/post/1", "@someone_bad", "https://example.org/x?y=1&z=2"],
        "platform": "Example social",
        "seen_on": "2024-02-29",
        "identity": None,
        "attachments": [name for _, name, _ in FILES],
    }
    assert report.files == [OpenedFile(name, kind, content) for content, name, kind in FILES]
    assert report.kinds == ["fields"] + ["file"] * len(FILES)
    assert DAY.match(report.day)

    # Nobody can come back to this report: the source has no verifier and no public key.
    [(verifier, public_key)] = site.rows("SELECT verifier, public_key FROM sources")
    assert verifier is None and public_key is None
    assert counts(site) == {
        "sources": 1,
        "reports": 1,
        "items": 1 + len(FILES),
        "drafts": 0,
        "sessions": 0,
        "blobs": 1 + len(FILES),
        "tmp": 0,
    }
    assert_consistent(site)


def test_report_with_identity_and_codename(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(
        client,
        FILES[:2],
        category="sextortion",
        danger="yes",
        description="They ask for money or they publish the photos.",
        links="https://example.net/profile/abc",
        name="Leïla Benali",
        phone="+213 (0) 555-12.34",
        email="leila@example.org",
    )
    assert len(words.split()) == codenames.WORD_COUNT
    assert set(words.split()) <= set(site.services.wordlist)

    [report] = analyst_reports(site)
    assert report.fields["identity"] == {
        "name": "Leïla Benali",
        "phone": "+213 (0) 555-12.34",
        "email": "leila@example.org",
    }
    assert report.fields["danger"] is True
    assert report.fields["category"] == "sextortion"
    assert report.fields["seen_on"] is None
    assert report.fields["platform"] == ""
    assert report.fields["links"] == ["https://example.net/profile/abc"]
    assert report.fields["attachments"] == ["screenshot.png", "video.mp4"]
    assert [(f.name, f.type, f.content) for f in report.files] == [
        (name, kind, content) for content, name, kind in FILES[:2]
    ]

    # The fields are sealed to the source too (so the follow-up page can read them); the files
    # to the analysts only.
    keys = codenames.derive(words, site.services.instance_salt)
    fields_blob, *file_blobs = (item.blob for item in _items(site, report.id))
    assert b"sextortion" in _open_as(site, fields_blob, keys.secret_key)
    for blob in file_blobs:
        with pytest.raises(DecryptionError):
            _open_as(site, blob, keys.secret_key)
    assert_consistent(site)

    # Once typed back, the follow-up page shows the category, the danger mark and the count of
    # files: read in memory from the fields sealed to the source.
    assert confirm_codename(client, words).status_code == 303
    text = page_text(client.get("/followup"))
    assert f"{CATEGORY_LABELS['sextortion']} — {shown_day(report.day)}" in text
    assert "Marked: someone is in immediate danger" in text
    assert "2 files attached" in text
    assert "They ask for money" not in text and "Leïla" not in text


def _items(site: Site, report_id: str) -> tuple[Item, ...]:
    report = site.store.index.report(source_id_of(site, report_id), report_id)
    assert report is not None
    return report.items


def _open_as(site: Site, blob: str, secret_key: bytes) -> bytes:
    return open_envelope(site.store.read_blob(blob), [secret_key])


# --- the codename ---------------------------------------------------------------------------


def test_codename_must_be_typed_back_before_it_is_forgotten(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(client, description="Phishing SMS pretending to be the bank.")
    listed = words.split()

    wrong = listed.copy()
    wrong[2] = next(w for w in site.services.wordlist if w != listed[2])
    response = confirm_codename(client, " ".join(wrong))
    assert response.status_code == 400
    assert shown_codename(response) == words, "the codename must still be shown"
    assert "Check word 3 " in page_text(response)
    assert form_state(response).value("codename") == " ".join(wrong)

    missing = confirm_codename(client, " ".join(listed[:5]))
    assert missing.status_code == 400
    assert "Check word 6, 7 " in page_text(missing)

    # Typed back as people do: capitals, doubled spaces, a line break, stray spaces around.
    odd = "  " + "  ".join(listed[:4]).upper() + "\n" + " ".join(listed[4:]).title() + " "
    response = confirm_codename(client, odd)
    assert response.status_code == 303
    assert response.headers["Location"] == "/followup?saved=1"
    home = client.get(response.headers["Location"])
    assert home.status_code == 200
    assert "Your codename is confirmed" in page_text(home)
    assert words not in home.get_data(as_text=True)

    # Shown once: the codename page now sends the source on, without the words.
    again = client.get("/report/codename")
    assert again.status_code == 303
    assert again.headers["Location"] == "/followup"


def test_codename_page_without_a_session_shows_nothing(site: Site) -> None:
    client = site.client()
    response = client.get("/report/codename", follow_redirects=True)
    assert response.request.path == "/login"
    assert 'class="codename"' not in response.get_data(as_text=True)


def test_secret_key_is_split_between_cookie_and_store(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(client)
    keys = codenames.derive(words, site.services.instance_salt)
    cookie_value = session_cookie(client)
    assert cookie_value is not None
    cookie = base64.urlsafe_b64decode(cookie_value)

    [(sealed_pending,)] = site.rows("SELECT sealed_secret FROM sessions")
    assert keys.secret_key not in sealed_pending
    assert words.encode() not in sealed_pending
    assert keys.secret_key not in cookie
    assert keys.secret_key not in cookie_value.encode()
    assert words.encode() not in cookie

    assert confirm_codename(client, words).status_code == 303
    [(sealed,)] = site.rows("SELECT sealed_secret FROM sessions")
    assert keys.secret_key not in sealed
    assert session_cookie(client) == cookie_value

    # Together, the two halves give the secret key back, and nothing more: the codename was
    # forgotten once typed back.
    token, wrap_key = cookie[:32], cookie[32:]
    assert wrap.unwrap(wrap_key, sealed) == keys.secret_key
    assert wrap.unwrap(wrap_key, sealed_pending) == keys.secret_key + words.encode()
    # The store keys sessions by a hash of the token, never by the token itself.
    [(token_hash,)] = site.rows("SELECT token_hash FROM sessions")
    assert token_hash != token and token not in sealed

    # And the source row holds the public key and a verifier, never the secret or the login
    # secret.
    [(verifier, public_key)] = site.rows("SELECT verifier, public_key FROM sources")
    assert public_key == keys.public_key
    assert verifier != keys.login_secret
    assert keys.secret_key not in verifier + public_key
    assert keys.login_secret not in verifier + public_key


# --- coming back ------------------------------------------------------------------------------


def test_follow_up_login_reply_message_logout_delete(site: Site) -> None:
    client = site.client()
    description = "Marker-description-7f3a: fake shop taking payments."
    words = submit_for_codename(
        client, category="fraud", description=description, links="https://shop.example"
    )
    assert confirm_codename(client, words).status_code == 303
    # Someone else's report, which must survive this source's deletion.
    other = site.client()
    assert post_report(other, fresh_token(other), keep_codename="no").status_code == 303

    # Log out, then back in with the codename typed oddly.
    assert (
        client.post("/logout", data={"form_token": fresh_token(client, "/followup")}).status_code
        == 303
    )
    assert session_cookie(client) is None
    assert client.get("/followup").headers["Location"] == "/login"
    # Capitals, tabs, runs of spaces, a no-break space, a full-width word (phone keyboards).
    listed = words.split()
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in listed[0].upper())
    odd = f"\t{full_width}   {listed[1].upper()}\u00a0" + "  ".join(listed[2:]).title() + "  \n"
    response = login(client, odd)
    assert response.status_code == 303, page_text(response)
    assert response.headers["Location"] == "/followup"

    home = client.get("/followup")
    assert home.status_code == 200
    [report_id] = report_id_on(home.get_data(as_text=True))
    [(day,)] = site.rows("SELECT day FROM reports WHERE id = ?", [report_id])
    assert DAY.match(day)
    # Category and day, decrypted in memory for this page; never the report's content.
    assert f"{CATEGORY_LABELS['fraud']} — {shown_day(day)}" in page_text(home)
    assert "Marker-description-7f3a" not in home.get_data(as_text=True)
    assert "shop.example" not in home.get_data(as_text=True)
    assert "No answer yet" in page_text(home)

    # An analyst's reply, sealed to the source, is read with the codename-derived key.
    add_reply(site, report_id, "Thank you. Can you send the payment receipt? <b>bold</b>")
    home = client.get("/followup")
    text = page_text(home)
    assert "Answer from the analysts" in text
    assert "Thank you. Can you send the payment receipt? <b>bold</b>" in text
    assert "<b>bold</b>" not in home.get_data(as_text=True), "replies are escaped"

    # The source adds a message with a file to the report.
    receipt = (b"receipt bytes \x00\x01" * 1000, "receipt.jpg", "image/jpeg")
    response = client.post(
        f"/followup/{report_id}/message",
        data=multipart(
            {"form_token": fresh_token(client, "/followup"), "message": "Here it is."}, [receipt]
        ),
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/followup?sent=1"
    home = client.get(response.headers["Location"])
    text = page_text(home)
    assert "Your message was sent." in text
    assert "Your message" in text and "Here it is." in text
    assert "Files: receipt.jpg" in text

    [mine] = [r for r in analyst_reports(site) if r.id == report_id]
    [theirs] = [r for r in analyst_reports(site) if r.id != report_id]
    assert mine.kinds == ["fields", "reply", "message", "file"]
    assert mine.fields["description"] == description
    assert mine.replies[0]["text"].startswith("Thank you.")
    assert mine.messages == [
        {"v": 1, "kind": "message", "text": "Here it is.", "attachments": ["receipt.jpg"]}
    ]
    assert mine.files == [OpenedFile("receipt.jpg", "image/jpeg", receipt[0])]
    assert_consistent(site)

    # A log-out from another site (no valid form token) does nothing.
    response = client.post("/logout", data={"form_token": "f" * 43})
    assert response.status_code == 303
    assert client.get("/followup").status_code == 200

    # Log out: the old cookie, replayed, no longer opens anything.
    old_cookie = session_cookie(client)
    assert old_cookie is not None
    response = client.post("/logout", data={"form_token": fresh_token(client, "/followup")})
    assert response.status_code == 303
    assert session_cookie(client) is None
    assert site.rows("SELECT count(*) FROM sessions") == [(0,)]
    client.set_cookie(SESSION_COOKIE, old_cookie)
    response = client.get("/followup")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    client.delete_cookie(SESSION_COOKIE)

    # Log in again and delete everything.
    assert login(client, words).status_code == 303
    mine_blobs = {item.blob for item in _items(site, report_id)}
    assert len(mine_blobs) == 4
    assert client.get("/delete").status_code == 200
    before = counts(site)
    response = client.post("/delete", data={"form_token": fresh_token(client, "/followup")})
    assert response.status_code == 200
    assert "Everything was deleted" in page_text(response)
    assert session_cookie(client) is None
    after = counts(site)
    assert after == {
        **before,
        "sources": before["sources"] - 1,
        "reports": before["reports"] - 1,
        "items": before["items"] - 4,
        "sessions": 0,
        "blobs": before["blobs"] - 4,
    }
    assert not mine_blobs & site.store.blobs.names()
    for blob in mine_blobs:
        assert not (site.blobs_dir / blob).exists()
    assert site.rows("SELECT count(*) FROM reports WHERE id = ?", [report_id]) == [(0,)]
    [survivor] = analyst_reports(site)
    assert survivor.id == theirs.id and survivor.fields == theirs.fields
    assert_consistent(site)

    # The codename is now worth nothing.
    response = login(client, words)
    assert response.status_code == 400
    assert "No report matches this codename" in page_text(response)
    assert session_cookie(client) is None


def test_delete_asks_before_deleting(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(client)
    assert confirm_codename(client, words).status_code == 303
    before = counts(site)
    # A GET, or a POST without the form token, only asks.
    assert client.get("/delete").status_code == 200
    response = client.post("/delete", data={"form_token": "x" * 43})
    assert response.status_code == 200
    assert "Delete everything you sent?" in page_text(response)
    assert counts(site) == before


def test_session_ends_after_idle_time(tmp_path: Path) -> None:
    with open_site(tmp_path, session_idle_minutes=1) as site:
        client = site.client()
        words = submit_for_codename(client)
        assert confirm_codename(client, words).status_code == 303
        assert client.get("/followup").status_code == 200

        # Each request restarts the idle timer: expiry is one minute from now, rounded up to
        # the grain expiries are kept to.
        [(expires,)] = site.rows("SELECT expires FROM sessions")
        assert expires % EXPIRY_GRAIN_SECONDS == 0
        assert time.time() + 60 - 5 <= expires <= time.time() + 60 + EXPIRY_GRAIN_SECONDS

        # Rather than sleep for a minute, make the session look idle: the index compares the
        # stored expiry with time.time(), so moving the expiry into the past is exactly what a
        # minute of inactivity would have done (and time.time() cannot be patched reliably in
        # the SQL the index runs).
        with site.store.index.transaction() as db:
            db.execute("UPDATE sessions SET expires = ?", (int(time.time()) - 1,))
        response = client.get("/followup")
        assert response.status_code == 303
        assert response.headers["Location"] == "/login"
        assert site.rows("SELECT count(*) FROM sessions") == [(1,)], "the janitor removes it"
        site.store.housekeeping()
        assert site.rows("SELECT count(*) FROM sessions") == [(0,)], "expired sessions go"

        # The reports themselves are untouched: logging in again shows them.
        assert login(client, words).status_code == 303
        assert len(report_id_on(client.get("/followup").get_data(as_text=True))) == 1


def test_a_reply_not_sealed_to_the_source_is_not_shown(site: Site) -> None:
    """A reply the source's key cannot open is skipped, not an error page."""
    client = site.client()
    words = submit_for_codename(client)
    assert confirm_codename(client, words).status_code == 303
    [report_id] = report_id_on(client.get("/followup").get_data(as_text=True))
    ref = seal_document(site.services, list(site.services.analysts), "reply", {"text": "hidden"})
    assert site.store.index.add_items(source_id_of(site, report_id), report_id, [("reply", ref)])
    home = client.get("/followup")
    assert home.status_code == 200
    assert "hidden" not in page_text(home)
    assert analyst_open(site, ref.name).endswith(b'"text":"hidden"}')


def _set_cookie(response: TestResponse, name: str) -> str:
    headers = response.headers.getlist("Set-Cookie")
    [found] = [h for h in headers if h.startswith(name + "=")]
    return str(found)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_cookies_are_http_only_strict_and_secure_over_https(site: Site, scheme: str) -> None:
    client = site.client()
    base = f"{scheme}://localhost"
    page = client.get("/report", base_url=base)
    form_cookie = _set_cookie(page, "blagh_form")
    response = client.post(
        "/report",
        base_url=base,
        data=multipart({**REPORT_FIELDS, "form_token": page_token(page), "keep_codename": "yes"}),
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    session = _set_cookie(response, SESSION_COOKIE)
    for cookie in (form_cookie, session):
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= attributes, cookie
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        assert ("secure" in attributes) == (scheme == "https"), cookie
        # Browser-session cookies: nothing kept on the reporter's disk after the browser closes.
        assert not {"expires", "max-age"} & attributes, cookie
