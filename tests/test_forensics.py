"""What a seized server's disk tells, read the way a forensic examiner would (docs/threat-model.md).

One real ``blagh serve`` (gunicorn, one worker) receives, over loopback:

* reporter A: a report without JavaScript, with a file, keeping a codename (A stays);
* reporter B: a report sealed in the "browser" (Python seals it exactly as the page does) with
  a file sent through the chunked upload API, keeping a codename; then B logs in with the
  codename, sends a follow-up message with a file, and deletes everything.

Then, with the database key that sits on the same disk (``db.key``), every page of the index
and every frame of its write-ahead log, live or stale, is decrypted (tests/forensics.py) and
searched for anything of B's; every file and folder of the data folder is stat'ed for every
time the kernel keeps (access, modification, change, birth); the SQLCipher files' modes and
the server's log are read.  Nothing of B's may be left, and no time inside the minutes the
submissions took may be on any per-item file.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from forensics import SQLCipherReader, clock_after, every_path, file_times, is_whole_day
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM, Upload
from gunicorn_helpers import HOST, Browser, Gunicorn, make_data_dir, submit_report
from source_helpers import open_site

from blagh.payloads import attachment_header, encode_document
from blagh.sqlcipher import connect
from crypto import codename
from crypto.envelope import seal
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.janitor import Janitor
from source_interface.presealed import UploadFolder
from source_interface.services import load_wordlist
from source_interface.store import Store
from source_interface.store.index import EXPIRY_GRAIN_SECONDS
from source_interface.views.uploads import FORM_HEADER

DATABASE_FILES = {"index.db", "index.db-wal", "index.db-shm"}
LAST_ACTIVITY = {*DATABASE_FILES, "janitor.lock"}
"""Shared files whose times say when the server last wrote (or swept), whatever it wrote:
not per item, and documented as what remains (docs/threat-model.md).  Folders too."""

INVALID_MARKER = "NOTHTTP" + secrets.token_hex(6)


@dataclass
class Scene:
    server: Gunicorn
    data: Path
    key: bytes
    window: tuple[int, int]
    """The file system's clock just before A's first request and just after B's deletion."""
    b_secrets: dict[str, bytes] = field(default_factory=dict)
    a_verifier: bytes = b""
    index_copy: Path = Path()
    """index.db and index.db-wal as they were right after the deletion (the janitor not run)."""
    modes: dict[str, int] = field(default_factory=dict)
    """The database files' modes while the server ran (it removes -wal and -shm at exit)."""


def _latest_time(root: Path) -> int:
    latest = 0
    for path in every_path(root):
        latest = max(latest, *file_times(path).named().values())
    return latest


def _put(browser: Browser, path: str, token: str, data: bytes) -> int:
    connection = browser.connection()
    try:
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        headers = {FORM_HEADER: token, "Cookie": cookie}
        headers["Content-Type"] = "application/octet-stream"
        connection.request("PUT", path, body=data, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _js_report(browser: Browser, analyst: AnalystKey, keys: codename.SourceKeys) -> None:
    """What the page does with JavaScript: seal a file, upload it in pieces, send the sealed
    fields with the ids of the uploads and the codename's public key and login secret."""
    analysts = [analyst.public().encryption]
    token = browser.token("/report")
    envelope = seal(
        attachment_header("evidence.png", "image/png") + os.urandom(1_500_000), analysts
    )
    fields = [("form_token", token), ("size", str(len(envelope)))]
    created = browser.post("/upload", fields)
    assert created.status == 201, created.text
    answer = json.loads(created.text)
    chunk = answer["chunk_size"]
    for index in range(-(-len(envelope) // chunk)):
        piece = envelope[index * chunk : (index + 1) * chunk]
        assert _put(browser, f"/upload/{answer['id']}/{index}", token, piece) == 200
    document = encode_document(
        "report",
        {
            "category": "fraud",
            "danger": False,
            "description": "sealed in the browser",
            "links": [],
            "platform": "",
            "seen_on": None,
            "identity": None,
            "attachments": ["evidence.png"],
        },
    )
    sealed = seal(document, [*analysts, keys.public_key])
    sent = browser.post(
        "/report",
        [
            ("form_token", token),
            ("sealed_fields", base64.b64encode(sealed).decode()),
            ("upload", answer["id"]),
            ("source_key", base64.b64encode(keys.public_key).decode()),
            ("login_secret", base64.b64encode(keys.login_secret).decode()),
        ],
    )
    assert sent.status == 200, sent.text
    assert json.loads(sent.text)["next"] == "/followup?saved=1"


def _invalid_request(port: int) -> None:
    """A request line gunicorn refuses: it used to log the address and what was sent."""
    with socket.create_connection((HOST, port), timeout=10) as raw:
        raw.sendall(f"{INVALID_MARKER} / HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw.recv(1024)


def _rows_of(data: Path, key: bytes, public_key: bytes) -> dict[str, bytes]:
    """Everything the index holds of the source with ``public_key``, as bytes to search for."""
    db = connect(data / "store" / "index.db", key)
    try:
        source_id, verifier = db.execute(
            "SELECT id, verifier FROM sources WHERE public_key = ?", (public_key,)
        ).fetchone()
        found = {"source id": source_id.encode(), "verifier": verifier, "public key": public_key}
        for (report_id,) in db.execute("SELECT id FROM reports WHERE source_id = ?", (source_id,)):
            found[f"report {report_id}"] = report_id.encode()
            for item_id, blob in db.execute(
                "SELECT id, blob FROM items WHERE report_id = ?", (report_id,)
            ):
                found[f"item {item_id}"] = item_id.encode()
                found[f"blob {blob}"] = blob.encode()
        for (token_hash,) in db.execute(
            "SELECT token_hash FROM sessions WHERE source_id = ?", (source_id,)
        ):
            found[f"session {token_hash.hex()}"] = token_hash
        assert sum(name.startswith("item ") for name in found) == 4, found.keys()
        assert sum(name.startswith("session ") for name in found) == 2, found.keys()
        return found
    finally:
        db.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("forensics")
    analyst = generate_analyst_key()
    # The umask most systems run services with: the files' modes must not depend on it.
    umask = os.umask(0o022)
    try:
        data_dir = make_data_dir(work / "data", analyst, workers=1)
        server = Gunicorn(data_dir, work, workers=1)
        server.start()
    finally:
        os.umask(umask)
    key = bytes.fromhex(data_dir.read_db_key())
    marker = work / "clock"
    try:
        start = clock_after(marker, _latest_time(data_dir.path))

        # A: no JavaScript, a file, a codename kept; A stays.
        a = Browser(server.port)
        reply = submit_report(
            a, "A's report", [Upload("photo.jpg", os.urandom(70_000), "image/jpeg")], name="A"
        )
        assert reply.location() == "/report/codename"
        page = a.get("/report/codename").text
        shown, token = CODENAME.search(page), FORM_TOKEN.search(page)
        assert shown and token
        a_words = shown.group(1)
        confirm = [("form_token", token.group(1)), ("codename", a_words)]
        assert a.post("/report/codename", confirm).status == 303

        # B: the JavaScript path, then a follow-up without it, then "delete everything".
        b_words = codename.generate(load_wordlist())
        b_keys = codename.derive(b_words, data_dir.read_instance_salt())
        _js_report(Browser(server.port), analyst, b_keys)
        b = Browser(server.port)
        token_b = b.token("/login")
        assert b.post("/login", [("form_token", token_b), ("codename", b_words)]).status == 303
        home = b.get("/followup").text
        [report_id] = MESSAGE_FORM.findall(home)
        found = FORM_TOKEN.search(home)
        assert found
        sent = b.post(
            f"/followup/{report_id}/message",
            [("form_token", found.group(1)), ("message", "one more thing")],
            [Upload("more.bin", os.urandom(40_000))],
        )
        assert sent.status == 303
        b_secrets = _rows_of(data_dir.path, key, b_keys.public_key)
        a_verifier = codename.login_verifier(
            codename.derive(a_words, data_dir.read_instance_salt()).login_secret,
            data_dir.read_login_hash_key(),
        )
        delete_token = b.token("/delete")
        assert b.post("/delete", [("form_token", delete_token)]).status == 200
        end = clock_after(marker, 0)

        # The index's files as a seizure right now would find them: no janitor round since.
        copy = work / "index-copy"
        copy.mkdir()
        for name in ("index.db", "index.db-wal"):
            source = data_dir.path / "store" / name
            if source.exists():
                shutil.copyfile(source, copy / name)
        modes = {
            name: stat.S_IMODE((data_dir.path / "store" / name).stat().st_mode)
            for name in DATABASE_FILES
        }
        _invalid_request(server.port)
    except BaseException:
        server.stop()
        raise
    server.stop()

    # The janitor's pass over the blobs (it runs every two hours in each server; here once,
    # on the data folder the stopped server left, with the same code).
    store = Store(data_dir.path / "store", key)
    try:
        uploads = UploadFolder(data_dir.path / "store" / "uploads")
        Janitor(store, uploads, work / "janitor.lock").sweep()
    finally:
        store.close()
    yield Scene(server, data_dir.path, key, (start, end), b_secrets, a_verifier, copy, modes)


def test_nothing_of_a_deleted_source_is_left_in_the_index_files(scene: Scene) -> None:
    """Every page of the database (free ones too) and every frame of its WAL (stale ones too),
    right after "delete everything", decrypted: nothing of B's; A's verifier is there (so the
    reader reads)."""
    reader = SQLCipherReader(scene.index_copy / "index.db", scene.key)
    everything = reader.everything()
    assert scene.a_verifier in everything
    left = [name for name, value in scene.b_secrets.items() if value in everything]
    assert left == [], f"found in the index's pages or WAL after the deletion: {left}"


def test_no_file_tells_when_a_submission_came(scene: Scene) -> None:
    """No time the kernel keeps of any per-item file falls in the minutes of the submissions:
    blobs have the day's start as access and modification times, were born in the pool before
    (a batch made at start), and their change time is the janitor's pass, after."""
    start, end = scene.window
    inside: list[str] = []
    blobs = 0
    for path in every_path(scene.data):
        if path.is_dir() or path.name in LAST_ACTIVITY:
            continue
        times = file_times(path)
        inside += [f"{path}: {n}" for n, ns in times.named().items() if start <= ns <= end]
        if path.parent.name == "blobs":
            blobs += 1
            assert is_whole_day(times.atime_ns) and is_whole_day(times.mtime_ns), path
    assert blobs == 2, "A's fields and photo"
    assert inside == []


def test_what_keeps_a_time_is_only_the_last_activity(scene: Scene) -> None:
    """What does carry a time from the window is the shared state every write touches (the
    database files, the folders' own entries): the last write, documented, never per item."""
    start, end = scene.window
    carrying = {
        path.name
        for path in every_path(scene.data)
        if any(start <= ns <= end for ns in file_times(path).named().values())
    }
    folders = {p.name for p in every_path(scene.data) if p.is_dir()}
    assert carrying <= folders | LAST_ACTIVITY, carrying - folders - LAST_ACTIVITY


def test_the_index_keeps_no_time_finer_than_its_grain(scene: Scene) -> None:
    """Days in every day column; the one live session's expiry rounded to the grain."""
    db = connect(scene.data / "store" / "index.db", scene.key)
    try:
        [(expires,)] = db.execute("SELECT expires FROM sessions").fetchall()
        days = {
            day
            for table in ("sources", "reports", "items")
            for (day,) in db.execute(
                f"SELECT day FROM {table}"  # noqa: S608 (fixed names)
            )
        }
    finally:
        db.close()
    assert expires % EXPIRY_GRAIN_SECONDS == 0
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) for day in days)


def test_the_database_files_are_the_owners_alone(scene: Scene) -> None:
    """0600 for the database, its WAL and its shared memory (the folder is 0700 too: both)."""
    assert stat.S_IMODE((scene.data / "store").stat().st_mode) == 0o700
    assert scene.modes == dict.fromkeys(DATABASE_FILES, 0o600), {
        name: oct(mode) for name, mode in scene.modes.items()
    }


def test_the_log_holds_no_address_request_or_time(scene: Scene) -> None:
    log = scene.server.log()
    listening = f"http://{HOST}:{scene.server.port}/"
    addresses = [line for line in log.splitlines() if HOST in line and listening not in line]
    assert addresses == []
    assert INVALID_MARKER not in log and "ip=" not in log
    assert not re.search(r"\d{1,2}:\d{2}:\d{2}", log), log


def test_a_failed_request_is_logged_without_its_path_or_a_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Flask logs an exception as "Exception on <path> [<method>]" with the time: here the
    traceback only, through a handler that writes no time."""
    marker = "path-" + secrets.token_hex(6)
    with open_site(tmp_path) as site:

        def fails() -> str:
            raise RuntimeError("the server's own failure")

        site.app.add_url_rule(f"/{marker}", "fails", fails)
        with caplog.at_level(logging.ERROR):
            assert site.client().get(f"/{marker}").status_code == 500
        records = [r for r in caplog.records if r.name == site.app.logger.name]
        assert len(records) == 1 and records[0].exc_info is not None
        lines = [handler.format(records[0]) for handler in site.app.logger.handlers]
    assert lines
    for line in [records[0].getMessage(), *lines]:
        assert marker not in line and "GET" not in line
        assert not re.search(r"\d{1,2}:\d{2}:\d{2}", line.splitlines()[0]), line
