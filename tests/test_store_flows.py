"""The reporters' flows through a real ``blagh serve`` (gunicorn, two workers) on each store
backend: SQLCipher + files, and PostgreSQL (a real server: tests/postgres_helpers.py).  No-JS
and JS reports, a codename login and a message, then the analysts' pickup bundle, every item
opened with the analyst's key; and ``blagh store migrate`` from one backend to the other."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM, Upload
from gunicorn_helpers import Browser, Gunicorn, make_data_dir, submit_report
from postgres_helpers import Cluster

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.datadir import DataDir
from blagh.payloads import attachment_header, decode_document, encode_document, split_attachment
from crypto.envelope import open_envelope, seal
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.app import open_store
from source_interface.store import PostgresStore, Store

pytestmark = pytest.mark.timeout(300)


def use_postgres(data_dir: DataDir, dsn: str) -> None:
    config = data_dir.config_file.read_text("utf-8")
    config, count = re.subn(r'(?m)^backend = "sqlcipher"$', 'backend = "postgresql"', config)
    assert count == 1
    config, count = re.subn(r'(?m)^dsn = ""$', f'dsn = "{dsn}"', config)
    assert count == 1
    data_dir.config_file.write_text(config, "utf-8")


@pytest.fixture(scope="module")
def analyst() -> AnalystKey:
    return generate_analyst_key()


@pytest.fixture(params=["sqlcipher", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, analyst: AnalystKey
) -> Iterator[Gunicorn]:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=2)
    if request.param == "postgresql":
        postgres: Cluster = request.getfixturevalue("postgres")
        use_postgres(data_dir, postgres.new_database("f" + secrets.token_hex(6)))
    running = Gunicorn(data_dir, tmp_path, workers=2)
    try:
        running.start()
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log()


def js_report(server: Gunicorn, analyst: AnalystKey, description: str, file: bytes) -> None:
    """What the page's script does: seal in the browser, upload the file's envelope in
    pieces, post the sealed fields with the upload's id."""
    browser = Browser(server.port)
    browser.token("/report")
    form = browser.cookies["blagh_form"]
    recipients = [analyst.public().encryption]
    envelope = seal(attachment_header("photo.png", "image/png") + file, recipients)
    created = browser.post("/upload", [("form_token", form), ("size", str(len(envelope)))])
    assert created.status == 201, created.text
    answer = json.loads(created.text)
    chunk = answer["chunk_size"]
    browser.extra_headers = {"X-Blagh-Form": form}
    for index in range(-(-len(envelope) // chunk)):
        put = browser.request(
            "PUT",
            f"/upload/{answer['id']}/{index}",
            envelope[index * chunk : (index + 1) * chunk],
            "application/octet-stream",
        )
        assert put.status == 200, put.text
    browser.extra_headers = {}
    fields = encode_document(
        "report",
        {
            "category": "fraud",
            "danger": False,
            "description": description,
            "links": [],
            "platform": "",
            "seen_on": None,
            "identity": None,
            "attachments": ["photo.png"],
        },
    )
    sealed = base64.b64encode(seal(fields, recipients)).decode("ascii")
    sent = browser.post(
        "/report",
        [("form_token", form), ("sealed_fields", sealed), ("upload", answer["id"])],
    )
    assert sent.status == 200, sent.text


def pickup(data_dir: DataDir, analyst: AnalystKey, out: Path) -> dict[str, list[bytes]]:
    """``blagh export-bundle``, verified and opened: each report's plaintexts by kind."""
    result = CliRunner().invoke(
        cli, ["export-bundle", "--data-dir", str(data_dir.path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    opened: dict[str, list[bytes]] = {}
    verify = data_dir.read_server_signing_key().public().verify
    with BundleReader(out, [verify], "blagh-pickup") as reader:
        for item in reader.manifest["items"]:
            plain = open_envelope(reader.read_item(item["id"]), [analyst.encryption_secret])
            opened.setdefault(item["report"], []).append(plain)
    return opened


def test_reports_login_and_pickup(server: Gunicorn, analyst: AnalystKey, tmp_path: Path) -> None:
    tag = secrets.token_hex(6)
    big = secrets.token_bytes(3 * 1024 * 1024 + 17)  # several PostgreSQL chunks
    reporter = Browser(server.port)
    reply = submit_report(
        reporter, f"no-js {tag}", [Upload("video.mp4", big, "video/mp4")], keep_codename="yes"
    )
    assert (reply.status, reply.location()) == (303, "/report/codename")
    page = reporter.get("/report/codename")
    shown = CODENAME.search(page.text)
    assert shown
    codename = shown.group(1)

    visitor = Browser(server.port)
    token = visitor.token("/login")
    reply = visitor.post("/login", [("form_token", token), ("codename", codename)])
    assert (reply.status, reply.location()) == (303, "/followup")
    home = visitor.get("/followup")
    [report_id] = MESSAGE_FORM.findall(home.text)
    form = FORM_TOKEN.search(home.text)
    assert form
    reply = visitor.post(
        f"/followup/{report_id}/message", [("form_token", form.group(1)), ("message", tag)]
    )
    assert reply.status == 303 and tag in visitor.get("/followup").text

    photo = secrets.token_bytes(200_000)
    js_report(server, analyst, f"js {tag}", photo)

    reports = pickup(server.data_dir, analyst, tmp_path / "pickup.bundle")
    assert len(reports) == 2
    by_text = {}
    for plains in reports.values():
        fields = decode_document(plains[0], "report")
        by_text[fields["description"]] = plains[1:]
    no_js = by_text[f"no-js {tag}"]
    assert split_attachment(no_js[0])[1] == big
    assert decode_document(no_js[1], "message")["text"] == tag
    assert split_attachment(by_text[f"js {tag}"][0])[1] == photo


def test_store_migrate_copies_every_item_and_refuses_a_used_database(
    postgres: Cluster, tmp_path: Path, analyst: AnalystKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    store = open_store(data_dir)
    assert type(store) is Store
    try:
        contents = {}
        for n in range(3):
            source = store.create_source(secrets.token_bytes(32), secrets.token_bytes(32))
            refs = []
            for size in (100, 600_000):
                pending = store.new_blob()
                data = secrets.token_bytes(size + n)
                pending.write(data)
                refs.append(pending.commit())
                contents[refs[-1].name] = data
            store.add_report(source.id, [("fields", refs[0]), ("file", refs[1])])
        store.add_pickup_token("station", b"h" * 32)
    finally:
        store.close()
    dsn = postgres.new_database("m" + secrets.token_hex(6))
    argv = ["store", "migrate", "--data-dir", str(data_dir.path)]
    result = CliRunner().invoke(cli, argv, env={"BLAGH_STORE_DSN": dsn})
    assert result.exit_code == 0, result.output
    assert "3 sources, 3 reports, 6 items" in result.output and "6 envelopes" in result.output
    assert dsn not in result.output

    moved = PostgresStore(tmp_path / "local", dsn)
    try:
        for item in moved.undelivered_snapshot().items:
            data = moved.read_blob(item.blob)
            assert data == contents[item.blob]
            assert hashlib.sha256(data).hexdigest() == item.sha256
        assert len(moved.undelivered_snapshot().items) == 6
        assert moved.pickup_token_name(b"h" * 32) == "station"
    finally:
        moved.close()

    again = CliRunner().invoke(cli, argv, env={"BLAGH_STORE_DSN": dsn})
    assert again.exit_code == 1 and "empty database" in again.stderr
    with psycopg.connect(dsn) as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (6,)


def test_store_migrate_refuses_a_damaged_envelope(
    postgres: Cluster, tmp_path: Path, analyst: AnalystKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    store = open_store(data_dir)
    try:
        source = store.create_source(None, None)
        pending = store.new_blob()
        pending.write(b"sealed" * 1000)
        ref = pending.commit()
        store.add_report(source.id, [("fields", ref)])
        (store.blobs.root / ref.name).write_bytes(b"changed on disk")
    finally:
        store.close()
    dsn = postgres.new_database("m" + secrets.token_hex(6))
    result = CliRunner().invoke(
        cli, ["store", "migrate", "--data-dir", str(data_dir.path)], env={"BLAGH_STORE_DSN": dsn}
    )
    assert result.exit_code == 1 and ref.name in result.stderr
    with psycopg.connect(dsn) as db:
        assert db.execute("SELECT count(*) FROM sources").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM blob_chunks").fetchone() == (0,)


def opened_reports(store: Store, analyst: AnalystKey) -> dict[str, list[tuple[str, bytes]]]:
    """Every report the store holds, opened with the analyst's key: its files by description.
    Every item's envelope must be there, whole (size and SHA-256 as its row says)."""
    found: dict[str, tuple[str, list[tuple[str, bytes]]]] = {}
    for item in store.undelivered_snapshot().items:
        sealed = store.read_blob(item.blob)
        assert (len(sealed), hashlib.sha256(sealed).hexdigest()) == (item.size, item.sha256)
        plain = open_envelope(sealed, [analyst.encryption_secret])
        _, files = found.setdefault(item.report_id, ("", []))
        if item.kind == "fields":
            found[item.report_id] = (decode_document(plain, "report")["description"], files)
        else:
            header, content = split_attachment(plain)
            files.append((header["name"], content))
    return dict(found.values())


def test_sigkill_workers_mid_upload_on_postgresql(
    postgres: Cluster, tmp_path: Path, analyst: AnalystKey
) -> None:
    """Workers killed while uploads stream in and reports commit: on PostgreSQL too, what was
    acknowledged is whole, every row's envelope is there, and the sweep leaves exactly what rows
    refer to."""
    import threading

    from test_source_gunicorn import SlowUpload, stall_uploads_and_kill_workers

    data_dir = make_data_dir(tmp_path / "data", analyst, workers=2)
    dsn = postgres.new_database("k" + secrets.token_hex(6))
    use_postgres(data_dir, dsn)
    server = Gunicorn(data_dir, tmp_path, workers=2)
    slow: list[SlowUpload] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        server.start()
        raced, _ = stall_uploads_and_kill_workers(
            server, data_dir.path / "store" / "blobs", stop, slow, threads
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        server.stop()
        assert "Traceback" not in server.log(), server.log()

        store = PostgresStore(tmp_path / "check", dsn)
        try:
            stored = opened_reports(store, analyst)
            assert not any(d.startswith("slow ") for d in stored)
            whole = [a for a in raced if a.status == 303]
            assert len(whole) >= 6
            for attempt in raced:
                if attempt.status == 303 or attempt.description in stored:
                    expected = [(f.filename, f.content) for f in attempt.files]
                    assert stored[attempt.description] == expected
            store.sweep(min_age=0)
            with psycopg.connect(dsn) as db:
                referenced = {
                    n for (n,) in db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts")
                }
                chunked = {n for (n,) in db.execute("SELECT DISTINCT name FROM blob_chunks")}
            assert store.blobs.names() == referenced == chunked
        finally:
            store.close()
    finally:
        stop.set()
        for upload in slow:
            upload.close()
        for thread in threads:
            thread.join(timeout=60)
        server.stop()
