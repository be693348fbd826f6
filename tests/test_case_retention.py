"""Retention on the workstation: closed cases purged after a configurable time, every purge in
the audit log; open, recent or unsettled cases kept."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from workstation_helpers import PASSPHRASE, Analyst, Pickup, make_analyst, make_vault, open_vault

from blagh.cli import cli
from crypto.keys import ServerSigningKey
from journalist_interface import audit, cases, retention
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from journalist_interface.importer import import_bundle
from journalist_interface.replies import add_reply, make_reply_bundle
from journalist_interface.vault import Vault, today

SERVER = ServerSigningKey.generate()
TODAY = date.fromisoformat(today())


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    for number in range(3):
        source = bundle.source()
        report = bundle.report(
            source, description=f"case {number} findme", files=[(b"x" * 100, "a.txt", "text/plain")]
        )
        bundle.message(report, source, f"message {number}")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path) as vault:
        import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
        make_reply_bundle(vault, tmp_path / "acks.bundle")  # everything acknowledged
    return path


def ids(pickup: Pickup) -> list[str]:
    return [str(report["id"]) for report in pickup.reports]


def close(vault: Vault, report_id: str) -> None:
    cases.update(vault, report_id, status="closed", reason="handed to the police")


def count(vault: Vault, sql: str, *args: object) -> int:
    with vault.transaction() as db:
        return int(db.execute(sql, args).fetchone()[0])


def test_closed_cases_are_purged_after_their_time(vault_path: Path, pickup: Pickup) -> None:
    closed, still_open, _other = ids(pickup)
    with open_vault(vault_path) as vault:
        close(vault, closed)
        cases.add_note(vault, closed, "a note about it")
        blobs = [a.blob for a in vault.attachments(closed)]
        assert all(vault.blobs.path_of(blob).exists() for blob in blobs)
        assert retention.due(vault, 30, TODAY + timedelta(days=29)) == []
        assert retention.purge(vault, 30, on=TODAY + timedelta(days=29)).purged == ()
        assert vault.report_exists(closed)

        dry = retention.purge(vault, 30, on=TODAY + timedelta(days=30), dry_run=True)
        assert dry.purged == (closed,) and dry.files == 1
        assert vault.report_exists(closed)

        done = retention.purge(vault, 30, on=TODAY + timedelta(days=30))
        assert done.purged == (closed,) and done.files == 1 and done.waiting == ()
        assert not vault.report_exists(closed)
        assert vault.report_exists(still_open)
        assert vault.report(closed) is None
        assert count(vault, "SELECT count(*) FROM items WHERE report_id = ?", closed) == 0
        assert count(vault, "SELECT count(*) FROM notes") == 0
        assert count(vault, "SELECT count(*) FROM case_history WHERE report_num IS NULL") == 0
        assert count(vault, "SELECT count(*) FROM sources") == 2
        assert not any(vault.blobs.path_of(blob).exists() for blob in blobs)
        assert [r.id for r in vault.inbox("findme")] != []
        assert closed not in [r.id for r in vault.inbox("findme")]

        (entry,) = audit.entries(vault, events=["purge"])
        assert entry.fields["report"] == closed
        assert entry.fields["closed_on"] == TODAY.isoformat()
        assert entry.fields["days"] == 30 and entry.fields["files"] == 1
        assert entry.fields["items"] == 3
        assert audit.verify(vault).ok
        # the custody of the purged report stays in the log: closed, then purged
        events = [e.event for e in audit.entries(vault, report=closed)]
        assert events[-1] == "purge" and "status" in events


def test_a_reopened_case_is_kept(vault_path: Path, pickup: Pickup) -> None:
    report = ids(pickup)[0]
    with open_vault(vault_path) as vault:
        close(vault, report)
        cases.update(vault, report, status="in_progress")
        assert retention.purge(vault, 0, on=TODAY + timedelta(days=365)).purged == ()
        assert vault.report_exists(report)


def test_a_case_with_something_unsent_waits(vault_path: Path, pickup: Pickup) -> None:
    report = ids(pickup)[0]
    with open_vault(vault_path) as vault:
        add_reply(vault, report, "We have passed it on.")
        close(vault, report)
        done = retention.purge(vault, 0)
        assert done.purged == () and done.waiting == (report,)
        assert vault.report_exists(report)
        assert audit.entries(vault, events=["purge"]) == []
        make_reply_bundle(vault, vault_path.parent / "replies.bundle")
        assert retention.purge(vault, 0).purged == (report,)


def test_purge_command(vault_path: Path, pickup: Pickup, tmp_path: Path) -> None:
    report = ids(pickup)[1]
    with open_vault(vault_path) as vault:
        close(vault, report)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    args = ["workstation", "purge", "--vault", str(vault_path), "--passphrase-file"]
    args += [str(passphrase), "--closed-days", "0"]
    result = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would purge 1 closed case(s)" in result.output and report in result.output
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Purged 1 closed case(s) and 1 file(s)" in result.output
    with open_vault(vault_path) as vault:
        assert not vault.report_exists(report)
        assert [e.fields["report"] for e in audit.entries(vault, events=["purge"])] == [report]


def test_the_app_purges_once_a_day(vault_path: Path, pickup: Pickup) -> None:
    report = ids(pickup)[2]
    with open_vault(vault_path) as vault:
        close(vault, report)
    app = create_app(WorkstationConfig(vault=vault_path, purge_closed_after_days=0))
    try:
        client = app.test_client()
        assert client.get("/login").status_code == 200  # nobody logged in: nothing runs
        assert client.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
        assert client.get(f"/reports/{report}").status_code == 404
    finally:
        app.extensions["workstation"].sessions.close()
    with open_vault(vault_path) as vault:
        (entry,) = audit.entries(vault, events=["purge"])
        assert entry.analyst == retention.AUTOMATIC
        assert audit.verify(vault).ok


def test_no_purge_unless_configured(vault_path: Path, pickup: Pickup) -> None:
    report = ids(pickup)[2]
    with open_vault(vault_path) as vault:
        close(vault, report)
    app = create_app(WorkstationConfig(vault=vault_path))
    try:
        client = app.test_client()
        assert client.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
        assert client.get(f"/reports/{report}").status_code == 200
    finally:
        app.extensions["workstation"].sessions.close()
    with pytest.raises(ValueError):
        WorkstationConfig(vault=vault_path, purge_closed_after_days=-1)
