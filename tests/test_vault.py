"""The analyst's vault on its own: its key, its files, unlocking it, and `workstation init`.

Everything is real: SQLCipher, and argon2id on key files sealed at the lowest accepted cost.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    make_analyst,
    make_vault,
    open_vault,
    sqlite_is_encrypted,
)

from blagh.cli import cli
from crypto.keys import VAULT_SALT_BYTES, AnalystKey, ServerSigningKey, vault_key
from journalist_interface.errors import VaultError, WrongPassphrase
from journalist_interface.vault import DB_FILE, Vault, VaultPaths, create_vault

SERVER = ServerSigningKey.generate()


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], prog_name="blagh")


# --- the key derivation ------------------------------------------------------------------------


def test_vault_key_matches_the_documented_vector() -> None:
    key = AnalystKey(encryption_secret=bytes(32), signing_seed=bytes(range(32)))
    assert vault_key(key, bytes(range(16))).hex() == (
        "c22e296e6d20f83770777c227be18ff2703e7ad08b0256823d3eb3c0a744d46a"
    )


def test_vault_key_depends_on_the_encryption_secret_and_the_salt_only() -> None:
    key = AnalystKey(encryption_secret=bytes(32), signing_seed=bytes(32))
    other_seed = AnalystKey(encryption_secret=bytes(32), signing_seed=bytes([1]) * 32)
    other_secret = AnalystKey(encryption_secret=bytes([1]) * 32, signing_seed=bytes(32))
    salt = bytes(VAULT_SALT_BYTES)
    assert len(vault_key(key, salt)) == 32
    assert vault_key(key, salt) == vault_key(other_seed, salt)
    assert vault_key(key, salt) != vault_key(other_secret, salt)
    assert vault_key(key, salt) != vault_key(key, bytes([1]) * VAULT_SALT_BYTES)
    with pytest.raises(ValueError, match="16 bytes"):
        vault_key(key, bytes(15))


# --- creating ----------------------------------------------------------------------------------


def test_a_new_vault_is_private_encrypted_and_pins_the_server_key(
    tmp_path: Path, analyst: Analyst
) -> None:
    path = make_vault(tmp_path, analyst, SERVER)
    paths = VaultPaths(path)
    assert mode(path) == 0o700
    assert mode(paths.key_file) == mode(paths.salt_file) == 0o600
    assert paths.key_file.read_bytes() == analyst.key_file.read_bytes()
    assert len(paths.salt_file.read_bytes()) == VAULT_SALT_BYTES
    assert sqlite_is_encrypted(paths.db_file)
    with open_vault(path) as vault:
        assert vault.server_key() == SERVER.public()
        assert vault.key == analyst.key
        assert vault.inbox() == []
        assert mode(paths.blobs) == 0o700


def test_the_vault_database_files_are_private_whatever_the_umask(
    tmp_path: Path, analyst: Analyst
) -> None:
    """SQLite would make vault.db, and its -wal and -shm, 0644 less the umask: 0600 here."""
    umask = os.umask(0o022)
    try:
        path = make_vault(tmp_path, analyst, SERVER)
        paths = VaultPaths(path)
        with open_vault(path) as vault:
            vault.inbox()
            files = [paths.db_file.with_name(DB_FILE + s) for s in ("", "-wal", "-shm")]
            assert [mode(f) for f in files] == [0o600] * 3
    finally:
        os.umask(umask)


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path, analyst: Analyst) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault" / "notes.txt").write_text("mine")
    with pytest.raises(VaultError, match="not empty"):
        create_vault(tmp_path / "vault", analyst.key_file, SERVER.public(), PASSPHRASE)
    assert [p.name for p in (tmp_path / "vault").iterdir()] == ["notes.txt"]


def test_init_with_a_wrong_passphrase_makes_nothing(tmp_path: Path, analyst: Analyst) -> None:
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        create_vault(tmp_path / "vault", analyst.key_file, SERVER.public(), "not it")
    assert not (tmp_path / "vault").exists()


# --- opening -----------------------------------------------------------------------------------


def test_a_wrong_passphrase_opens_nothing_and_says_so(tmp_path: Path, analyst: Analyst) -> None:
    path = make_vault(tmp_path, analyst, SERVER)
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with pytest.raises(WrongPassphrase) as raised:
        Vault.open(path, PASSPHRASE + " ")
    assert str(raised.value).startswith("wrong passphrase: nothing was opened")
    assert PASSPHRASE not in str(raised.value)
    # Not even the lock was taken, nor any file touched.
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before
    assert not VaultPaths(path).lock_file.exists()


def test_one_process_at_a_time(tmp_path: Path, analyst: Analyst) -> None:
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path), pytest.raises(VaultError, match="open in another program"):
        open_vault(path)
    open_vault(path).close()  # released on close


def test_another_analysts_key_file_does_not_open_the_database(
    tmp_path: Path, analyst: Analyst
) -> None:
    path = make_vault(tmp_path, analyst, SERVER)
    other = make_analyst(tmp_path, "other")
    VaultPaths(path).key_file.write_bytes(other.key_file.read_bytes())
    with pytest.raises(VaultError, match="cannot be opened with this analyst's key"):
        open_vault(path)


def test_a_folder_that_is_not_a_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="is not a vault"):
        open_vault(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- blagh workstation init --------------------------------------------------------------------


def test_workstation_init_command(tmp_path: Path, analyst: Analyst) -> None:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    vault = tmp_path / "vault"
    result = run(
        "workstation", "init", "--vault", vault, "--key-file", analyst.key_file,
        "--server-key", SERVER.public().to_line(), "--passphrase-file", passphrase_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Pinned server key fingerprint: {SERVER.public().fingerprint()}" in result.stdout
    assert analyst.key.public().fingerprint() in result.stdout
    open_vault(vault).close()


def test_workstation_init_wrong_passphrase_is_one_line(tmp_path: Path, analyst: Analyst) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "workstation", "init", "--vault", str(tmp_path / "vault"),
            "--key-file", str(analyst.key_file), "--server-key", SERVER.public().to_line(),
        ],
        input="not the passphrase\n",
        prog_name="blagh",
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("blagh: error: wrong passphrase")
    assert "Traceback" not in result.output
    assert not (tmp_path / "vault").exists()


def test_workstation_init_refuses_a_damaged_server_line(tmp_path: Path, analyst: Analyst) -> None:
    line = SERVER.public().to_line()[:-2]
    result = run(
        "workstation", "init", "--vault", tmp_path / "vault",
        "--key-file", analyst.key_file, "--server-key", line,
    )  # fmt: skip
    assert result.exit_code == 2
    (error,) = result.stderr.splitlines()
    assert error.startswith("blagh: error: ")
    assert "copy the whole line that `blagh init` printed" in error
