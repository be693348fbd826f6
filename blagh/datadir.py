"""The server's data directory: the files ``blagh init`` creates and the server reads back.

Their names, sizes and permissions are fixed here only, so the CLI, the source interface and
its store agree on them.  Everything in it is secret or private: the directory is 0700 and each
file 0600, and the readers refuse a file others can read rather than trust a key that may have
leaked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blagh.config import render_config_file
from blagh.errors import SetupError
from blagh.files import fsync_directory, write_new_file
from crypto.codename import HASH_KEY_BYTES, SALT_BYTES
from crypto.keys import KEY_BYTES, AnalystPublicKey, ServerSigningKey, ServerVerifyKey

DB_KEY = "db.key"
"""The SQLCipher key: 32 random bytes written as 64 lowercase hex digits."""

INSTANCE_SALT = "instance.salt"
"""The salt of codename derivation: 16 random bytes, raw.  Changing it orphans every codename."""

LOGIN_HASH_KEY = "login-hash.key"
"""The key of the login verifiers' keyed hash: 32 random bytes, raw."""

SERVER_SIGNING_KEY = "server-signing.key"
"""The server's Ed25519 seed, 32 bytes, raw: it signs the pickup bundles analysts verify."""

CONFIG = "config.toml"
"""The configuration ``blagh init`` writes, pointing back at this directory."""

TOR_DIR = "tor"
"""The state of the tor that ``blagh serve`` starts (``[tor] mode`` launch or offline), 0700."""

ONION_DIR = "onion"
"""Onion service keys and state (docs/onion.md), 0700, made by ``blagh serve`` when needed:
``source.key`` and ``pickup.key`` (each service's secret key: its address), ``pickup-clients``
(the public keys of the clients authorised on the pickup service) and ``status.json`` (what a
running ``blagh serve`` published)."""

DB_KEY_BYTES = 32


@dataclass(frozen=True)
class DataDir:
    """A data directory at ``path``: where each file lives, how to create them, how to read them."""

    path: Path

    @property
    def db_key_file(self) -> Path:
        return self.path / DB_KEY

    @property
    def instance_salt_file(self) -> Path:
        return self.path / INSTANCE_SALT

    @property
    def login_hash_key_file(self) -> Path:
        return self.path / LOGIN_HASH_KEY

    @property
    def server_signing_key_file(self) -> Path:
        return self.path / SERVER_SIGNING_KEY

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def tor_dir(self) -> Path:
        return self.path / TOR_DIR

    @property
    def onion_dir(self) -> Path:
        return self.path / ONION_DIR

    @property
    def source_onion_key_file(self) -> Path:
        return self.onion_dir / "source.key"

    @property
    def pickup_onion_key_file(self) -> Path:
        return self.onion_dir / "pickup.key"

    @property
    def pickup_clients_file(self) -> Path:
        return self.onion_dir / "pickup-clients"

    @property
    def onion_status_file(self) -> Path:
        return self.onion_dir / "status.json"

    def create(self, analysts: Sequence[AnalystPublicKey] = ()) -> ServerVerifyKey:
        """Make the directory (0700) and its fresh keys and config (0600); return the server's
        public key, which analysts pin on their workstations.

        Refuses a directory that holds anything: overwriting a data directory's keys would make
        everything stored in it unreadable.  If creation fails half-way, what was created is
        removed again, so the command can simply be run again.
        """
        created_directory = self._make_directory()
        written: list[Path] = []
        try:
            signing_key = ServerSigningKey.generate()
            contents = {
                self.db_key_file: secrets.token_bytes(DB_KEY_BYTES).hex().encode("ascii"),
                self.instance_salt_file: secrets.token_bytes(SALT_BYTES),
                self.login_hash_key_file: secrets.token_bytes(HASH_KEY_BYTES),
                self.server_signing_key_file: signing_key.seed,
                self.config_file: render_config_file(data_dir=Path("."), analysts=analysts).encode(
                    "utf-8"
                ),
            }
            for path, data in contents.items():
                write_new_file(path, data)
                written.append(path)
            fsync_directory(self.path)
            if created_directory:
                fsync_directory(self.path.absolute().parent)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            if created_directory:
                with contextlib.suppress(OSError):
                    self.path.rmdir()
            raise
        return signing_key.public()

    def check_private(self) -> None:
        """Refuse a data folder that is missing, not a folder, or open to other users."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise SetupError(
                f"the data folder {self.path} does not exist; create it with "
                f"`blagh init --data-dir {self.path}`, or fix [instance] data_dir"
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise SetupError(f"{self.path} is not a folder; fix [instance] data_dir")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SetupError(
                f"the data folder {self.path} has mode {mode:04o}: other users can reach its "
                f"keys and database; run chmod 700 {self.path}"
            )

    def _make_directory(self) -> bool:
        """Create the directory, or accept an empty one; return whether it was created."""
        try:
            self.path.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            if not self.path.is_dir():
                raise SetupError(
                    f"{self.path} exists and is not a directory; choose another --data-dir"
                ) from None
            if any(self.path.iterdir()):
                raise SetupError(
                    f"{self.path} already exists and is not empty; init will not overwrite it. "
                    "Choose another --data-dir or remove it."
                ) from None
            created = False
        # mkdir's mode is narrowed by the umask, and an existing directory keeps its own.
        os.chmod(self.path, 0o700)
        return created

    def read_db_key(self) -> str:
        """Return the SQLCipher key as 64 hex digits, as ``PRAGMA key = "x'...'"`` takes it."""
        text = self._read_secret(self.db_key_file).decode("ascii", errors="replace").strip()
        if len(text) != 2 * DB_KEY_BYTES or not set(text) <= set("0123456789abcdef"):
            raise self._damaged(self.db_key_file, f"{2 * DB_KEY_BYTES} hex digits")
        return text

    def read_instance_salt(self) -> bytes:
        """Return the codename derivation salt."""
        return self._read_exact(self.instance_salt_file, SALT_BYTES)

    def read_login_hash_key(self) -> bytes:
        """Return the key of the login verifiers' keyed hash."""
        return self._read_exact(self.login_hash_key_file, HASH_KEY_BYTES)

    def read_server_signing_key(self) -> ServerSigningKey:
        """Return the server's bundle signing key."""
        return ServerSigningKey(seed=self._read_exact(self.server_signing_key_file, KEY_BYTES))

    def _read_exact(self, path: Path, size: int) -> bytes:
        data = self._read_secret(path)
        if len(data) != size:
            raise self._damaged(path, f"{size} bytes")
        return data

    def _read_secret(self, path: Path) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SetupError(
                f"{path} is missing; is {self.path} a data directory made by `blagh init`?"
            ) from None
        with os.fdopen(fd, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if mode & 0o077:
                raise SetupError(
                    f"{path} can be read or changed by other users (mode {mode:04o}); "
                    f"run chmod 600 {path}, and replace the key if someone else may have read it"
                )
            return file.read()

    @staticmethod
    def _damaged(path: Path, expected: str) -> SetupError:
        return SetupError(f"{path} is damaged: it should hold {expected}; restore it from backup")
