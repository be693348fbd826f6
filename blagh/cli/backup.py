"""``blagh backup`` / ``blagh restore`` (a server's data folder) and ``blagh workstation backup``
/ ``restore`` (a vault): what goes into a backup, taken consistently while the folder is in use.

The file format, its encryption and the all-or-nothing restore are :mod:`blagh.backup`'s.  What
is taken here (docs/admin/backup.md):

- server: a copy of the SQLCipher index made with SQLite's online backup API while ``blagh
  serve`` runs (one read transaction: a consistent point in time; the copy stays encrypted
  under the same key), then every blob that copy refers to, and only those; ``config.toml`` and
  the pickup clients' public keys; the secret keys (``db.key``, the codename salt, the login
  hash key, the server's signing key, the onion service keys) only with ``--include-keys``.
  Blobs are written before their row commits and deleted after it is gone, so every blob the
  copy names exists unless a deletion ran meanwhile: then the copy is taken again.
- workstation: the vault is opened (its lock keeps every other program out), its database
  copied the same way, with the attachment blobs it refers to, the key files, salt and keyring,
  and the reply bundles in ``outbox/`` not yet carried to the server (the database counts their
  replies as sent).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from blagh.backup import (
    BackupError,
    Member,
    describe,
    restore_backup,
    total_size,
    valid_name,
    write_backup,
)
from blagh.cli.workstation import _open_vault, _passphrase, _passphrase_option
from blagh.datadir import (
    CONFIG,
    DB_KEY,
    INSTANCE_SALT,
    LOGIN_HASH_KEY,
    ONION_DIR,
    SERVER_SIGNING_KEY,
    DataDir,
)
from crypto.errors import InvalidPublicKey, KeyFileError
from crypto.keys import ANALYST_PREFIX, AnalystKey, AnalystPublicKey, open_key_file

SERVER_KIND = "server"
WORKSTATION_KIND = "workstation"
STORE = "store"
INDEX = "store/index.db"
BLOBS = "store/blobs"
SECRET_FILES = (
    DB_KEY,
    INSTANCE_SALT,
    LOGIN_HASH_KEY,
    SERVER_SIGNING_KEY,
    f"{ONION_DIR}/source.key",
    f"{ONION_DIR}/pickup.key",
)
"""What ``--include-keys`` adds: whoever holds these can read the index, link codenames or
sign pickup bundles as the server."""
PUBLIC_FILES = (CONFIG, f"{ONION_DIR}/pickup-clients")
SNAPSHOT_ATTEMPTS = 5


class _RecipientType(click.ParamType[AnalystPublicKey, str]):
    """``--to-key``: a public key line, or a file holding one (``blagh key show`` prints it)."""

    name = "LINE|FILE"

    def convert(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> AnalystPublicKey:
        line = value
        if not value.startswith(ANALYST_PREFIX):
            try:
                line = Path(value).read_text("utf-8").strip().splitlines()[0]
            except (OSError, UnicodeDecodeError, IndexError):
                self.fail(f"{value} is neither a public key line nor a file holding one", param)
        try:
            return AnalystPublicKey.from_line(line)
        except InvalidPublicKey as error:
            self.fail(f"{error}; give the line `blagh key show` prints", param, ctx)


_to_key = click.option(
    "--to-key",
    "recipient",
    required=True,
    type=_RecipientType(),
    help="The public key line (or a file holding it) of the key the backup is sealed to: "
    "only that key's file and passphrase can restore it.",
)
_out = click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The backup file to write (0600); it must not exist.",
)
_from = click.option(
    "--from",
    "backup",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The backup file.",
)
_key_file = click.option(
    "--key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The key file (`blagh keygen`) of the key the backup was sealed to.",
)
_passphrase_file = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Read that key's passphrase from the first line of this file instead of asking.",
)


@contextmanager
def _bar(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (click draws it only on a terminal)."""
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@contextmanager
def _scratch(out: Path) -> Iterator[Path]:
    """A private folder beside ``out`` for the database copy (encrypted, like the original),
    removed afterwards: the same file system, and never a shared /tmp.  Checks ``out`` first,
    so that a wrong path is said before the copy is taken, in the operator's own words."""
    parent = out.absolute().parent
    if not parent.is_dir():
        raise BackupError(f"{parent} does not exist; create it first or choose another --out")
    if out.exists() or out.is_symlink():
        raise BackupError(
            f"{out} already exists; choose another --out (a backup never replaces a file)"
        )
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.absolute().parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write(
    out: Path, kind: str, members: Sequence[Member], recipient: AnalystPublicKey, keys: bool
) -> dict[str, Any]:
    with _bar(total_size(members), "Backing up") as progress:
        return write_backup(out, kind, members, recipient, keys=keys, progress=progress)


# --- the server ---------------------------------------------------------------------------------


@click.command(short_help="Back up a data folder, while blagh serve runs, to an encrypted file.")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The data folder made by `blagh init`.",
)
@_out
@_to_key
@click.option(
    "--include-keys",
    is_flag=True,
    help="Also back up the server's secret keys (database key, codename salt, login hash key, "
    "signing key, onion keys).  Without them the backup restores only beside a copy of them.",
)
def backup(data_dir: Path, out: Path, recipient: AnalystPublicKey, include_keys: bool) -> None:
    """Write FILE: the index (a consistent copy, taken while the server runs), every envelope
    it refers to, and the config, all sealed to the --to-key key.  Nothing in it is readable
    without that key's file and passphrase."""
    directory = DataDir(data_dir)
    key = bytes.fromhex(directory.read_db_key())
    with _scratch(out) as scratch:
        for _attempt in range(SNAPSHOT_ATTEMPTS):
            copy = scratch / "index.db"
            copy.unlink(missing_ok=True)
            blobs = _snapshot_index(data_dir / INDEX, key, copy)
            members = [Member(INDEX, copy)]
            members += [Member(f"{BLOBS}/{name}", data_dir / BLOBS / name) for name in blobs]
            names = PUBLIC_FILES + (SECRET_FILES if include_keys else ())
            members += [
                Member(name, data_dir / name) for name in names if (data_dir / name).exists()
            ]
            try:
                manifest = _write(out, SERVER_KIND, members, recipient, include_keys)
                break
            except FileNotFoundError:
                continue  # a blob was deleted after the copy was taken: take it again
        else:
            raise BackupError(
                f"envelopes in {data_dir} kept being deleted during the backup (retention or "
                "deletions running); try again later"
            )
    click.echo(f"Wrote {out} (0600): {describe(manifest)}.")
    click.echo(f"Sealed to the key with fingerprint {recipient.fingerprint()}.")
    if not include_keys:
        click.echo("The server's secret keys are not in it: keep a copy of them apart.")


def _snapshot_index(index: Path, key: bytes, dest: Path) -> list[str]:
    """Copy the live index to ``dest`` with SQLite's online backup API; return the blob names
    the copy refers to (its items and drafts)."""
    if not index.is_file():
        raise BackupError(f"{index} is missing; is this a data folder that blagh serve used?")
    # The server's extra: a transfer station has no SQLCipher.
    from source_interface.store.index import snapshot_file

    return snapshot_file(index, key, dest)


@click.command(short_help="Restore a data folder from a backup file into an empty folder.")
@_from
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to restore: a new or empty folder.",
)
@_key_file
@_passphrase_file
def restore(backup: Path, data_dir: Path, key_file: Path, passphrase_file: Path | None) -> None:
    """Check the backup FILE whole and restore it into the new or empty --data-dir.  A damaged
    or cut-short file, the wrong key or a workstation backup are refused, and then nothing is
    written there."""
    identity = _identity(key_file, passphrase_file)
    with _bar(backup.stat().st_size, "Restoring") as progress:
        manifest = restore_backup(
            backup, SERVER_KIND, data_dir, identity, _check_server, progress=progress
        )
    click.echo(f"Restored {data_dir}: {describe(manifest)}.")
    if not manifest.get("keys"):
        click.echo(
            f"The backup holds no keys: copy {', '.join(SECRET_FILES[:4])} (and the onion "
            f"keys) from your safe copy into {data_dir} (mode 0600) before blagh serve."
        )


def _check_server(folder: Path, manifest: dict[str, Any]) -> None:
    """The restored index opens with the restored key and every envelope it names is there."""
    (folder / BLOBS).mkdir(mode=0o700, parents=True, exist_ok=True)
    if not manifest.get("keys"):
        return
    from blagh.sqlcipher import DatabaseError  # as in _snapshot_index
    from source_interface.store.index import check_file

    try:
        key = bytes.fromhex(DataDir(folder).read_db_key())
        names, whole = check_file(folder / INDEX, key)
    except (DatabaseError, ValueError):
        raise BackupError(
            "the backup's index does not open with the backup's database key: it is not "
            "a consistent backup; nothing was restored"
        ) from None
    missing = [name for name in names if not (folder / BLOBS / name).is_file()]
    if missing or not whole:
        raise BackupError("the backup's index names envelopes it does not hold; nothing restored")


def _identity(key_file: Path, passphrase_file: Path | None) -> AnalystKey:
    try:
        return open_key_file(key_file.read_bytes(), _passphrase(passphrase_file))
    except KeyFileError:
        raise BackupError(
            f"could not open {key_file}: wrong passphrase or damaged key file"
        ) from None


# --- the workstation ----------------------------------------------------------------------------


VAULT_FILES = ("analyst.key", "vault.salt", "keyring.json")


@click.command("backup", short_help="Back up a vault to an encrypted file.")
@click.option(
    "--vault",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The vault folder made by `blagh workstation init`.",
)
@_out
@_to_key
@_passphrase_option
def workstation_backup(
    vault: Path, out: Path, recipient: AnalystPublicKey, passphrase_file: Path | None
) -> None:
    """Write FILE: the vault's database (copied while the vault is locked for this command),
    the attachments it refers to, its key files, salt and keyring, sealed to --to-key."""
    with _open_vault(vault, passphrase_file) as opened, _scratch(out) as scratch:
        copy = scratch / "vault.db"
        blobs = opened.snapshot(copy)
        members = [Member("vault.db", copy)]
        members += [Member(f"blobs/{name}", vault / "blobs" / name) for name in sorted(blobs)]
        members += [Member(name, vault / name) for name in VAULT_FILES if (vault / name).exists()]
        for folder in ("analysts", "outbox"):  # others' key files; reply bundles to carry
            if (vault / folder).is_dir():
                members += [
                    Member(f"{folder}/{path.name}", path)
                    for path in sorted((vault / folder).iterdir())
                    if path.is_file() and not path.is_symlink()
                    if valid_name(f"{folder}/{path.name}")
                ]
        manifest = _write(out, WORKSTATION_KIND, members, recipient, True)
    click.echo(f"Wrote {out} (0600): {describe(manifest)}.")
    click.echo(f"Sealed to the key with fingerprint {recipient.fingerprint()}.")


@click.command("restore", short_help="Restore a vault from a backup file into an empty folder.")
@_from
@click.option(
    "--vault",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Where to restore: a new or empty folder.",
)
@_key_file
@_passphrase_file
def workstation_restore(
    backup: Path, vault: Path, key_file: Path, passphrase_file: Path | None
) -> None:
    """Check the backup FILE whole and restore the vault into the new or empty --vault.  A
    damaged or cut-short file, the wrong key or a server backup are refused, and then nothing
    is written there."""
    identity = _identity(key_file, passphrase_file)
    with _bar(backup.stat().st_size, "Restoring") as progress:
        manifest = restore_backup(
            backup, WORKSTATION_KIND, vault, identity, _check_vault, progress=progress
        )
    click.echo(f"Restored the vault {vault}: {describe(manifest)}.")


def _check_vault(folder: Path, _manifest: dict[str, Any]) -> None:
    for name in ("vault.db", "analyst.key", "vault.salt"):
        if not (folder / name).is_file():
            raise BackupError(f"the backup holds no {name}: it is not a vault; nothing restored")
    for name in ("blobs", "outbox", "incoming"):
        (folder / name).mkdir(mode=0o700, exist_ok=True)
