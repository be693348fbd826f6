"""The source interface through a real gunicorn (``blagh serve``) on loopback.

The Flask test client suites cover every detail of the flows; these tests check what only a real
server shows: that reports and large files go through gunicorn, that no plaintext reaches any
disk on the way (data folder, SQLCipher files, temporary folders, logs), that killing workers
with SIGKILL in the middle of uploads loses nothing acknowledged and leaves nothing half-stored,
and that the server's own headers and logs say nothing about the software or the visitors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import secrets
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM, Upload, multipart
from gunicorn_helpers import (
    HOST,
    Browser,
    Gunicorn,
    make_data_dir,
    report_fields,
    running,
    submit_report,
)

from blagh.datadir import DataDir
from blagh.payloads import decode_document, split_attachment
from blagh.sqlcipher import connect
from crypto.envelope import open_envelope
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.store import Store

MB = 1_000_000

# ---------------------------------------------------------------------------------------------
# A data folder, a gunicorn process, and a small cookie-keeping HTTP client
# ---------------------------------------------------------------------------------------------


class SlowUpload:
    """A multipart POST sent by hand, piece by piece, that can stop part-way and stall."""

    def __init__(self, port: int, description: str, files: Sequence[Upload]) -> None:
        browser = Browser(port)
        token = browser.token("/report")
        content_type, self.body = multipart(report_fields(token, description), files)
        self.sent = 0
        self.connection = http.client.HTTPConnection(HOST, port, timeout=60)
        self.connection.putrequest("POST", "/report")
        self.connection.putheader("Content-Type", content_type)
        self.connection.putheader("Content-Length", str(len(self.body)))
        self.connection.putheader("Cookie", f"blagh_form={browser.cookies['blagh_form']}")
        self.connection.endheaders()

    def send(self, fraction: float) -> None:
        """Send, in 64 KiB pieces, up to ``fraction`` of the body."""
        end = int(len(self.body) * fraction)
        for start in range(self.sent, end, 64 * 1024):
            self.connection.send(self.body[start : min(start + 64 * 1024, end)])
        self.sent = max(self.sent, end)

    def finish(self) -> int:
        self.send(1.0)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


def wait_for_temp_bytes(blobs: Path, size: int) -> None:
    """Poll until the blobs being written (blobs/tmp) hold ``size`` bytes in all."""
    deadline = time.monotonic() + 20
    while _size_of_files(blobs / "tmp") < size:
        assert time.monotonic() < deadline, "the uploads never reached the server"
        time.sleep(0.02)


def _size_of_files(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # committed (renamed) meanwhile
            total += path.stat().st_size
    return total


# ---------------------------------------------------------------------------------------------
# What an analyst finds in the store
# ---------------------------------------------------------------------------------------------


@dataclass
class StoredReport:
    id: str
    source_id: str
    fields: dict[str, Any]
    files: list[tuple[str, bytes]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def stored_reports(data_dir: DataDir, analyst: AnalystKey) -> list[StoredReport]:
    """Open every report in the store with the analyst's key; fail on anything unreadable."""
    key = bytes.fromhex(data_dir.read_db_key())
    store = Store(data_dir.path / "store", key)
    db = connect(data_dir.path / "store" / "index.db", key)
    try:
        rows = db.execute("SELECT id, source_id FROM reports ORDER BY day, id").fetchall()
        found = []
        for report_id, source_id in rows:
            report = store.index.report(source_id, report_id)
            assert report is not None
            kinds = [item.kind for item in report.items]
            assert kinds and kinds[0] == "fields", f"report {report_id} has no fields: {kinds}"
            opened = StoredReport(report_id, source_id, {})
            for item in report.items:
                sealed = store.read_blob(item.blob)
                assert len(sealed) == item.size
                assert hashlib.sha256(sealed).hexdigest() == item.sha256
                plaintext = open_envelope(sealed, [analyst.encryption_secret])
                if item.kind == "fields":
                    opened.fields = decode_document(plaintext, "report")
                elif item.kind == "file":
                    description, content = split_attachment(plaintext)
                    opened.files.append((description["name"], content))
                else:
                    opened.messages.append(decode_document(plaintext, item.kind))
            found.append(opened)
        return found
    finally:
        db.close()
        store.close()


def by_description(reports: Iterable[StoredReport]) -> dict[str, StoredReport]:
    return {report.fields["description"]: report for report in reports}


def referenced_blobs(data_dir: DataDir) -> set[str]:
    key = bytes.fromhex(data_dir.read_db_key())
    db = connect(data_dir.path / "store" / "index.db", key)
    try:
        rows = db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts").fetchall()
        return {name for (name,) in rows}
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyst() -> AnalystKey:
    return generate_analyst_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, analyst: AnalystKey) -> Iterator[Gunicorn]:
    """One gunicorn for the flow, plaintext and header tests (two workers)."""
    work = tmp_path_factory.mktemp("gunicorn")
    data_dir = make_data_dir(work / "data", analyst, workers=2)
    running = Gunicorn(data_dir, work, workers=2)
    try:
        running.start()
        yield running
    finally:
        running.stop()


# ---------------------------------------------------------------------------------------------
# 1. The flows, lightly
# ---------------------------------------------------------------------------------------------


def test_reports_codename_followup_and_delete(server: Gunicorn, analyst: AnalystKey) -> None:
    big = secrets.token_bytes(5 * 1024 * 1024 + 12345)
    photo = secrets.token_bytes(70_000)
    note = b"a note\n" * 50
    tag = secrets.token_hex(8)

    # Without identity, no codename kept: received page.
    anonymous = Browser(server.port)
    reply = submit_report(anonymous, f"anonymous {tag}", keep_codename="no")
    assert (reply.status, reply.location()) == (303, "/report/received")
    assert anonymous.get("/report/received").status == 200

    # With identity and three files, one over 5 MB: a codename.
    reporter = Browser(server.port)
    files = [
        Upload("photo.jpg", photo, "image/jpeg"),
        Upload("screen recording.mp4", big, "video/mp4"),
        Upload("note.txt", note, "text/plain"),
    ]
    reply = submit_report(
        reporter,
        f"identified {tag}",
        files,
        links="https://example.com/a\n@someone",
        platform="Example",
        seen_on="2026-01-02",
        name="Jane Doe",
        phone="+33 1 23 45 67 89",
        email="jane@example.org",
        keep_codename="yes",
    )
    assert (reply.status, reply.location()) == (303, "/report/codename")
    page = reporter.get("/report/codename")
    shown = CODENAME.search(page.text)
    assert page.status == 200 and shown
    codename = shown.group(1)
    assert len(codename.split()) == 7
    token = FORM_TOKEN.search(page.text)
    assert token
    reply = reporter.post(
        "/report/codename", [("form_token", token.group(1)), ("codename", codename)]
    )
    assert (reply.status, reply.location()) == (303, "/followup?saved=1")
    token = reporter.token("/followup")
    assert reporter.post("/logout", [("form_token", token)]).status == 303
    assert reporter.get("/followup").location() == "/login"

    # Log in with the codename, add a message with a file.
    visitor = Browser(server.port)
    token = visitor.token("/login")
    reply = visitor.post("/login", [("form_token", token), ("codename", codename)])
    assert (reply.status, reply.location()) == (303, "/followup")
    home = visitor.get("/followup")
    report_ids = MESSAGE_FORM.findall(home.text)
    assert len(report_ids) == 1
    token = FORM_TOKEN.search(home.text)
    assert token
    extra = secrets.token_bytes(300_000)
    reply = visitor.post(
        f"/followup/{report_ids[0]}/message",
        [("form_token", token.group(1)), ("message", f"more {tag}")],
        [Upload("more.bin", extra)],
    )
    assert reply.status == 303
    assert f"more {tag}" in visitor.get("/followup").text

    # The analyst finds both reports whole.
    stored = by_description(stored_reports(server.data_dir, analyst))
    assert stored[f"anonymous {tag}"].fields["identity"] is None
    assert stored[f"anonymous {tag}"].files == []
    mine = stored[f"identified {tag}"]
    assert mine.id == report_ids[0]
    assert mine.fields["identity"] == {
        "name": "Jane Doe",
        "phone": "+33 1 23 45 67 89",
        "email": "jane@example.org",
    }
    assert mine.fields["links"] == ["https://example.com/a", "@someone"]
    assert mine.fields["attachments"] == ["photo.jpg", "screen recording.mp4", "note.txt"]
    assert mine.files == [
        ("photo.jpg", photo),
        ("screen recording.mp4", big),
        ("note.txt", note),
        ("more.bin", extra),
    ]
    assert [m["text"] for m in mine.messages] == [f"more {tag}"]
    blobs_before = {p.name for p in (server.data_dir.path / "store" / "blobs").iterdir()}

    # Delete everything: the rows and the envelopes go, the codename stops working.
    token = visitor.token("/delete")
    reply = visitor.post("/delete", [("form_token", token)])
    assert reply.status == 200
    assert visitor.get("/followup").location() == "/login"
    stored = by_description(stored_reports(server.data_dir, analyst))
    assert f"identified {tag}" not in stored and f"anonymous {tag}" in stored
    blobs_after = {p.name for p in (server.data_dir.path / "store" / "blobs").iterdir()}
    assert blobs_after <= blobs_before
    assert len(blobs_before - blobs_after) == 6  # fields, three files, the message, its file
    token = visitor.token("/login")
    reply = visitor.post("/login", [("form_token", token), ("codename", codename)])
    assert (reply.status, reply.location()) == (303, "/login")  # refused: back to the form
    reply = visitor.get("/login")
    assert reply.status == 400 and 'id="codename-error"' in reply.text


# ---------------------------------------------------------------------------------------------
# 2. No plaintext on disk
# ---------------------------------------------------------------------------------------------

SCAN_PIECE = 1 << 20
MARKER = re.compile(r"mk[0-9a-f]{12}_[a-z]+_[0-9a-f]{8}")
"""A marker: a per-test prefix ("mk" and 12 hex digits), a label, 8 random hex digits."""


def scan_for(prefix: str, roots: Iterable[Path], since: float = 0.0) -> dict[Path, set[str]]:
    """Every regular file under ``roots`` holding ``prefix`` (UTF-8 or UTF-16), with the markers
    found (whole, or the bare prefix where cut). Files that vanish are skipped, and so are files
    not changed since ``since``: the prefix is random per test, so an older file cannot hold it,
    and other tests' leftovers in /tmp (a 1 TiB sparse file, say) are not read for nothing."""
    needles = [prefix.encode("utf-8"), prefix.encode("utf-16-le")]
    overlap = max(len(n) for n in needles) - 1
    hits: dict[Path, set[str]] = {}
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                try:
                    info = path.lstat()
                    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) in seen:
                        continue
                    if max(info.st_mtime, info.st_ctime) < since:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                    found = _scan_file(path, needles, overlap)
                except (FileNotFoundError, PermissionError):
                    continue
                if found:
                    hits[path] = found
    return hits


def _scan_file(path: Path, needles: list[bytes], overlap: int) -> set[str]:
    found: set[str] = set()
    tail = b""
    with path.open("rb") as f:
        while piece := f.read(SCAN_PIECE):
            window = tail + piece
            for needle, encoding in zip(needles, ("utf-8", "utf-16-le"), strict=True):
                start = window.find(needle)
                while start >= 0:
                    text = window[start : start + 80].decode(encoding, "replace")
                    whole = MARKER.match(text)
                    found.add(whole.group(0) if whole else text[: len(needles[0])])
                    start = window.find(needle, start + 1)
            tail = window[-overlap:]
    return found


def scan_open_files(prefix: str, pids: Iterable[int]) -> dict[str, set[str]]:
    """Like :func:`scan_for`, over the regular files these processes hold open, deleted or not
    (read through /proc/PID/fd)."""
    needles = [prefix.encode("utf-8"), prefix.encode("utf-16-le")]
    hits: dict[str, set[str]] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fd_dir):
            path = fd_dir / fd
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    continue
                found = _scan_file(path, needles, len(needles[1]) - 1)
                target = os.readlink(path)
            except (FileNotFoundError, PermissionError):
                continue
            if found:
                hits[f"{pid}:{target}"] = found
    return hits


def test_scanner_finds_a_marker_across_pieces(tmp_path: Path) -> None:
    prefix = "mk" + secrets.token_hex(6)
    marker = f"{prefix}_control_{secrets.token_hex(4)}"
    plain = tmp_path / "a" / "b.bin"
    plain.parent.mkdir()
    plain.write_bytes(os.urandom(SCAN_PIECE - 5) + marker.encode() + os.urandom(100))
    wide = tmp_path / "wide.bin"
    wide.write_bytes(os.urandom(999) + marker.encode("utf-16-le"))
    (tmp_path / "clean.bin").write_bytes(os.urandom(3 * SCAN_PIECE))
    assert scan_for(prefix, [tmp_path]) == {plain: {marker}, wide: {marker}}


@pytest.mark.serial  # it reads every file changed in /tmp meanwhile: no other test may write there
def test_no_plaintext_on_disk_or_in_logs(
    server: Gunicorn, analyst: AnalystKey, tmp_path: Path
) -> None:
    prefix = "mk" + secrets.token_hex(6)
    began = time.time() - 2  # file times may be a tick coarser than time.time()

    def marker(label: str) -> str:
        return f"{prefix}_{label}_{secrets.token_hex(4)}"

    # Positive controls: markers written on purpose where the scan must look.
    expected = {
        server.data_dir.path / "store" / "blobs" / "tmp" / "control": {marker("control")},
        server.tmp / "control": {marker("control")},
    }
    for path, (control,) in expected.items():
        path.write_bytes(os.urandom(SCAN_PIECE - 10) + control.encode() + b"\n")

    codenames = []
    submitted: dict[str, dict[str, Any]] = {}
    for keep in ("yes", "no"):
        description = marker(f"description{keep}")
        big_marker = marker("bigfile")
        big = (big_marker.encode() + b" ") * (6 * MB // (len(big_marker) + 1))
        files = [
            Upload(marker("filename") + ".jpg", marker("photo").encode() * 1000, "image/jpeg"),
            Upload(marker("bigname") + ".mp4", big, "video/mp4"),
            Upload(marker("docname") + ".txt", marker("doc").encode(), "text/plain"),
        ]
        identity = {
            "name": marker("name"),
            "phone": "+33 6 " + str(secrets.randbelow(10**8)).zfill(8),
            "email": marker("email") + "@example.org",
        }
        browser = Browser(server.port)
        reply = submit_report(
            browser,
            description,
            files,
            links=f"https://{marker('link')}.example/\n@{marker('handle')}",
            platform=marker("platform"),
            keep_codename=keep,
            **identity,
        )
        assert reply.status == 303
        submitted[description] = {"files": files, "identity": identity}
        if keep == "yes":
            page = browser.get("/report/codename").text
            found = CODENAME.search(page)
            assert found
            codenames.append(found.group(1))
            home = browser.get("/followup")
            report_id = MESSAGE_FORM.findall(home.text)[0]
            token = FORM_TOKEN.search(home.text)
            assert token
            reply = browser.post(
                f"/followup/{report_id}/message",
                [("form_token", token.group(1)), ("message", marker("message"))],
                [Upload(marker("msgfile") + ".bin", marker("msgcontent").encode() * 100)],
            )
            assert reply.status == 303
    # A form with a mistake keeps its files as a (sealed) draft.
    browser = Browser(server.port)
    token = browser.token("/report")
    reply = browser.post(
        "/report",
        [("form_token", token), ("category", "no-such-category"), ("description", marker("d"))],
        [Upload(marker("draftname") + ".txt", marker("draftcontent").encode() * 10_000)],
    )
    assert reply.status == 400

    # While an upload streams in, the workers hold no open (maybe deleted) file with plaintext:
    # where Werkzeug's default or waitress would spool the body to an unlinked temporary file.
    slow_marker = marker("slowcontent")
    slow_file = Upload(marker("slowname"), (slow_marker.encode() + b"\n") * (6 * MB // 30))
    upload = SlowUpload(server.port, marker("slowdescription"), [slow_file])
    try:
        upload.send(0.9)
        wait_for_temp_bytes(server.data_dir.path / "store" / "blobs", 5 * MB)
        with tempfile.TemporaryFile() as control:  # an unlinked file, seen through /proc
            control.write(marker("control").encode())
            control.flush()
            (found,) = scan_open_files(prefix, [os.getpid()]).values()
            assert found and all(m.startswith(f"{prefix}_control_") for m in found)
        assert scan_open_files(prefix, server.worker_pids()) == {}
        assert upload.finish() == 303
    finally:
        upload.close()

    # The analyst can read it all back: the markers did reach the server.
    stored = by_description(stored_reports(server.data_dir, analyst))
    for description, sent in submitted.items():
        report = stored[description]
        assert report.files[:3] == [(f.filename, f.content) for f in sent["files"]]
        assert report.fields["identity"] == sent["identity"]

    store_dir = server.data_dir.path / "store"
    sqlite_files = {p.name for p in store_dir.iterdir()}
    assert {"index.db", "index.db-wal", "index.db-shm"} <= sqlite_files
    roots = [
        server.data_dir.path,
        server.tmp,
        server.home,
        server.cwd,
        Path(tempfile.gettempdir()),
        tmp_path,
    ]
    roots += [Path("/dev/shm")] if Path("/dev/shm").is_dir() else []
    assert scan_for(prefix, roots, began) == expected

    # The same once the server has stopped (SQLite checkpoints the WAL on the last close).
    for path in expected:
        path.unlink()
    server.stop()
    try:
        assert scan_for(prefix, roots, began) == {}
        log = server.log_path.read_bytes()
        assert prefix.encode() not in log
        for codename in codenames:
            assert codename.encode() not in log
            assert codename.split()[0].encode() + b" " + codename.split()[1].encode() not in log
    finally:
        server.start()


# ---------------------------------------------------------------------------------------------
# 3. Crash safety
# ---------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    description: str
    files: list[Upload]
    status: int | None = None


def stall_uploads_and_kill_workers(
    server: Gunicorn,
    blobs: Path,
    stop: threading.Event,
    slow: list[SlowUpload],
    threads: list[threading.Thread],
) -> tuple[list[Attempt], list[list[int]]]:
    """Three uploads stalled half-way through their second file; then four racers sending whole
    reports while every worker is SIGKILLed, twice (the second time with the shared writer),
    each time once three more reports were acknowledged, so submissions are cut at whatever
    stage they are.  ``slow`` and ``threads``
    get the uploads and racers (the caller closes and joins them, ``stop`` ends the racers).
    The racers' attempts, and the pids killed each time."""
    for i in range(3):
        files = [Upload("first.bin", os.urandom(MB)), Upload("second.bin", os.urandom(6 * MB))]
        upload = SlowUpload(server.port, f"slow {i}", files)
        upload.send(0.5)
        slow.append(upload)
    wait_for_temp_bytes(blobs, 3 * 3 * MB)
    raced: list[Attempt] = []
    threads += [threading.Thread(target=racer, args=(server.port, stop, raced)) for _ in range(4)]
    for thread in threads:
        thread.start()
    kills = []
    for _round in range(2):
        acknowledged = sum(1 for a in raced if a.status == 303)
        deadline = time.monotonic() + 20
        while sum(1 for a in raced if a.status == 303) < acknowledged + 3:
            assert time.monotonic() < deadline, "no racer got through"
            time.sleep(0.01)
        killed = server.worker_pids()
        writer = server.writer_pid()
        assert (writer is not None) == server.shared_writer
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        if _round == 1 and writer is not None:  # and the shared writer, amid its batches
            os.kill(writer, signal.SIGKILL)
            killed = killed | {writer}
        server.wait_ready(killed)  # the master started new ones
        kills.append(killed)
    return raced, kills


def racer(port: int, stop: threading.Event, attempts: list[Attempt]) -> None:
    """Submit small complete reports in a loop until told to stop, recording each outcome."""
    while not stop.is_set():
        attempt = Attempt(
            f"racer {secrets.token_hex(8)}",
            [Upload(f"f{i}.bin", os.urandom(20_000 + 50_000 * i)) for i in range(2)],
        )
        attempts.append(attempt)
        with contextlib.suppress(OSError, http.client.HTTPException, AssertionError):
            attempt.status = submit_report(
                Browser(port), attempt.description, attempt.files, keep_codename="no"
            ).status


def assert_acknowledged_are_whole(
    data_dir: DataDir, analyst: AnalystKey, attempts: Sequence[Attempt]
) -> dict[str, StoredReport]:
    stored = by_description(stored_reports(data_dir, analyst))  # every row opens
    for attempt in attempts:
        # Acknowledged: stored whole.  Cut off: maybe stored, and then whole too.
        if attempt.status == 303 or attempt.description in stored:
            report = stored[attempt.description]
            assert report.files == [(f.filename, f.content) for f in attempt.files]
    return stored


def count_sources_without_report(data_dir: DataDir) -> int:
    db = connect(data_dir.path / "store" / "index.db", bytes.fromhex(data_dir.read_db_key()))
    try:
        query = "SELECT count(*) FROM sources WHERE id NOT IN (SELECT source_id FROM reports)"
        count: int = db.execute(query).fetchone()[0]
        return count
    finally:
        db.close()


def test_sigkill_workers_mid_upload(tmp_path: Path, analyst: AnalystKey) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=2)
    server = Gunicorn(data_dir, tmp_path, workers=2)
    blobs = data_dir.path / "store" / "blobs"
    slow: list[SlowUpload] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        server.start()
        done = []
        for i in range(3):
            attempt = Attempt(f"before {i}", [Upload("a.bin", os.urandom(400_000 * (i + 1)))])
            attempt.status = submit_report(
                Browser(server.port), attempt.description, attempt.files, keep_codename="no"
            ).status
            assert attempt.status == 303
            done.append(attempt)

        raced, kills = stall_uploads_and_kill_workers(server, blobs, stop, slow, threads)
        assert [len(killed) for killed in kills] == [2, 3]  # two workers, then with the writer
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for upload in slow:
            upload.close()
        after = Attempt("after", [Upload("z.bin", os.urandom(123_456))])
        after.status = submit_report(
            Browser(server.port), after.description, after.files, keep_codename="no"
        ).status
        assert after.status == 303
        attempts = [*done, *raced, after]

        # While running: everything acknowledged is whole; every row's blob exists and opens.
        stored = assert_acknowledged_are_whole(data_dir, analyst, attempts)
        assert not any(d.startswith("slow ") for d in stored)
        leftovers = list((blobs / "tmp").iterdir())
        assert leftovers, "the kill should have cut uploads half-way"
        on_disk = {p.name for p in blobs.iterdir() if p.is_file()}
        assert referenced_blobs(data_dir) <= on_disk
        # What a kill between the source's transaction and its report's leaves (the kills above
        # hit that window only now and then, so here is one for sure).
        left = Store(data_dir.path / "store", bytes.fromhex(data_dir.read_db_key()))
        left.index.create_source(b"v" * 32, b"p" * 32)
        left.close()
        assert count_sources_without_report(data_dir) >= 1

        # After a restart (which clears tmp/ before serving): no temporary file.  Blobs a kill
        # left without their row are the janitor's, in the background (an hour after they were
        # written, so as never to take one in flight): here its sweep runs as it would then.
        server.restart()
        assert list((blobs / "tmp").iterdir()) == []
        assert_acknowledged_are_whole(data_dir, analyst, attempts)
        server.stop()
        left = Store(data_dir.path / "store", bytes.fromhex(data_dir.read_db_key()))
        left.sweep(min_age=0)
        left.close()
        assert {p.name for p in blobs.iterdir() if p.is_file()} == referenced_blobs(data_dir)
        assert count_sources_without_report(data_dir) == 0
        assert_acknowledged_are_whole(data_dir, analyst, attempts)
        db = connect(blobs.parent / "index.db", bytes.fromhex(data_dir.read_db_key()))
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            db.close()
    finally:
        stop.set()
        for upload in slow:
            upload.close()
        for thread in threads:
            thread.join(timeout=60)
        server.stop()


def test_the_shared_writer_follows_its_master(tmp_path: Path, analyst: AnalystKey) -> None:
    """A master killed outright (no chance to stop its writer): the writer sees it and exits
    by itself, as the workers do, instead of holding the index for a server that is gone."""
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    server = Gunicorn(data_dir, tmp_path, workers=1)
    server.start()
    try:
        writer = server.writer_pid()
        assert writer is not None
        assert submit_report(Browser(server.port), "before", keep_codename="no").status == 303
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait()
        server.proc = None
        deadline = time.monotonic() + 30
        while running(writer):  # reparented: this test cannot wait() for it
            assert time.monotonic() < deadline, "the writer outlived its master"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(server.writer_socket).unlink()  # the master that would have was killed
        server.stop()


# ---------------------------------------------------------------------------------------------
# 4. Headers and logs
# ---------------------------------------------------------------------------------------------


def test_no_server_header_and_no_access_log(server: Gunicorn) -> None:
    agent = "Mozilla/5.0 probe-" + secrets.token_hex(6)
    referrer = "http://referrer-" + secrets.token_hex(6) + ".example/"
    browser = Browser(server.port, {"User-Agent": agent, "Referer": referrer})
    replies = [browser.get(path) for path in ("/", "/report", "/login", "/no-such-page")]
    style = re.search(r'href="(/static/[^"]+\.css)"', replies[0].text)
    assert style is not None
    replies.append(browser.get(style[1]))
    replies.append(submit_report(browser, "headers", keep_codename="no"))
    replies.append(browser.post("/report", [("form_token", "wrong")]))
    assert [r.status for r in replies] == [200, 200, 200, 404, 200, 303, 400]
    for reply in replies:
        assert "Server" not in reply.headers, reply.headers["Server"]
        assert "X-Powered-By" not in reply.headers
        values = " ".join(reply.headers.values()).lower()
        assert "gunicorn" not in values and "werkzeug" not in values

    assert not (server.home / ".gunicorn").exists()  # no control socket
    log = server.log()
    for needle in (agent, referrer, '"GET ', '"POST ', "/report", "HTTP/1.1", f"{HOST} - "):
        assert needle not in log
