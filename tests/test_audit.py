"""The audit log: append-only, hash-chained; an edited or removed entry is detected."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlcipher3
from click.testing import CliRunner
from workstation_helpers import PASSPHRASE, make_analyst, make_vault, open_vault

from blagh.cli import cli
from crypto.keys import ServerSigningKey
from journalist_interface import audit
from journalist_interface.vault import Vault

REPORT = "ab" * 16


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return make_vault(tmp_path, make_analyst(tmp_path), ServerSigningKey.generate())


def _fill(vault: Vault) -> None:
    audit.record(vault, "alice", "view", report=REPORT)
    audit.record(vault, "alice", "status", report=REPORT, status="closed", reason="done")
    audit.record(vault, "bob", "export", report=REPORT, sha256="00" * 32)
    audit.record(vault, "bob", "view", report="cd" * 16)


def _raw(vault: Vault, *statements: str) -> None:
    """Change the log behind Blagh's back: drop the triggers, run SQL, put them back."""
    with vault.transaction() as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        for statement in statements:
            db.execute(statement)
        for statement in audit.SCHEMA[1:]:
            db.execute(statement)


def test_an_empty_log_verifies(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        check = audit.verify(vault)
        assert check.ok and check.entries == 0
        assert audit.head(vault) == f"0:{audit.GENESIS}"


def test_entries_chain_and_verify(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        check = audit.verify(vault)
        assert check.ok, check.problems
        assert check.entries == 4
        found = audit.entries(vault)
        assert [e.seq for e in found] == [1, 2, 3, 4]
        assert found[0].prev == audit.GENESIS
        assert all(b.prev == a.hash for a, b in itertools.pairwise(found))
        assert audit.head(vault) == f"4:{found[-1].hash}"
        assert [e.event for e in audit.entries(vault, report=REPORT)] == [
            "view",
            "status",
            "export",
        ]
        assert [e.analyst for e in audit.entries(vault, events=["view"])] == ["alice", "bob"]
        assert found[1].fields == {"report": REPORT, "status": "closed", "reason": "done"}
        assert found[0].at.endswith("Z") and "T" in found[0].at


def test_the_log_refuses_update_and_delete(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        for statement in ("UPDATE audit SET analyst = 'mallory'", "DELETE FROM audit"):
            with (
                pytest.raises(sqlcipher3.dbapi2.Error, match="append-only"),
                vault.transaction() as db,
            ):
                db.execute(statement)
        assert audit.verify(vault).ok


def test_an_edited_entry_is_detected(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        _raw(vault, "UPDATE audit SET analyst = 'mallory' WHERE seq = 2")
        check = audit.verify(vault)
        assert not check.ok
        assert "entry 2 was edited" in check.problems[0]


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        entry = audit.entries(vault)[1]
        forged = audit.Entry(**{**entry.__dict__, "analyst": "mallory"})
        digest = audit.entry_hash(forged.body())
        forge = f"UPDATE audit SET analyst = 'mallory', hash = '{digest}' WHERE seq = 2"  # noqa: S608
        _raw(vault, forge)
        check = audit.verify(vault)
        assert any("entry 3 does not follow" in problem for problem in check.problems)


def test_an_edited_detail_is_detected(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        _raw(vault, """UPDATE audit SET fields = replace(fields, 'closed', 'new') WHERE seq = 2""")
        assert "entry 2 was edited" in audit.verify(vault).problems[0]


def test_a_removed_entry_is_detected(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        _raw(vault, "DELETE FROM audit WHERE seq = 2")
        problems = audit.verify(vault).problems
        assert "entries 2 to 2 were removed" in problems[0]
        assert any("entry 3 does not follow" in problem for problem in problems)


def test_removed_first_and_last_entries_are_detected(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        _raw(vault, "DELETE FROM audit WHERE seq = 1")
        assert not audit.verify(vault).ok
    with open_vault(vault_path) as vault:
        _raw(vault, "DELETE FROM audit WHERE seq = 4")
        problems = audit.verify(vault).problems
        assert any("newest entries were removed" in problem for problem in problems)


def test_a_removed_log_or_trigger_is_detected(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        _fill(vault)
        with vault.transaction() as db:
            db.execute("DROP TRIGGER audit_no_delete")
        assert "append-only" in audit.verify(vault).problems[0]
        with vault.transaction() as db:
            db.execute("DROP TABLE audit")
        assert "removed" in audit.verify(vault).problems[0]


def test_bad_entries_are_refused(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        with pytest.raises(ValueError):
            audit.record(vault, "alice", "View; DROP")
        with pytest.raises(ValueError):
            audit.record(vault, " ", "view")
        with pytest.raises(ValueError):
            audit.record(vault, "alice", "view", score=1.5)
        assert audit.entries(vault) == []


def test_append_joins_the_callers_transaction(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        with pytest.raises(RuntimeError), vault.transaction() as db:
            audit.append(db, "alice", "purge", {"report": REPORT})
            raise RuntimeError
        assert audit.entries(vault) == []
        assert audit.verify(vault).ok


def test_cli_audit_verify(vault_path: Path, tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    args = ["workstation", "audit", "verify", "--vault", str(vault_path)]
    args += ["--passphrase-file", str(passphrase)]
    with open_vault(vault_path) as vault:
        _fill(vault)
    runner = CliRunner()
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "4 entries" in result.output and "intact" in result.output
    shown = runner.invoke(
        cli,
        [*args[:2], "show", *args[3:], "--report", REPORT],
    )
    assert shown.exit_code == 0, shown.output
    assert len(shown.output.strip().splitlines()) == 3
    with open_vault(vault_path) as vault:
        _raw(vault, "DELETE FROM audit WHERE seq = 3")
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "entries 3 to 3 were removed" in result.output
