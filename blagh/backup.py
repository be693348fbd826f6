"""Backup files: a folder's chosen files in one envelope sealed to a key the operator names.

Shared by ``blagh backup`` (the server's data folder) and ``blagh workstation backup`` (a
vault); what goes in is their business (:mod:`blagh.cli.backup`), how it is written and read
back is this module's.  A backup file is one envelope (docs/envelope.md) sealed to one X25519
public key (an analyst's, or a key made with ``blagh keygen`` for backups only), so the file
can sit on any disk: without that key's file and passphrase it is noise.  Its plaintext::

    MAGIC
    member*          u16 name length | name (UTF-8) | u64 size | size bytes
    manifest member  named MANIFEST.json: format, version, kind, day, keys,
                     and every other member's name, size and SHA-256

A changed, missing or added byte anywhere fails the envelope's authentication; the manifest
then says what the folder must hold, and the restore checks each member against it.  Anyone
who has the public key can seal a file in this format, so the plaintext is read as untrusted:
names are checked (relative, no ``..``, a few characters), sizes are read before data.

Writing is atomic: a temporary file (0600) in the output's folder, fsynced, then linked to its
name (never over an existing file).  Restoring is whole or nothing: into a new folder beside the
target, renamed onto it only once everything checked out; on any failure that folder is removed
and the target is as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from blagh.errors import BlaghError
from blagh.files import fsync_directory
from crypto.envelope import EnvelopeWriter, open_stream
from crypto.errors import DecryptionError
from crypto.keys import AnalystKey, AnalystPublicKey

FORMAT = "blagh-backup"
VERSION = 1
MAGIC = b"BLAGH-BACKUP-1\n"
MANIFEST = "MANIFEST.json"
READ_SIZE = 1024 * 1024
MAX_NAME_BYTES = 255
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_HEAD = struct.Struct(">H")
_SIZE = struct.Struct(">Q")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*){0,3}")

Progress = Callable[[int], None]
"""Called with a number of bytes just handled (a progress bar's ``update``)."""


class BackupError(BlaghError):
    """A backup could not be written, or a backup file is refused."""


@dataclass(frozen=True)
class Member:
    """A file to put in a backup under ``name`` (a relative path with ``/``)."""

    name: str
    path: Path


# --- writing ----------------------------------------------------------------------------------


def write_backup(
    out: Path,
    kind: str,
    members: Sequence[Member],
    recipient: AnalystPublicKey,
    *,
    keys: bool,
    progress: Progress = lambda _n: None,
) -> dict[str, Any]:
    """Write ``members`` to the new file ``out``, sealed to ``recipient``; return the manifest.

    Refuses an ``out`` that exists.  A member that vanished while being read raises
    FileNotFoundError (the caller may take its snapshot again)."""
    names = [member.name for member in members]
    for name in names:
        _check_name(name)
    if len(set(names)) != len(names):
        raise ValueError("two backup members with one name")
    folder = out.absolute().parent
    temp = folder / f".{out.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            writer = EnvelopeWriter([recipient.encryption], file.write)
            writer.update(MAGIC)
            listed = []
            for member in members:
                size, digest = _write_member(writer, member, progress)
                listed.append({"name": member.name, "size": size, "sha256": digest})
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "kind": kind,
                "day": datetime.now(UTC).date().isoformat(),
                "keys": keys,
                "members": listed,
            }
            body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
            writer.update(_header(MANIFEST, len(body)) + body)
            writer.finish()
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, out)
        except FileExistsError:
            raise BackupError(
                f"{out} already exists; choose another --out (a backup never replaces a file)"
            ) from None
        fsync_directory(folder)
    finally:
        temp.unlink(missing_ok=True)
    return manifest


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a member: a relative path of at most four parts, each of
    letters, digits, ``_``, ``.`` and ``-``, not starting with a dot."""
    return name != MANIFEST and bool(_NAME.fullmatch(name)) and ".." not in name.split("/")


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise ValueError(f"not a backup member name: {name!r}")


def _header(name: str, size: int) -> bytes:
    encoded = name.encode("utf-8")
    return _HEAD.pack(len(encoded)) + encoded + _SIZE.pack(size)


def _write_member(writer: EnvelopeWriter, member: Member, progress: Progress) -> tuple[int, str]:
    fd = os.open(member.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        writer.update(_header(member.name, size))
        digest = hashlib.sha256()
        left = size
        while left:
            chunk = file.read(min(READ_SIZE, left))
            if not chunk:
                raise BackupError(f"{member.path} shrank while it was being backed up")
            digest.update(chunk)
            writer.update(chunk)
            left -= len(chunk)
            progress(len(chunk))
    return size, digest.hexdigest()


def total_size(members: Iterable[Member]) -> int:
    return sum(member.path.stat().st_size for member in members)


# --- restoring --------------------------------------------------------------------------------


def restore_backup(
    backup: Path,
    kind: str,
    target: Path,
    identity: AnalystKey,
    check: Callable[[Path, dict[str, Any]], None] = lambda _folder, _manifest: None,
    *,
    progress: Progress = lambda _n: None,
) -> dict[str, Any]:
    """Restore the backup file ``backup`` of ``kind`` into ``target`` (absent or an empty
    folder), opening it with ``identity``; return its manifest.

    Everything is written to a new folder beside ``target`` first: the envelope authenticated
    to its last byte, each member's size and SHA-256 matched with the manifest, then
    ``check(folder, manifest)`` (the caller's own test: the database opens...).  Only then is
    the folder renamed onto ``target``.  Any failure removes it and raises
    :class:`BackupError`; ``target`` is left as it was."""
    _check_target(target)
    parent = target.absolute().parent
    work = parent / f".{target.name}.restore-{secrets.token_hex(8)}"
    work.mkdir(mode=0o700)
    try:
        os.chmod(work, 0o700)
        with backup.open("rb") as file:
            try:
                manifest = _extract(file, work, identity, progress)
            except DecryptionError:
                raise BackupError(
                    f"{backup} cannot be opened with this key: it was made for another key, or "
                    "it is damaged or cut short (a changed or missing byte); nothing was restored"
                ) from None
        if manifest.get("kind") != kind:
            raise BackupError(
                f"{backup} is a backup of a {manifest.get('kind')!s:.40} folder, not of a "
                f"{kind} folder; use the matching restore command"
            )
        check(work, manifest)
        _sync_tree(work)
        _check_target(target)
        if target.exists():
            target.rmdir()  # empty, checked just above: the rename needs the name free
        os.rename(work, target)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BackupError(f"{target} exists and is not a folder; restore into an empty folder")
    if target.is_dir() and any(target.iterdir()):
        raise BackupError(
            f"{target} is not empty; restore only into a new or empty folder, so that nothing "
            "there is overwritten"
        )
    if not target.absolute().parent.is_dir():
        raise BackupError(f"{target.absolute().parent} does not exist; create it first")


class _Plaintext:
    """The authenticated plaintext of an envelope, read by exact sizes."""

    def __init__(self, file: BinaryIO, identity: AnalystKey, progress: Progress) -> None:
        def chunks() -> Iterator[bytes]:
            while chunk := file.read(READ_SIZE):
                progress(len(chunk))
                yield chunk

        self._pieces = open_stream(chunks(), [identity.encryption_secret])
        self._buffer = bytearray()

    def read_upto(self, size: int) -> bytes:
        while not self._buffer:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._buffer += piece
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_exact(self, size: int) -> bytes:
        parts = []
        while size:
            part = self.read_upto(size)
            if not part:
                raise _Malformed("it ends in the middle of a member")
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def at_end(self) -> bool:
        """Whether nothing follows (reading to the end authenticates the last chunk)."""
        return not self.read_upto(1)


class _Malformed(Exception):
    pass


def _extract(
    file: BinaryIO, work: Path, identity: AnalystKey, progress: Progress
) -> dict[str, Any]:
    plain = _Plaintext(file, identity, progress)
    try:
        if plain.read_exact(len(MAGIC)) != MAGIC:
            raise _Malformed("it is not a Blagh backup")
        found: dict[str, tuple[int, str]] = {}
        while True:
            (length,) = _HEAD.unpack(plain.read_exact(_HEAD.size))
            if not 0 < length <= MAX_NAME_BYTES:
                raise _Malformed("a member has no name or too long a name")
            name = plain.read_exact(length).decode("utf-8", errors="replace")
            (size,) = _SIZE.unpack(plain.read_exact(_SIZE.size))
            if name == MANIFEST:
                if size > MAX_MANIFEST_BYTES:
                    raise _Malformed("its manifest is too large")
                manifest = _parse_manifest(plain.read_exact(size))
                if not plain.at_end():
                    raise _Malformed("something follows its manifest")
                break
            try:
                _check_name(name)
            except ValueError:
                raise _Malformed("a member's name is not one a backup holds") from None
            if name in found:
                raise _Malformed("a member's name is not one a backup holds")
            found[name] = _extract_member(plain, work, name, size)
    except _Malformed as error:
        raise BackupError(f"this is not a backup Blagh can restore: {error}") from None
    listed = {m["name"]: (m["size"], m["sha256"]) for m in manifest["members"]}
    if listed != found:
        raise BackupError(
            "the backup's members do not match its manifest (sizes or SHA-256): it is damaged; "
            "nothing was restored"
        )
    return manifest


def _parse_manifest(body: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(body)
        valid = (
            isinstance(manifest, dict)
            and manifest.get("format") == FORMAT
            and isinstance(manifest.get("members"), list)
            and all(
                isinstance(m, dict)
                and isinstance(m.get("name"), str)
                and isinstance(m.get("size"), int)
                and isinstance(m.get("sha256"), str)
                for m in manifest["members"]
            )
        )
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise _Malformed("its manifest is malformed")
    if manifest.get("version") != VERSION:
        raise _Malformed(f"it is of format version {manifest.get('version')!s:.20}, not {VERSION}")
    return dict(manifest)


def _extract_member(plain: _Plaintext, work: Path, name: str, size: int) -> tuple[int, str]:
    path = work.joinpath(*name.split("/"))
    folder = path.parent
    for step in reversed([folder, *folder.parents]):
        if step == work or work not in step.parents:
            continue
        if not step.exists():
            step.mkdir(mode=0o700)
        elif not step.is_dir() or step.is_symlink():
            raise _Malformed("a member's name is also another member's folder")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except (FileExistsError, IsADirectoryError):
        raise _Malformed("a member's name is also another member's folder") from None
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        left = size
        while left:
            chunk = plain.read_upto(min(left, READ_SIZE))
            if not chunk:
                raise _Malformed("it ends in the middle of a member")
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return size, digest.hexdigest()


def _sync_tree(root: Path) -> None:
    """fsync every file and folder restored, deepest first, so the rename commits them all."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(folder))


def describe(manifest: dict[str, Any]) -> str:
    """One line about a backup's contents, for the operator."""
    members = manifest["members"]
    size = sum(m["size"] for m in members)
    keys = "with keys" if manifest.get("keys") else "without keys"
    return f"{len(members)} files, {size} bytes, {keys}, made {manifest.get('day')}"
