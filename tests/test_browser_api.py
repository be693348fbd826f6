"""The JavaScript path's server side, through Flask's test client: no browser needed.

Envelopes here are made in Python exactly as the page makes them (tests/test_browser.py checks
the page's and Python's are interchangeable), then sent the way the page sends them: chunked
uploads, sealed forms in JSON exchanges.  Every shape the server must refuse is tried.
"""

from __future__ import annotations

import base64
import html as html_module
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from source_helpers import (
    Site,
    analyst_reports,
    fresh_token,
    login,
    open_site,
    post_report,
    submit_for_codename,
)

from blagh.payloads import attachment_header, encode_document
from crypto import codename
from crypto.envelope import open_envelope, seal, sealed_size
from source_interface import browser
from source_interface.presealed import (
    CHUNK_BYTES,
    UploadFolder,
    envelope_shape_ok,
    possible_envelope_size,
)
from source_interface.sessions import CSRF_COOKIE, SESSION_COOKIE
from source_interface.views.uploads import FORM_HEADER


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path, max_files_per_report=3, max_upload_mb=4) as site:
        yield site


@pytest.fixture
def client(site: Site) -> FlaskClient:
    client = site.client()
    fresh_token(client)
    return client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def token(client: FlaskClient) -> str:
    cookie = client.get_cookie(CSRF_COOKIE)
    assert cookie is not None
    return cookie.value


def analysts(site: Site) -> list[bytes]:
    return list(site.services.analysts)


def attachment(site: Site, name: str, data: bytes) -> bytes:
    return seal(attachment_header(name, "image/png") + data, analysts(site))


def upload(client: FlaskClient, envelope: bytes, pieces: int | None = None) -> str:
    """Upload ``envelope`` like the page does (all of it unless ``pieces`` says how many)."""
    created = client.post("/upload", data={"form_token": token(client), "size": len(envelope)})
    assert created.status_code == 201, created.get_json()
    upload_id: str = created.get_json()["id"]
    chunk = created.get_json()["chunk_size"]
    assert chunk == CHUNK_BYTES
    count = -(-len(envelope) // chunk)
    for index in range(count if pieces is None else pieces):
        answer = put(client, upload_id, index, envelope[index * chunk : (index + 1) * chunk])
        assert answer.status_code == 200, answer.get_json()
    return upload_id


def put(client: FlaskClient, upload_id: str, index: int, data: bytes, form: str | None = None):
    headers = {FORM_HEADER: token(client) if form is None else form}
    return client.put(
        f"/upload/{upload_id}/{index}",
        data=data,
        headers=headers,
        content_type="application/octet-stream",
    )


def report_fields(**extra: object) -> bytes:
    body = {
        "category": "fraud",
        "danger": False,
        "description": "Sealed in the browser",
        "links": [],
        "platform": "",
        "seen_on": None,
        "identity": None,
        "attachments": [],
        **extra,
    }
    return encode_document("report", body)


def send_report(client: FlaskClient, fields: bytes, uploads: Sequence[str] = (), **more: str):
    data = {"form_token": token(client), "sealed_fields": b64(fields), "upload": list(uploads)}
    data.update(more)
    return client.post("/report", data=data, content_type="multipart/form-data")


# --- shapes ---------------------------------------------------------------------------------


def test_possible_sizes_are_exactly_the_sizes_envelopes_have() -> None:
    lengths = [0, 1, 510, 511, 512, 65535, 65536, 65537, 300_000, 4 * 1024 * 1024 + 7]
    for recipients in (1, 2, 5):
        for length in lengths:
            size = sealed_size(length, recipients)
            assert possible_envelope_size(size, recipients)
            assert not possible_envelope_size(size + 1, recipients)
            assert not possible_envelope_size(size - 1, recipients)
            assert not possible_envelope_size(size, recipients + 1)
    sealed = seal(b"x" * 1000, [os.urandom(32), os.urandom(32)])
    assert envelope_shape_ok(sealed, 2)
    assert not envelope_shape_ok(sealed, 1)
    assert not envelope_shape_ok(b"NOTENVEL" + sealed[8:], 2)
    assert not envelope_shape_ok(sealed[:8] + b"\x02" + sealed[9:], 2)
    assert not envelope_shape_ok(sealed[:-1], 2)


# --- chunked uploads ------------------------------------------------------------------------


def test_upload_in_pieces_and_resume(client: FlaskClient, site: Site) -> None:
    envelope = attachment(site, "clip.mp4", os.urandom(2 * CHUNK_BYTES + 1000))
    upload_id = upload(client, envelope, pieces=1)
    state = client.get(f"/upload/{upload_id}").get_json()
    assert state == {
        "size": len(envelope),
        "received": CHUNK_BYTES,
        "chunk_size": CHUNK_BYTES,
        "next": 1,
        "complete": False,
    }
    # Out of order, wrong length, a repeat of what the server has: refused or ignored.
    assert put(client, upload_id, 2, envelope[2 * CHUNK_BYTES :]).status_code == 409
    assert put(client, upload_id, 1, envelope[CHUNK_BYTES : CHUNK_BYTES + 10]).status_code == 400
    assert put(client, upload_id, 0, envelope[:CHUNK_BYTES]).status_code == 200  # a retry
    assert client.get(f"/upload/{upload_id}").get_json()["received"] == CHUNK_BYTES
    assert put(client, upload_id, 7, b"x").status_code == 400
    for index in (1, 2):
        piece = envelope[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
        assert put(client, upload_id, index, piece).status_code == 200
    assert client.get(f"/upload/{upload_id}").get_json()["complete"] is True
    # Without the anti-forgery header, nothing is accepted.
    assert put(client, upload_id, 0, envelope[:CHUNK_BYTES], form="x" * 43).status_code == 403


def test_upload_refuses_what_cannot_be_an_attachment(client: FlaskClient, site: Site) -> None:
    def start(size: int, form_token: str | None = None) -> int:
        data = {"form_token": token(client) if form_token is None else form_token, "size": size}
        return client.post("/upload", data=data).status_code

    good = len(attachment(site, "a", b"x"))
    assert start(good, form_token="") == 403
    assert start(good + 1) == 400
    assert start(sealed_size(5 * 1024 * 1024, 1)) == 413  # over max_upload_mb = 4
    assert client.post("/upload", data={"form_token": token(client)}).status_code == 400
    # The first piece must be an envelope header for the analysts (one recipient here).
    created = client.post("/upload", data={"form_token": token(client), "size": good})
    wrong = seal(b"x", [os.urandom(32), os.urandom(32)])[:good]
    assert put(client, created.get_json()["id"], 0, wrong).status_code == 400
    assert client.get("/upload/" + "0" * 32).status_code == 404
    assert client.get("/upload/not-an-id").status_code == 404


def test_idle_uploads_expire(client: FlaskClient, site: Site) -> None:
    envelope = attachment(site, "a.png", b"x" * 100)
    upload_id = upload(client, envelope, pieces=0)
    folder: UploadFolder = site.app.extensions["blagh_uploads"]
    assert folder.expire() == 0
    assert folder.expire(now=time.time() + 3601) == 1
    assert client.get(f"/upload/{upload_id}").status_code == 404
    assert list(folder.root.iterdir()) == []


# --- sealed reports -------------------------------------------------------------------------


def test_sealed_report_with_files_is_stored_as_the_server_would(
    client: FlaskClient, site: Site
) -> None:
    data = os.urandom(CHUNK_BYTES + 5)
    upload_id = upload(client, attachment(site, "evidence.png", data))
    fields = seal(report_fields(attachments=["evidence.png"]), analysts(site))
    answer = send_report(client, fields, [upload_id])
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["next"] == "/report/received"
    assert answer.get_json()["form_token"] == token(client)
    (report,) = analyst_reports(site)
    assert report.fields["description"] == "Sealed in the browser"
    assert [(f.name, f.type, f.content) for f in report.files] == [
        ("evidence.png", "image/png", data)
    ]
    # The upload became the report's file: it cannot be attached a second time.
    assert client.get(f"/upload/{upload_id}").status_code == 404
    assert send_report(client, fields, [upload_id]).status_code == 400
    folder: UploadFolder = site.app.extensions["blagh_uploads"]
    assert list(folder.root.iterdir()) == []


def test_a_codename_with_a_retired_word_still_logs_in(client: FlaskClient, site: Site) -> None:
    """Deny-listed words are never drawn again but stay accepted (docs/keys.md): a codename
    given out before a word was retired must still log in, on both paths."""
    assert "extortion" in site.services.retired_words
    words = " ".join(["extortion", *codename.generate(site.services.wordlist).split()[1:]])
    keys = codename.derive(words, site.services.instance_salt)
    fields = seal(report_fields(), [*analysts(site), keys.public_key])
    more = {"source_key": b64(keys.public_key), "login_secret": b64(keys.login_secret)}
    assert send_report(client, fields, **more).status_code == 200
    answer = login(site.client(), words)
    assert answer.status_code == 303 and answer.headers["Location"] == "/followup"


def test_sealed_report_keeping_a_codename(client: FlaskClient, site: Site) -> None:
    words = codename.generate(site.services.wordlist)
    keys = codename.derive(words, site.services.instance_salt)
    fields = seal(report_fields(), [*analysts(site), keys.public_key])
    more = {"source_key": b64(keys.public_key), "login_secret": b64(keys.login_secret)}
    answer = send_report(client, fields, **more)
    assert answer.status_code == 200
    assert answer.get_json()["next"] == "/followup?saved=1"
    assert client.get_cookie(SESSION_COOKIE) is not None
    # The session holds no key: the page shows placeholders for the browser to open.
    home = client.get("/followup").get_data(as_text=True)
    assert 'data-key-held="browser"' in home and "data-sealed=" in home
    item = re.search(r'data-sealed="(/followup/item/[0-9a-f]+)"', home)
    assert item is not None
    envelope = client.get(item.group(1)).data
    assert open_envelope(envelope, [keys.secret_key]).startswith(b'{"v":1,"kind":"report"')
    # The same login secret cannot make a second source.
    assert send_report(client, fields, **more).status_code == 400
    # Logging in with the login secret alone (the JS path), and with the codename (no JS).
    for other in (site.client(), site.client()):
        form = fresh_token(other, "/login")
        answer = other.post(
            "/login", data={"form_token": form, "login_secret": more["login_secret"]}
        )
        assert answer.status_code == 200 and answer.get_json()["next"] == "/followup"
    server_side = site.client()
    answer = server_side.post(
        "/login", data={"form_token": fresh_token(server_side, "/login"), "codename": words}
    )
    assert answer.status_code == 303
    assert "Fraud" in server_side.get("/followup").get_data(as_text=True)


@pytest.mark.parametrize(
    "change",
    [
        "wrong recipient count",
        "truncated",
        "not base64",
        "too large",
        "key without secret",
        "unfinished upload",
        "unknown upload",
        "too many files",
        "expired form",
    ],
)
def test_sealed_report_refusals(client: FlaskClient, site: Site, change: str) -> None:
    fields = seal(report_fields(), analysts(site))
    data: dict[str, str | list[str]] = {"form_token": token(client), "sealed_fields": b64(fields)}
    if change == "wrong recipient count":
        data["sealed_fields"] = b64(seal(report_fields(), [*analysts(site), os.urandom(32)]))
    elif change == "truncated":
        data["sealed_fields"] = b64(fields[:-1])
    elif change == "not base64":
        data["sealed_fields"] = "%%%"
    elif change == "too large":
        data["sealed_fields"] = b64(seal(os.urandom(800_000), analysts(site)))
    elif change == "key without secret":
        data["source_key"] = b64(os.urandom(32))
    elif change == "unfinished upload":
        big = attachment(site, "a", os.urandom(CHUNK_BYTES + 10))
        data["upload"] = upload(client, big, pieces=1)
    elif change == "unknown upload":
        data["upload"] = "0" * 32
    elif change == "too many files":
        small = attachment(site, "a", b"x")
        data["upload"] = [upload(client, small) for _ in range(4)]
    elif change == "expired form":
        data["form_token"] = "x" * 43
    answer = client.post("/report", data=data, content_type="multipart/form-data")
    if change == "too large":  # over the form's limit per field: Werkzeug's 413, the page's
        assert answer.status_code == 413  # generic "sending failed" (an honest page never gets it)
    else:
        assert answer.status_code == 400
        assert answer.get_json()["error"]
    assert analyst_reports(site) == []
    assert site.rows("SELECT count(*) FROM sources") == [(0,)]


@pytest.mark.parametrize(
    "key",
    [
        bytes(32),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        (2**255 - 20).to_bytes(32, "little"),  # p - 1
        b"\xff" * 32,  # not canonical
    ],
    ids=["zero", "order 8", "p - 1", "not canonical"],
)
def test_a_source_key_nothing_can_be_sealed_to_is_refused(
    client: FlaskClient, site: Site, key: bytes
) -> None:
    """The browser derives the source's key from the codename: a low-order or non-canonical
    point never comes from an honest page.  Stored, it would make every later seal to the
    source fail; it is refused with the answer any unreadable form gets."""
    keys = codename.derive(codename.generate(site.services.wordlist), site.services.instance_salt)
    fields = seal(report_fields(), [*analysts(site), keys.public_key])
    answer = send_report(client, fields, source_key=b64(key), login_secret=b64(keys.login_secret))
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith("Your browser sent something")
    assert analyst_reports(site) == []
    assert site.rows("SELECT count(*) FROM sources") == [(0,)]


def test_the_no_javascript_path_is_unchanged(client: FlaskClient, site: Site) -> None:
    response = post_report(client, fresh_token(client), keep_codename="no")
    assert response.status_code == 303
    words = submit_for_codename(client)
    assert len(words.split()) == codename.WORD_COUNT


# --- sealed messages and items --------------------------------------------------------------


def test_sealed_message_and_items_of_others(client: FlaskClient, site: Site) -> None:
    words = codename.generate(site.services.wordlist)
    keys = codename.derive(words, site.services.instance_salt)
    fields = seal(report_fields(), [*analysts(site), keys.public_key])
    more = {"source_key": b64(keys.public_key), "login_secret": b64(keys.login_secret)}
    assert send_report(client, fields, **more).status_code == 200
    (report,) = analyst_reports(site)
    message = seal(encode_document("message", {"text": "More", "attachments": []}), analysts(site))
    url = f"/followup/{report.id}/message"
    data = {"form_token": token(client), "sealed_message": b64(message)}
    assert client.post(url, data=data).status_code == 400  # not sealed to the source too
    data["sealed_message"] = b64(
        seal(
            encode_document("message", {"text": "More", "attachments": []}),
            [*analysts(site), keys.public_key],
        )
    )
    answer = client.post(url, data=data)
    assert answer.status_code == 200 and answer.get_json()["next"] == "/followup?sent=1"
    assert analyst_reports(site)[0].messages[0]["text"] == "More"
    # Another source's client sees none of these items.
    stranger = site.client()
    fresh_token(stranger)
    other_keys = codename.derive(
        codename.generate(site.services.wordlist), site.services.instance_salt
    )
    other_fields = seal(report_fields(), [*analysts(site), other_keys.public_key])
    other = {"source_key": b64(other_keys.public_key), "login_secret": b64(other_keys.login_secret)}
    assert send_report(stranger, other_fields, **other).status_code == 200
    home = client.get("/followup").get_data(as_text=True)
    for item in re.findall(r'data-sealed="/followup/item/([0-9a-f]+)"', home):
        assert stranger.get(f"/followup/item/{item}").status_code == 404
        assert site.client().get(f"/followup/item/{item}").status_code == 403


# --- the script tag, its hashes and the policy ----------------------------------------------


def test_script_tag_hashes_match_the_files_served(client: FlaskClient, site: Site) -> None:
    page = client.get("/report")
    assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    tag = re.search(r"<script ([^>]*)></script>", html)
    assert tag is not None
    attributes = dict(re.findall(r'([a-z-]+)="([^"]*)"', tag.group(1)))
    entry = client.get(attributes["src"]).data
    assert attributes["integrity"] == browser.integrity(entry)
    modules = json.loads(html_module.unescape(attributes["data-modules"]))
    assert len(modules) == 5
    for url, integrity in modules.items():
        served = client.get(url)
        assert served.status_code == 200 and served.mimetype == "text/javascript"
        assert browser.integrity(served.data) == integrity
    words = client.get(attributes["data-wordlist"])
    assert browser.integrity(words.data) == attributes["data-wordlist-integrity"]
    drawn, retired = words.get_data(as_text=True).split("\n\n")
    assert drawn.split() == list(site.services.wordlist)
    assert retired.split() == list(site.services.retired_words)
    assert len(drawn.split()) + len(retired.split()) == 7776
    landing = client.get("/")
    assert "script-src" not in landing.headers["Content-Security-Policy"]
    assert "<script" not in landing.get_data(as_text=True)


def test_without_the_library_pages_have_no_script(tmp_path: Path) -> None:
    assets = browser.BrowserAssets.load(("word",), static=tmp_path)
    assert not assets.available
    with open_site(tmp_path) as site:
        site.app.extensions["blagh_browser"] = assets
        # The context processor captured the assets at start-up: rebuild the tag with these.
        with site.app.test_request_context("/report"):
            assert str(browser.script_tag(assets, "report")) == ""


def test_a_sealed_report_removes_the_kept_files_it_is_told_to(
    client: FlaskClient, site: Site
) -> None:
    """The JavaScript path sends every kept name (the server checks it still has them all) and
    the positions of the files whose "remove" box is ticked: those leave the draft and the disk."""
    files = [(b"first " * 500, "me.jpg", "image/jpeg"), (b"second " * 500, "ok.txt", "text/plain")]
    page = post_report(client, fresh_token(client), files, category="")
    assert page.status_code == 400
    draft = re.search(r'name="draft" value="([0-9a-f]+)"', page.get_data(as_text=True))
    assert draft is not None
    kept_blobs = set(site.store.blobs.names())
    assert len(kept_blobs) == 2
    fields = seal(report_fields(attachments=["ok.txt"]), analysts(site))
    answer = send_report(
        client,
        fields,
        draft=draft.group(1),
        kept_file=["me.jpg", "ok.txt"],
        remove_file="0",
    )
    assert answer.status_code == 200, answer.get_json()
    (report,) = analyst_reports(site)
    assert [(f.name, f.content) for f in report.files] == [("ok.txt", files[1][0])]
    assert len(kept_blobs - set(site.store.blobs.names())) == 1  # me.jpg is gone from the disk
    assert site.rows("SELECT count(*) FROM drafts") == [(0,)]
