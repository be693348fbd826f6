"""The data directory: creation, safe writes, and the readers the server will use."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import blagh.datadir
from blagh.datadir import DataDir
from blagh.errors import SetupError
from blagh.files import write_new_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    directory = DataDir(tmp_path / "srv")
    directory.create()
    return directory


@pytest.fixture
def strange_umask() -> Iterator[None]:
    previous = os.umask(0o277)  # even the owner's write bit is masked
    try:
        yield
    finally:
        os.umask(previous)


def test_readers_return_what_create_wrote(data_dir: DataDir) -> None:
    db_key = data_dir.read_db_key()
    assert len(db_key) == 64
    assert db_key == data_dir.db_key_file.read_text()
    assert len(data_dir.read_instance_salt()) == 16
    assert len(data_dir.read_login_hash_key()) == 32
    assert data_dir.read_server_signing_key().seed == data_dir.server_signing_key_file.read_bytes()


def test_modes_do_not_depend_on_the_umask(tmp_path: Path, strange_umask: None) -> None:
    directory = DataDir(tmp_path / "srv")
    directory.create()
    assert mode(directory.path) == 0o700
    for path in directory.path.iterdir():
        assert mode(path) == 0o600, path


def test_readers_refuse_files_others_can_read(data_dir: DataDir) -> None:
    data_dir.instance_salt_file.chmod(0o640)
    with pytest.raises(SetupError) as caught:
        data_dir.read_instance_salt()
    path = data_dir.instance_salt_file
    assert str(caught.value) == (
        f"{path} can be read or changed by other users (mode 0640); run chmod 600 {path}, "
        "and replace the key if someone else may have read it"
    )


def test_readers_refuse_damaged_and_missing_files(data_dir: DataDir) -> None:
    with data_dir.login_hash_key_file.open("ab") as file:
        file.write(b"\n")
    with pytest.raises(SetupError, match=r"login-hash\.key is damaged: it should hold 32 bytes"):
        data_dir.read_login_hash_key()
    data_dir.db_key_file.write_text("not hex")
    with pytest.raises(SetupError, match=r"db\.key is damaged: it should hold 64 hex digits"):
        data_dir.read_db_key()
    data_dir.server_signing_key_file.unlink()
    with pytest.raises(SetupError, match=r"server-signing\.key is missing; is .* a data directory"):
        data_dir.read_server_signing_key()


def test_a_failed_create_removes_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full_at_config(path: Path, data: bytes, mode: int = 0o600) -> None:
        if path.name == "config.toml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_new_file(path, data, mode)

    monkeypatch.setattr(blagh.datadir, "write_new_file", disk_full_at_config)
    created = DataDir(tmp_path / "new")
    with pytest.raises(OSError, match="No space left"):
        created.create()
    assert not created.path.exists()

    existing = DataDir(tmp_path / "existing")
    existing.path.mkdir()
    with pytest.raises(OSError, match="No space left"):
        existing.create()
    assert existing.path.is_dir()
    assert list(existing.path.iterdir()) == []


def test_write_new_file_never_replaces_or_follows(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for path in (target, link, dangling):
        with pytest.raises(FileExistsError):
            write_new_file(path, b"secret")
    assert target.read_bytes() == b"keep"
    assert not (tmp_path / "nowhere").exists()
