"""The vault's keyring: one database key that every analyst of the workstation can reach.

A vault made by ``blagh workstation init`` has one analyst, and its SQLCipher key is derived
from that analyst's key (``vault_key``: docs/keys.md).  When a second analyst is added, the
vault gets a keyring, ``keyring.json`` beside the database::

    {"format": "blagh-keyring", "version": 1,
     "analysts": {"alice": "analysts/alice.key", "bob": "analysts/bob.key"},
     "master": "<hex of an envelope>"}

``master`` is the database key sealed (docs/envelope.md) to every analyst's X25519 public key:
each analyst's key file (argon2id under their own passphrase) opens it, and so the database.
``analysts`` only says where each analyst's key file is; which key belongs to which account is
kept inside the database (table ``analysts``), so editing this file can deny a login but not
grant one.  The database key does not change when an analyst is added (it is sealed to one more
key); when an analyst is removed it does: a new random key, sealed to those who remain, and
the database re-encrypted under it (``PRAGMA rekey``).  The new keyring is written first as
``keyring.json.new``; opening tries it before the old one, so a crash in between never leaves a
vault nobody can open.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crypto.envelope import MAX_RECIPIENTS, open_envelope, seal
from crypto.errors import DecryptionError
from crypto.keys import AnalystKey, AnalystPublicKey, vault_key
from journalist_interface.errors import VaultError

KEYRING_FILE = "keyring.json"
KEY_DIR = "analysts"
FORMAT = "blagh-keyring"
MAX_ANALYSTS = MAX_RECIPIENTS
NAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
"""An analyst's account name: lower-case letters, digits and ``_ . -``, a letter first."""


def path(root: Path) -> Path:
    return root / KEYRING_FILE


def pending_path(root: Path) -> Path:
    return root / (KEYRING_FILE + ".new")


def read(file: Path) -> dict[str, Any] | None:
    """A keyring file's content, None if there is none; VaultError if it is damaged."""
    try:
        data = json.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise VaultError(f"{file} is damaged: it is not a Blagh keyring") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("analysts"), dict)
        or not isinstance(data.get("master"), str)
    ):
        raise VaultError(f"{file} is damaged: it is not a Blagh keyring")
    return data


def key_file(root: Path, name: str, legacy: Path) -> Path | None:
    """Where the key file of the analyst ``name`` is (``legacy``, the vault's first key file,
    for an empty name); None for a name the keyring does not list."""
    if not name:
        return legacy
    ring = read(path(root))
    if ring is None or NAME.fullmatch(name) is None:
        return None
    relative = ring["analysts"].get(name)
    if not isinstance(relative, str) or relative != f"{KEY_DIR}/{name}.key":
        return None
    return root / relative


def database_keys(root: Path, key: AnalystKey, salt: bytes) -> list[bytes]:
    """The database keys this analyst key can reach, to try in order: from a keyring being
    written, from the keyring, then the one derived from the key (a vault without keyring)."""
    found: list[bytes] = []
    for file in (pending_path(root), path(root)):
        ring = read(file)
        if ring is None:
            continue
        try:
            master = open_envelope(bytes.fromhex(ring["master"]), [key.encryption_secret])
        except (DecryptionError, ValueError):
            continue
        if len(master) == 32 and master not in found:
            found.append(master)
    found.append(vault_key(key, salt))
    return found


def write(root: Path, master: bytes, members: Sequence[tuple[str, AnalystPublicKey]]) -> Path:
    """Write the keyring for ``members`` (name, public key) to ``keyring.json.new``.

    The caller then applies it (re-encrypting the database if the key changed) and calls
    :func:`commit`.  Raises VaultError past the number of recipients an envelope can have.
    """
    if len(members) > MAX_RECIPIENTS:
        raise VaultError(f"a vault has at most {MAX_RECIPIENTS} analysts")
    data = {
        "format": FORMAT,
        "version": 1,
        "analysts": {name: f"{KEY_DIR}/{name}.key" for name, _public in members},
        "master": seal(master, [public.encryption for _name, public in members]).hex(),
    }
    target = pending_path(root)
    temporary = root / f".{KEYRING_FILE}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, target)
    return target


def commit(root: Path) -> None:
    """Make the keyring written by :func:`write` the vault's keyring."""
    os.replace(pending_path(root), path(root))
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
