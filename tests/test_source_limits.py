"""Nothing one client can exhaust for everyone: partial uploads, drafts, and empty file parts.

Through Flask's test client, on a real data folder and SQLCipher index.  Idleness is set on the
files' modification times (what the server reads), never waited for.  The free-space floor,
which needs a small file system of its own, is in tests/test_source_disk.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from source_helpers import (
    Site,
    analyst_reports,
    assert_consistent,
    counts,
    form_state,
    fresh_token,
    open_site,
    post_report,
)

from blagh.blobs import BlobFolder, PendingBlob
from blagh.payloads import attachment_header, encode_document
from crypto.envelope import seal
from source_interface.presealed import CHUNK_BYTES, EVICTABLE_AFTER_SECONDS, UploadFolder
from source_interface.sessions import CSRF_COOKIE
from source_interface.views.uploads import FORM_HEADER

MIB = 1024 * 1024
BAD = {"email": "not an address"}
"""A field error that sends the form back, its files kept as a draft."""


def token(client: FlaskClient) -> str:
    cookie = client.get_cookie(CSRF_COOKIE)
    assert cookie is not None
    return cookie.value


def envelope(site: Site, size: int = 100) -> bytes:
    analysts = list(site.services.analysts)
    return seal(attachment_header("a.png", "image/png") + b"x" * size, analysts)


def start(client: FlaskClient, size: int):  # type: ignore[no-untyped-def]
    return client.post("/upload", data={"form_token": token(client), "size": size})


def started(client: FlaskClient, size: int) -> str:
    answer = start(client, size)
    assert answer.status_code == 201, answer.get_json()
    upload_id: str = answer.get_json()["id"]
    return upload_id


def put(client: FlaskClient, upload_id: str, index: int, data: bytes):  # type: ignore[no-untyped-def]
    return client.put(
        f"/upload/{upload_id}/{index}",
        data=data,
        headers={FORM_HEADER: token(client)},
        content_type="application/octet-stream",
    )


def folder_of(site: Site) -> UploadFolder:
    folder: UploadFolder = site.app.extensions["blagh_uploads"]
    return folder


def idle_for(site: Site, upload_id: str, seconds: float) -> None:
    """Make an upload look as if its last piece arrived ``seconds`` ago."""
    name = hashlib.sha256(upload_id.encode()).hexdigest()
    when = time.time() - seconds
    for suffix in (".meta", ".part"):
        os.utime(folder_of(site).root / f"{name}{suffix}", (when, when))


def alive(client: FlaskClient, upload_id: str) -> bool:
    return client.get(f"/upload/{upload_id}").status_code == 200


def browser(site: Site) -> FlaskClient:
    """Another browser: its own cookies, so its own form token."""
    client = site.client()
    fresh_token(client)
    return client


# --- partial uploads ------------------------------------------------------------------------


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[Site]:
    limits = {"max_partial_uploads": 4, "max_partial_uploads_per_form": 2}
    with open_site(tmp_path, limits) as site:
        yield site


def test_one_form_cannot_take_every_upload_slot(crowded: Site) -> None:
    size = len(envelope(crowded))
    flood = browser(crowded)
    first = [started(flood, size) for _ in range(2)]
    refused = start(flood, size)
    assert refused.status_code == 503
    assert refused.get_json() == {"error": "server full"}
    # Another reporter is not affected, and the flood's uploads are still there.
    other = browser(crowded)
    started(other, size)
    assert all(alive(flood, upload_id) for upload_id in first)
    # The form's own upload idle for minutes (a page reloaded mid-upload) makes room for it.
    idle_for(crowded, first[0], EVICTABLE_AFTER_SECONDS + 1)
    started(flood, size)
    assert not alive(flood, first[0]) and alive(flood, first[1])


def test_a_full_server_gives_up_the_oldest_idle_upload_first(crowded: Site) -> None:
    size = len(envelope(crowded))
    clients = [browser(crowded) for _ in range(4)]
    ids = [started(client, size) for client in clients]
    newcomer = browser(crowded)
    # All four still sending: nothing can be given up, and the page will send without JS.
    answer = start(newcomer, size)
    assert answer.status_code == 503 and answer.get_json()["error"] == "server full"
    idle_for(crowded, ids[0], EVICTABLE_AFTER_SECONDS + 60)
    idle_for(crowded, ids[1], EVICTABLE_AFTER_SECONDS + 600)  # idle longest
    idle_for(crowded, ids[2], EVICTABLE_AFTER_SECONDS - 60)  # not idle long enough
    started(newcomer, size)
    assert [alive(c, i) for c, i in zip(clients, ids, strict=True)] == [True, False, True, True]
    started(browser(crowded), size)
    assert [alive(c, i) for c, i in zip(clients, ids, strict=True)] == [False, False, True, True]
    assert start(browser(crowded), size).status_code == 503


def test_a_form_still_sending_keeps_its_finished_uploads(crowded: Site) -> None:
    """A report's first files wait, finished, while the next ones go up: never given up."""
    sealed = envelope(crowded)
    reporter = browser(crowded)
    finished = started(reporter, len(sealed))
    assert put(reporter, finished, 0, sealed).status_code == 200
    idle_for(crowded, finished, EVICTABLE_AFTER_SECONDS + 600)
    sending = started(reporter, len(sealed))
    for _ in range(2):
        started(browser(crowded), len(sealed))
    assert start(browser(crowded), len(sealed)).status_code == 503
    assert alive(reporter, finished) and alive(reporter, sending)


def test_partial_uploads_are_bounded_in_announced_bytes(tmp_path: Path) -> None:
    with open_site(tmp_path, {"max_partial_upload_total_mb": 1}) as site:
        big = len(envelope(site, 600_000))
        first_client = browser(site)
        first = started(first_client, big)
        other = browser(site)
        answer = start(other, big)
        assert answer.status_code == 503 and answer.get_json()["error"] == "server full"
        started(other, len(envelope(site)))  # a small one still fits
        idle_for(site, first, EVICTABLE_AFTER_SECONDS + 1)
        started(other, big)
        assert not alive(first_client, first)


def test_meta_keeps_a_hash_of_the_form_token_never_the_token(crowded: Site) -> None:
    client = browser(crowded)
    started(client, len(envelope(crowded)))
    (meta,) = folder_of(crowded).root.glob("*.meta")
    text = meta.read_text("ascii")
    assert token(client) not in text
    assert hashlib.sha256(token(client).encode()).hexdigest() in text


def test_a_flood_of_empty_uploads_does_not_lock_reporters_out_for_long(crowded: Site) -> None:
    """The issue's attack: uploads started and never fed, from many form tokens."""
    size = len(envelope(crowded))
    flood = [started(browser(crowded), size) for _ in range(4)]
    reporter = browser(crowded)
    assert start(reporter, size).status_code == 503  # the page sends without JavaScript
    for upload_id in flood:
        idle_for(crowded, upload_id, EVICTABLE_AFTER_SECONDS + 1)  # minutes later, not an hour
    sealed = envelope(crowded)
    upload_id = started(reporter, len(sealed))
    assert put(reporter, upload_id, 0, sealed).status_code == 200


# --- empty file parts -----------------------------------------------------------------------


def test_an_empty_file_part_creates_no_pending_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[PendingBlob] = []
    real_init = PendingBlob.__init__

    def counting_init(self: PendingBlob, folder: BlobFolder) -> None:
        real_init(self, folder)
        made.append(self)

    monkeypatch.setattr(PendingBlob, "__init__", counting_init)
    with open_site(tmp_path) as site:
        client = site.client()
        # What a browser sends for a file input left empty: a part with an empty file name.
        empty = {"files": [(BytesIO(b""), "", "application/octet-stream")]}
        data = {"form_token": fresh_token(client), "category": "fraud", "description": "text"}
        answer = client.post("/report", data={**data, **empty}, content_type="multipart/form-data")
        assert answer.status_code == 303
        assert len(made) == 1  # the report's fields, nothing for the empty part
        [report] = analyst_reports(site)
        assert report.files == []


# --- drafts ---------------------------------------------------------------------------------


def draft_of(response) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    state = form_state(response)
    return state.value("draft"), state.values.get("kept_file", [])


def test_drafts_are_bounded_in_total_the_oldest_dropped_first(tmp_path: Path) -> None:
    with open_site(tmp_path, {"max_draft_total_mb": 1}) as site:
        one, two, three = (site.client() for _ in range(3))
        sent = {}
        for name, client in (("one", one), ("two", two), ("three", three)):
            content = os.urandom(400_000)
            file = (content, f"{name}.bin", "application/octet-stream")
            answer = post_report(client, fresh_token(client), [file], **BAD)
            assert answer.status_code == 400
            sent[name] = (client, *draft_of(answer), content)
        # The third draft took the total past 1 MiB: an older one went, its blob with it.  Which
        # of the two: the oldest as far as the store knows, which is to five minutes (expiries
        # are coarse; it keeps no finer order of arrival), so either here.  Never the newest.
        assert counts(site)["drafts"] == 2 and counts(site)["blobs"] == 2
        outcomes = {}
        for name in ("one", "two", "three"):
            client, draft, kept, _ = sent[name]
            assert kept == [f"{name}.bin"]
            outcomes[name] = post_report(client, fresh_token(client), draft=draft, kept_file=kept)
        [dropped] = [name for name, answer in outcomes.items() if answer.status_code == 400]
        assert dropped in ("one", "two")
        assert "Attach them again" in form_state(outcomes[dropped]).errors["files"]
        assert "kept_file" not in form_state(outcomes[dropped]).values
        # The others' drafts are whole: corrected, their reports carry their files.
        survivors = sorted({"one", "two", "three"} - {dropped})
        assert all(outcomes[name].status_code == 303 for name in survivors)
        files = sorted((f.name, f.content) for r in analyst_reports(site) for f in r.files)
        assert files == [(f"{name}.bin", sent[name][3]) for name in survivors]
        assert_consistent(site)


def test_one_draft_holds_at_most_one_reports_bytes(tmp_path: Path) -> None:
    with open_site(tmp_path, max_upload_mb=1) as site:
        client = site.client()
        first = (os.urandom(600_000), "first.bin", "application/octet-stream")
        answer = post_report(client, fresh_token(client), [first], **BAD)
        draft, kept = draft_of(answer)
        assert kept == ["first.bin"]
        second = (os.urandom(600_000), "second.bin", "application/octet-stream")
        answer = post_report(
            client, fresh_token(client), [second], draft=draft, kept_file=kept, **BAD
        )
        assert answer.status_code == 400
        assert draft_of(answer) == (draft, ["first.bin"])  # the second was not kept
        assert "Attach them again" in form_state(answer).errors["files"]
        assert counts(site)["drafts"] == 1 and counts(site)["blobs"] == 1
        assert_consistent(site)


def test_a_sealed_form_naming_a_lost_draft_is_told_so(tmp_path: Path) -> None:
    with open_site(tmp_path) as site:
        client = site.client()
        fresh_token(client)
        fields = encode_document(
            "report",
            {
                "category": "fraud",
                "danger": False,
                "description": "Sealed in the browser",
                "links": [],
                "platform": "",
                "seen_on": None,
                "identity": None,
                "attachments": ["gone.png"],
            },
        )
        sealed = base64.b64encode(seal(fields, list(site.services.analysts))).decode()
        data = {
            "form_token": token(client),
            "sealed_fields": sealed,
            "draft": "ab" * 32,
            "kept_file": ["gone.png"],
        }
        answer = client.post("/report", data=data, content_type="multipart/form-data")
        assert answer.status_code == 409
        assert answer.get_json()["draft_lost"] is True
        assert "Attach them again" in answer.get_json()["error"]
        assert analyst_reports(site) == []


def test_an_upload_given_up_before_the_report_is_sent_again(crowded: Site) -> None:
    """The page learns that the server no longer has its upload, and forgets it."""
    sealed = envelope(crowded)
    client = browser(crowded)
    upload_id = started(client, len(sealed))
    assert put(client, upload_id, 0, sealed).status_code == 200
    folder_of(crowded).delete(upload_id)
    fields = encode_document(
        "report",
        {
            "category": "fraud",
            "danger": False,
            "description": "x",
            "links": [],
            "platform": "",
            "seen_on": None,
            "identity": None,
            "attachments": ["a.png"],
        },
    )
    data = {
        "form_token": token(client),
        "sealed_fields": base64.b64encode(seal(fields, list(crowded.services.analysts))).decode(),
        "upload": [upload_id],
    }
    answer = client.post("/report", data=data, content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.get_json()["uploads_lost"] is True


def test_pieces_are_counted_without_looking_at_other_uploads(
    crowded: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece costs its own upload only: no listing of the folder, however many uploads."""
    sealed = envelope(crowded, CHUNK_BYTES)
    client = browser(crowded)
    upload_id = started(client, len(sealed))
    for _ in range(3):
        started(browser(crowded), len(envelope(crowded)))

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a piece listed the uploads folder")

    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(Path, "glob", no_listing)
    monkeypatch.setattr(Path, "iterdir", no_listing)
    for index in range(2):
        piece = sealed[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
        assert put(client, upload_id, index, piece).status_code == 200
