"""``blagh backup`` / ``restore`` and ``blagh workstation backup`` / ``restore`` (blagh/backup.py,
blagh/cli/backup.py), with real components: a real ``blagh serve`` taking reports while the
backup runs, real SQLCipher files, backup files damaged byte by byte in the test."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from form_browser import Upload
from gunicorn_helpers import BLAGH, Browser, Gunicorn, make_data_dir, submit_report
from pickup_helpers import add_report, make_server
from workstation_helpers import PASSPHRASE, Pickup, imported_vault, make_analyst, open_vault

from blagh.backup import MAGIC, _header
from blagh.cli import cli
from blagh.payloads import decode_document, split_attachment
from crypto.envelope import open_envelope, seal
from crypto.keys import AnalystKey, ServerSigningKey, generate_analyst_key, seal_key_file
from source_interface.store import Store

CHEAP = {"opslimit": 1, "memlimit": 8 * 1024 * 1024}
BACKUP_PASSPHRASE = "a long backup passphrase for tests"  # noqa: S105


class BackupKey:
    """A key made for backups: its key file, passphrase file and public line."""

    def __init__(self, folder: Path, name: str = "backup") -> None:
        self.key = generate_analyst_key()
        self.file = folder / f"{name}.key"
        self.file.write_bytes(seal_key_file(self.key, BACKUP_PASSPHRASE, **CHEAP))
        self.passphrase_file = folder / f"{name}.pass"
        self.passphrase_file.write_text(BACKUP_PASSPHRASE + "\n", "utf-8")
        self.line = self.key.public().to_line()

    def file_line(self) -> str:
        """The public line in a file of its own: ``--to-key`` takes either."""
        path = self.file.with_suffix(".pub")
        path.write_text(self.line + "\n", "utf-8")
        return str(path)

    def restore_args(self) -> list[str]:
        return ["--key-file", str(self.file), "--passphrase-file", str(self.passphrase_file)]


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], prog_name="blagh")


def _key(data: Path) -> bytes:
    return bytes.fromhex((data / "db.key").read_text("ascii"))


def _opened_reports(data: Path, analyst: AnalystKey) -> dict[str, list[bytes]]:
    """Every report of the store in ``data``, by description, with its files' contents: every
    item opened with the analyst's key (an item that does not open fails the test)."""
    store = Store(data / "store", _key(data))
    try:
        with store.index.transaction() as db:
            rows = db.execute("SELECT source_id, id FROM reports").fetchall()
        found: dict[str, list[bytes]] = {}
        for source_id, report_id in rows:
            report = store.index.report(source_id, report_id)
            assert report is not None
            description, files = "", []
            for item in report.items:
                plain = open_envelope(store.read_blob(item.blob), [analyst.encryption_secret])
                if item.kind == "fields":
                    description = decode_document(plain, "report")["description"]
                elif item.kind == "file":
                    files.append(split_attachment(plain)[1])
            found[description] = files
        assert store.blobs.names() == store.index.blob_names()
    finally:
        store.close()
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the server, live -------------------------------------------------------------------------


def test_a_backup_taken_while_reports_stream_in_restores_every_acknowledged_one(
    tmp_path: Path,
) -> None:
    analyst = generate_analyst_key()
    backup_key = BackupKey(tmp_path)
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=2)
    server = Gunicorn(data_dir, tmp_path, workers=2)
    server.start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    reached = threading.Condition(lock)
    stop = threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        number = 0
        try:
            while not stop.is_set():
                number += 1
                description = f"report number {number}"
                content = f"file of {description}".encode() * 200
                reply = submit_report(
                    Browser(server.port),
                    description,
                    [Upload("evidence.txt", content, "text/plain")],
                    keep_codename="no",
                )
                assert reply.status == 303, reply.status
                with reached:
                    acknowledged.append(description)
                    reached.notify_all()
        except BaseException as error:
            errors.append(error)
            with reached:
                reached.notify_all()

    def wait_for(count: int) -> None:
        with reached:
            assert reached.wait_for(lambda: len(acknowledged) >= count or errors, timeout=120)
        assert not errors, errors

    submitter = threading.Thread(target=stream)
    submitter.start()
    out = tmp_path / "backups" / "server.blagh-backup"
    out.parent.mkdir()
    try:
        wait_for(5)
        with lock:
            before = list(acknowledged)
        backup = subprocess.run(
            [
                BLAGH,
                "backup",
                "--data-dir",
                data_dir.path,
                "--out",
                out,
                "--to-key",
                backup_key.line,
                "--include-keys",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert backup.returncode == 0, backup.stderr
        wait_for(len(acknowledged) + 3)  # the server went on taking reports
    finally:
        stop.set()
        submitter.join()
        server.stop()
    assert not errors, errors
    assert _mode(out) == 0o600
    assert os.listdir(out.parent) == [out.name]  # no temporary file left beside it

    restored = tmp_path / "restored"
    result = run("restore", "--from", out, "--data-dir", restored, *backup_key.restore_args())
    assert result.exit_code == 0, result.output
    assert _mode(restored) == 0o700
    reports = _opened_reports(restored, analyst)
    missing = [d for d in before if d not in reports]
    assert missing == []
    for description, files in reports.items():
        assert files == [f"file of {description}".encode() * 200]
    assert (restored / "db.key").read_bytes() == data_dir.db_key_file.read_bytes()


# --- the server, offline: what is in a backup, and refusals -------------------------------------


def _server_with_reports(tmp_path: Path) -> tuple[Path, AnalystKey]:
    server = make_server(tmp_path)
    add_report(server, "first report", files=2)
    add_report(server, "second report", files=0)
    server.close()
    return server.data_dir.path, server.analyst


def test_a_backup_without_keys_holds_only_referenced_envelopes_and_no_secret(
    tmp_path: Path,
) -> None:
    data, analyst = _server_with_reports(tmp_path)
    orphan = data / "store" / "blobs" / ("0" * 32)
    orphan.write_bytes(b"left by a crash")
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "nokeys.backup"
    result = run("backup", "--data-dir", data, "--out", out, "--to-key", backup_key.file_line())
    assert result.exit_code == 0, result.output
    assert "secret keys are not in it" in result.output
    restored = tmp_path / "restored"
    result = run("restore", "--from", out, "--data-dir", restored, *backup_key.restore_args())
    assert result.exit_code == 0, result.output
    present = {p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()}
    for secret in ("db.key", "instance.salt", "login-hash.key", "server-signing.key"):
        assert secret not in present
    assert f"store/blobs/{orphan.name}" not in present
    assert "config.toml" in present
    # The operator puts the keys back from their own copy: then everything opens.
    for secret in ("db.key", "instance.salt", "login-hash.key", "server-signing.key"):
        (restored / secret).write_bytes((data / secret).read_bytes())
        os.chmod(restored / secret, 0o600)
    reports = _opened_reports(restored, analyst)
    assert sorted(reports) == ["first report", "second report"]


def test_a_backup_never_replaces_a_file(tmp_path: Path) -> None:
    data, _ = _server_with_reports(tmp_path)
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "existing"
    out.write_bytes(b"keep me")
    result = run("backup", "--data-dir", data, "--out", out, "--to-key", backup_key.line)
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert out.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == sorted(["data", "existing", "backup.key", "backup.pass"])


def test_a_backup_into_a_missing_folder_says_so_in_the_operators_words(tmp_path: Path) -> None:
    data, _ = _server_with_reports(tmp_path)
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "no such folder" / "x.backup"
    result = run("backup", "--data-dir", data, "--out", out, "--to-key", backup_key.line)
    assert result.exit_code == 1
    assert result.output == (
        f"blagh: error: {out.parent} does not exist; create it first or choose another --out\n"
    )


def _flip(offset: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset(len(data))] ^= 0x01
        path.write_bytes(bytes(data))

    return damage


def _truncate(keep: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: keep(len(data))])

    return damage


DAMAGE = {
    "first byte flipped": _flip(lambda n: 0),
    "a header byte flipped": _flip(lambda n: 40),
    "a middle byte flipped": _flip(lambda n: n // 2),
    "the last byte flipped": _flip(lambda n: n - 1),
    "one byte cut off": _truncate(lambda n: n - 1),
    "cut in half": _truncate(lambda n: n // 2),
    "a byte added": lambda path: path.write_bytes(path.read_bytes() + b"\0"),
}


@pytest.fixture
def server_backup(tmp_path: Path) -> tuple[Path, BackupKey]:
    data, _ = _server_with_reports(tmp_path)
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "server.backup"
    result = run(
        "backup", "--data-dir", data, "--out", out, "--to-key", backup_key.line, "--include-keys"
    )
    assert result.exit_code == 0, result.output
    return out, backup_key


def _assert_untouched(target: Path, before: list[str] | None) -> None:
    if before is None:
        assert not target.exists()
    else:
        assert sorted(os.listdir(target)) == before
    assert not [p for p in os.listdir(target.parent) if ".restore-" in p]


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_backup_is_refused_whole(
    tmp_path: Path, server_backup: tuple[Path, BackupKey], damage: Callable[[Path], None]
) -> None:
    out, backup_key = server_backup
    damage(out)
    for target, before in ((tmp_path / "new", None), (tmp_path / "empty", [])):
        if before is not None:
            target.mkdir()
        result = run("restore", "--from", out, "--data-dir", target, *backup_key.restore_args())
        assert result.exit_code == 1, result.output
        assert "damaged or cut short" in result.output
        assert "nothing was restored" in result.output
        _assert_untouched(target, before)


def test_a_backup_opened_with_another_key_is_refused(
    tmp_path: Path, server_backup: tuple[Path, BackupKey]
) -> None:
    out, _ = server_backup
    other = BackupKey(tmp_path, "other")
    target = tmp_path / "new"
    result = run("restore", "--from", out, "--data-dir", target, *other.restore_args())
    assert result.exit_code == 1
    assert "cannot be opened with this key: it was made for another key" in result.output
    _assert_untouched(target, None)


def test_a_restore_into_a_folder_that_holds_something_is_refused(
    tmp_path: Path, server_backup: tuple[Path, BackupKey]
) -> None:
    out, backup_key = server_backup
    target = tmp_path / "busy"
    target.mkdir()
    (target / "db.key").write_text("someone's key")
    result = run("restore", "--from", out, "--data-dir", target, *backup_key.restore_args())
    assert result.exit_code == 1
    assert "is not empty" in result.output
    _assert_untouched(target, ["db.key"])
    assert (target / "db.key").read_text() == "someone's key"


def test_a_server_backup_is_not_restored_as_a_vault(
    tmp_path: Path, server_backup: tuple[Path, BackupKey]
) -> None:
    out, backup_key = server_backup
    target = tmp_path / "vault"
    result = run(
        "workstation", "restore", "--from", out, "--vault", target, *backup_key.restore_args()
    )
    assert result.exit_code == 1
    assert "backup of a server folder, not of a workstation folder" in result.output
    _assert_untouched(target, None)


# --- the workstation --------------------------------------------------------------------------


def test_a_vault_is_backed_up_and_restored(tmp_path: Path) -> None:
    analyst = make_analyst(tmp_path)
    server_key = ServerSigningKey.generate()
    pickup = Pickup([analyst.key])
    source = pickup.source()
    report_id = pickup.report(
        source, description="kept", files=[(b"PNG" * 99, "a.png", "image/png")]
    )
    vault = imported_vault(tmp_path, analyst, server_key, pickup)
    orphan = vault / "blobs" / ("f" * 32)
    orphan.write_bytes(b"an unreferenced file")
    waiting = vault / "outbox" / "replies-2026-01-01-0a1b2c3d.bundle"
    waiting.write_bytes(b"a reply bundle not yet carried to the server")
    passphrase_file = tmp_path / "vault.pass"
    passphrase_file.write_text(PASSPHRASE, "utf-8")
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "vault.backup"
    result = run(
        "workstation", "backup", "--vault", vault, "--out", out, "--to-key", backup_key.line,
        "--passphrase-file", passphrase_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _mode(out) == 0o600

    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(out.read_bytes()[:-10])
    target = tmp_path / "restored"
    result = run(
        "workstation", "restore", "--from", damaged, "--vault", target, *backup_key.restore_args()
    )
    assert result.exit_code == 1
    assert "damaged or cut short" in result.output
    _assert_untouched(target, None)
    result = run("restore", "--from", out, "--data-dir", target, *backup_key.restore_args())
    assert result.exit_code == 1
    assert "backup of a workstation folder, not of a server folder" in result.output

    result = run(
        "workstation", "restore", "--from", out, "--vault", target, *backup_key.restore_args()
    )
    assert result.exit_code == 0, result.output
    assert not (target / "blobs" / orphan.name).exists()
    assert (target / "outbox" / waiting.name).read_bytes() == waiting.read_bytes()
    with open_vault(target) as restored:
        report = restored.report(report_id)
        assert report is not None
        assert report.description == "kept"
        (attachment,) = report.files
        assert b"".join(restored.attachment_chunks(attachment)) == b"PNG" * 99


# --- crafted files: anyone with the public line can seal one ------------------------------------


def _crafted(members: list[tuple[str, bytes]], listed: list[dict[str, object]]) -> bytes:
    body = bytearray(MAGIC)
    for name, data in members:
        body += _header(name, len(data)) + data
    manifest = {"format": "blagh-backup", "version": 1, "kind": "server", "day": "2026-01-01",
                "keys": False, "members": listed}  # fmt: skip
    encoded = json.dumps(manifest).encode()
    body += _header("MANIFEST.json", len(encoded)) + encoded
    return bytes(body)


def _entry(name: str, data: bytes) -> dict[str, object]:
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


CRAFTED = {
    "a name that climbs out": ([("../outside", b"x")], [_entry("../outside", b"x")]),
    "an absolute name": ([("/etc/x", b"x")], [_entry("/etc/x", b"x")]),
    "a member the manifest does not list": ([("config.toml", b"x")], []),
    "a member with another hash": ([("config.toml", b"x")], [_entry("config.toml", b"y")]),
    "a name that is also a folder": (
        [("store", b"x"), ("store/index.db", b"y")],
        [_entry("store", b"x"), _entry("store/index.db", b"y")],
    ),
}


@pytest.mark.parametrize("members, listed", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_backup_is_refused_and_writes_nothing_anywhere(
    tmp_path: Path, members: list[tuple[str, bytes]], listed: list[dict[str, object]]
) -> None:
    backup_key = BackupKey(tmp_path)
    out = tmp_path / "crafted.backup"
    out.write_bytes(seal(_crafted(members, listed), [backup_key.key.public().encryption]))
    work = tmp_path / "work"
    work.mkdir()
    target = work / "restored"
    result = run("restore", "--from", out, "--data-dir", target, *backup_key.restore_args())
    assert result.exit_code == 1, result.output
    assert "nothing was restored" in result.output or "not a backup Blagh can restore" in (
        result.output
    )
    assert os.listdir(work) == []
    assert not (tmp_path / "outside").exists()
