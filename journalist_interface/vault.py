"""The analyst's vault: a folder holding the key file, a SQLCipher database and attachments.

::

    DIR/                mode 0700
      analyst.key       the analyst's key file (argon2id under the passphrase), copied at init
      vault.salt        16 random bytes: the salt of the database key (docs/keys.md, Vault key)
      vault.db          SQLCipher: decrypted reports, messages, replies, case notes, and the
                        pinned server key (inside, so that it cannot be swapped unnoticed)
      blobs/            attachments, still the envelopes the server made, opened on demand
      outbox/           reply bundles made by the app, to carry to the server
      incoming/         pickup bundles uploaded to the app, while they are imported
      vault.lock        held while a process has the vault open
      keyring.json      once there are several analysts: the database key sealed to each of
      analysts/         them, and their key files (keyring.py, docs/casework.md)

The passphrase opens the key file; the analyst's encryption secret and the salt give the
database key (:func:`crypto.keys.vault_key`), or open it in the keyring when the vault has
several analysts, so a wrong passphrase opens nothing at all.  One
process at a time opens a vault (``vault.lock``): the app while someone is logged in, or one
``blagh workstation`` command.

Timestamps are days, as on the server: the order of a conversation is kept by a position
counter local to the vault.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blagh.blobs import BlobFolder
from blagh.files import write_new_file
from blagh.payloads import MAX_ATTACHMENT_HEADER
from blagh.sqlcipher import DatabaseError, connect
from crypto.envelope import EnvelopeReader
from crypto.errors import DecryptionError, KeyFileError
from crypto.keys import (
    VAULT_SALT_BYTES,
    AnalystKey,
    AnalystPublicKey,
    ServerVerifyKey,
    open_key_file,
    vault_key,
)
from journalist_interface import keyring, schema
from journalist_interface.errors import VaultError, WrongPassphrase

KEY_FILE = "analyst.key"
SALT_FILE = "vault.salt"
DB_FILE = "vault.db"
BLOBS_DIR = "blobs"
OUTBOX_DIR = "outbox"
INCOMING_DIR = "incoming"
LOCK_FILE = "vault.lock"

SCHEMA_VERSION = 1
"""The version :data:`SCHEMA` makes; :mod:`journalist_interface.schema` upgrades it from there."""
_READ_SIZE = 1024 * 1024
CACHE_KIB = 128 * 1024
"""SQLite's page cache (decrypted pages): a vault of 100,000 reports is searched from memory."""
STATUSES = ("new", "triaged", "in_progress", "escalated", "closed")

SCHEMA = """
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pickups (
    id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    imported TEXT NOT NULL,
    items INTEGER NOT NULL,
    new_items INTEGER NOT NULL
);
CREATE TABLE sources (id TEXT PRIMARY KEY, public_key BLOB);
CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id),
    day TEXT NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    category TEXT NOT NULL DEFAULT '',
    danger INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    links TEXT NOT NULL DEFAULT '[]',
    platform TEXT NOT NULL DEFAULT '',
    seen_on TEXT,
    identity TEXT,
    attachments TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'in_progress', 'closed')),
    notes TEXT NOT NULL DEFAULT '',
    delete_asked TEXT,
    delete_bundle TEXT
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports(id),
    kind TEXT NOT NULL CHECK (kind IN ('fields', 'file', 'message', 'reply')),
    day TEXT NOT NULL,
    seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    text TEXT,
    attachments TEXT,
    blob TEXT UNIQUE,
    name TEXT,
    content_type TEXT,
    size INTEGER,
    unreadable INTEGER NOT NULL DEFAULT 0,
    pickup TEXT NOT NULL,
    ack_bundle TEXT
);
CREATE INDEX items_by_report ON items(report_id, position);
CREATE TABLE replies (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports(id),
    day TEXT NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    envelope BLOB NOT NULL,
    bundle TEXT
);
CREATE TABLE reply_bundles (
    id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    file TEXT NOT NULL,
    replies INTEGER NOT NULL,
    acknowledged INTEGER NOT NULL,
    deletions INTEGER NOT NULL
);
CREATE VIRTUAL TABLE search USING fts5(report_id UNINDEXED, body);
"""


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def new_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class VaultPaths:
    """Where each part of a vault lives."""

    root: Path

    @property
    def key_file(self) -> Path:
        return self.root / KEY_FILE

    @property
    def salt_file(self) -> Path:
        return self.root / SALT_FILE

    @property
    def db_file(self) -> Path:
        return self.root / DB_FILE

    @property
    def blobs(self) -> Path:
        return self.root / BLOBS_DIR

    @property
    def outbox(self) -> Path:
        return self.root / OUTBOX_DIR

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING_DIR

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE


# --- what the app shows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    name: str
    phone: str
    email: str


@dataclass(frozen=True)
class ReportSummary:
    """One line of the inbox."""

    id: str
    day: str
    received: bool
    category: str
    danger: bool
    platform: str
    status: str
    messages: int
    files: int
    delete_asked: bool


@dataclass(frozen=True)
class Attachment:
    """A file the reporter sent: its name and type as their browser claimed (untrusted)."""

    id: str
    day: str
    name: str
    content_type: str
    size: int
    blob: str


@dataclass(frozen=True)
class Entry:
    """One turn of a conversation: the reporter's message, or a reply.

    ``kind`` is ``message`` (from the reporter), ``reply`` (written in this vault),
    ``analyst_reply`` (an analyst's reply that came back in a pickup bundle), or ``unreadable``
    (an item that could not be opened with this analyst's key, or was malformed).
    """

    kind: str
    day: str
    text: str
    attachments: tuple[str, ...] = ()
    sent: bool = True


@dataclass(frozen=True)
class Report:
    """A report with everything known about it."""

    id: str
    source_id: str
    day: str
    received: bool
    category: str
    danger: bool
    description: str
    links: tuple[str, ...]
    platform: str
    seen_on: str | None
    identity: Identity | None
    attachment_names: tuple[str, ...]
    status: str
    delete_asked: bool
    delete_sent: bool
    source_public_key: bytes | None
    files: tuple[Attachment, ...]
    conversation: tuple[Entry, ...]
    ref: str = ""
    """The workstation's short reference (year/counter): never sent to the server."""

    @property
    def can_reply(self) -> bool:
        return self.source_public_key is not None


@dataclass(frozen=True)
class Pending:
    """What the next reply bundle would carry."""

    replies: int
    acknowledgements: int
    deletions: int

    @property
    def empty(self) -> bool:
        return not (self.replies or self.acknowledgements or self.deletions)


@dataclass(frozen=True)
class ReplyBundleRecord:
    id: str
    day: str
    file: str
    replies: int
    acknowledged: int
    deletions: int


# --- creating and opening ----------------------------------------------------------------------


def create_vault(
    path: Path, key_file: Path, server_key: ServerVerifyKey, passphrase: str
) -> AnalystPublicKey:
    """Make a vault at ``path`` (absent or empty) for the analyst key in ``key_file``.

    The passphrase is checked first (a vault nobody can open is no use); then the key file is
    copied in (0600), a salt made, and the database created with the server's key pinned inside.
    If anything fails, what was made is removed again.  Returns the analyst's public key.
    """
    data = key_file.read_bytes()
    try:
        key = open_key_file(data, passphrase)
    except KeyFileError:
        raise WrongPassphrase() from None
    paths = VaultPaths(path)
    made_directory = _make_empty_directory(path)
    try:
        write_new_file(paths.key_file, data)
        salt = secrets.token_bytes(VAULT_SALT_BYTES)
        write_new_file(paths.salt_file, salt)
        db = connect(paths.db_file, vault_key(key, salt))
        try:
            settings = {
                "schema": str(SCHEMA_VERSION),
                "server_key": server_key.to_line(),
                "analyst": key.public().to_line(),
                "analysts": "[]",
                "analysts_day": "",
            }
            with _transaction(db):
                for statement in _statements(SCHEMA):
                    db.execute(statement)
                db.executemany("INSERT INTO settings (name, value) VALUES (?, ?)", settings.items())
            schema.upgrade(db)
        finally:
            db.close()
    except BaseException:
        if made_directory:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return key.public()


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def _make_empty_directory(path: Path) -> bool:
    """Create ``path`` with mode 0700, or accept it if it is an empty directory."""
    try:
        path.mkdir(mode=0o700)
        created = True
    except FileExistsError:
        if not path.is_dir() or any(path.iterdir()):
            raise VaultError(
                f"{path} already exists and is not empty; init will not overwrite it. "
                "Choose another --vault or remove it."
            ) from None
        created = False
    os.chmod(path, 0o700)
    return created


class Vault:
    """An open vault: the analyst's key in memory, the database, the attachment envelopes.

    Thread-safe: every database access holds one lock (the app serves a few threads).
    Close it to lock the vault again (the key goes with the object: Python cannot wipe memory).
    """

    def __init__(self, path: Path, key: AnalystKey, analyst: str = schema.FIRST_ANALYST) -> None:
        self.paths = VaultPaths(path)
        check_is_vault(self.paths)
        self._lock = threading.RLock()
        self._lock_fd = _take_lock(self.paths.lock_file)
        db: sqlite3.Connection | None = None
        try:
            salt = self.paths.salt_file.read_bytes()
            if len(salt) != VAULT_SALT_BYTES:
                raise VaultError(f"{self.paths.salt_file} is damaged: it is not a vault salt")
            for candidate in keyring.database_keys(self.paths.root, key, salt):
                try:
                    db = connect(self.paths.db_file, candidate)
                except DatabaseError:
                    continue
                self._database_key = candidate
                break
            else:
                raise VaultError(
                    f"{self.paths.db_file} cannot be opened with this analyst's key: the vault "
                    "was made with another key file and this one was never added to it, or its "
                    "salt or database is damaged"
                )
            self._db = db
            if not 1 <= schema.version(db) <= schema.LATEST:
                raise VaultError(f"{path} is not a vault this version of Blagh can open")
            schema.upgrade(db)
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute("PRAGMA analysis_limit = 1000")
            db.execute("PRAGMA optimize = 0x10002")  # fresh statistics for the query planner
            self.key = key
            self.analyst = analyst
            """The name of the analyst acting through this object (case history, audit)."""
            self.blobs = BlobFolder(self.paths.blobs)
            self.paths.outbox.mkdir(mode=0o700, exist_ok=True)
            self.paths.incoming.mkdir(mode=0o700, exist_ok=True)
            self._sweep()
        except BaseException:
            if db is not None:
                db.close()
            os.close(self._lock_fd)
            raise

    @classmethod
    def open(cls, path: Path, passphrase: str, analyst: str = "") -> Vault:
        """Unlock the vault at ``path`` with an analyst's passphrase (the analyst who made the
        vault, or ``analyst`` by account name when the vault has several: keyring.py).

        A wrong passphrase raises :class:`WrongPassphrase` and opens nothing.
        """
        paths = VaultPaths(path)
        check_is_vault(paths)
        key = unlock_key(paths, passphrase, analyst)
        vault = cls(path, key)
        try:
            vault.analyst = vault.account_of(key)
        except BaseException:
            vault.close()
            raise
        return vault

    def acting_as(self, key: AnalystKey, analyst: str) -> Vault:
        """This open vault, used by another analyst logged in at the same time: the same
        database and lock, their key and name.  Close the original, never the copy."""
        view = copy.copy(self)
        view.key = key
        view.analyst = analyst
        return view

    def account_of(self, key: AnalystKey) -> str:
        """The account name of an analyst key, or VaultError if the key has no active account."""
        rows = self._rows(
            "SELECT name FROM analysts WHERE public_key = ? AND active", (key.public().to_line(),)
        )
        if not rows:
            raise VaultError(
                "this analyst key has no account in this vault (it was removed, or never added)"
            )
        return str(rows[0][0])

    def same_database_key(self, candidates: Sequence[bytes]) -> bool:
        return any(hmac.compare_digest(c, self._database_key) for c in candidates)

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole database under ``new_key`` (keyring.py: an analyst removed)."""
        if len(new_key) != 32:
            raise ValueError("a database key is 32 bytes")
        with self._lock:
            self._db.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
            self._database_key = new_key

    @property
    def database_key(self) -> bytes:
        return self._database_key

    def snapshot(self, dest: Path) -> set[str]:
        """Copy the database to the new file ``dest`` (SQLite's online backup API, under the
        same key: ciphertext stays ciphertext) and return the attachment blobs the copy refers
        to: what ``blagh workstation backup`` puts beside it."""
        copy_db = connect(dest, self._database_key, wal=False)
        try:
            with self._lock:
                self._db.backup(copy_db)
            rows = copy_db.execute("SELECT blob FROM items WHERE blob NOT NULL").fetchall()
        finally:
            copy_db.close()
        return {name for (name,) in rows}

    def close(self) -> None:
        with self._lock:
            if self._lock_fd < 0:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA optimize")
            self._db.close()
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write: rolled back if anything in the block fails."""
        with self._lock, _transaction(self._db):
            yield self._db

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _setting(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM settings WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def _sweep(self) -> None:
        """Remove attachment files no row refers to (an import a crash cut short)."""
        referenced = {row[0] for row in self._rows("SELECT blob FROM items WHERE blob NOT NULL")}
        self.blobs.sweep(referenced)
        for leftover in self.paths.incoming.iterdir():
            leftover.unlink(missing_ok=True)

    # --- settings ------------------------------------------------------------------------------

    def server_key(self) -> ServerVerifyKey:
        line = self._setting("server_key")
        assert line is not None
        return ServerVerifyKey.from_line(line)

    def analysts(self) -> list[AnalystPublicKey]:
        """The analysts replies are sealed to, as the newest pickup bundle listed them."""
        lines = json.loads(self._setting("analysts") or "[]")
        return [AnalystPublicKey.from_line(line) for line in lines]

    def analysts_day(self) -> str:
        return self._setting("analysts_day") or ""

    # --- reading -------------------------------------------------------------------------------

    def known_items(self, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), 500):
            batch = list(ids[start : start + 500])
            marks = ",".join("?" * len(batch))
            rows = self._rows(f"SELECT id FROM items WHERE id IN ({marks})", batch)  # noqa: S608
            known.update(row[0] for row in rows)
        return known

    def report_exists(self, report_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM reports WHERE id = ?", (report_id,)))

    def inbox(self, query: str = "") -> list[ReportSummary]:
        """Reports by priority: immediate danger first, then category, then newest day."""
        sql = """
            SELECT r.id, r.day, r.received, r.category, r.danger, r.platform, r.status,
                   (SELECT count(*) FROM items i
                       WHERE i.report_id = r.id AND i.kind = 'message' AND NOT i.unreadable),
                   (SELECT count(*) FROM items i
                       WHERE i.report_id = r.id AND i.kind = 'file' AND NOT i.unreadable),
                   r.delete_asked IS NOT NULL
            FROM reports r
        """
        args: list[str] = []
        words = [word for word in query.split() if word]
        if words:
            sql += " WHERE r.num IN (SELECT rowid >> 20 FROM search WHERE search MATCH ?)"
            args.append(" ".join('"' + word.replace('"', '""') + '"' for word in words))
        sql += " ORDER BY r.danger DESC, r.category, r.day DESC, r.id"
        return [
            ReportSummary(
                id=row[0],
                day=row[1],
                received=bool(row[2]),
                category=row[3],
                danger=bool(row[4]),
                platform=row[5],
                status=row[6],
                messages=row[7],
                files=row[8],
                delete_asked=bool(row[9]),
            )
            for row in self._rows(sql, args)
        ]

    def report(self, report_id: str) -> Report | None:
        rows = self._rows(
            """SELECT r.id, r.source_id, r.day, r.received, r.category, r.danger, r.description,
                      r.links, r.platform, r.seen_on, r.identity, r.attachments, r.status,
                      r.delete_asked, r.delete_bundle, s.public_key, r.ref
               FROM reports r JOIN sources s ON s.id = r.source_id WHERE r.id = ?""",
            (report_id,),
        )
        if not rows:
            return None
        row = rows[0]
        identity = json.loads(row[10]) if row[10] else None
        return Report(
            id=row[0],
            source_id=row[1],
            day=row[2],
            received=bool(row[3]),
            category=row[4],
            danger=bool(row[5]),
            description=row[6],
            links=tuple(json.loads(row[7])),
            platform=row[8],
            seen_on=row[9],
            identity=Identity(**identity) if identity else None,
            attachment_names=tuple(json.loads(row[11])),
            status=row[12],
            delete_asked=row[13] is not None,
            delete_sent=row[14] is not None,
            source_public_key=row[15],
            files=tuple(self.attachments(report_id)),
            conversation=tuple(self._conversation(report_id)),
            ref=row[16] or "",
        )

    def attachments(self, report_id: str) -> list[Attachment]:
        return [
            Attachment(*row)
            for row in self._rows(
                "SELECT id, day, name, content_type, size, blob FROM items"
                " WHERE report_id = ? AND kind = 'file' AND NOT unreadable ORDER BY position",
                (report_id,),
            )
        ]

    def attachment(self, report_id: str, item_id: str) -> Attachment | None:
        for found in self.attachments(report_id):
            if found.id == item_id:
                return found
        return None

    def attachment_chunks(self, attachment: Attachment) -> Iterator[bytes]:
        """The bytes of an attachment as the reporter sent them, decrypted as they are read.

        The description line is skipped.  Plaintext is released chunk by chunk: if the envelope
        on disk was damaged since the import, this raises part way, and a download breaks off
        short of the size announced for it.
        """
        reader = EnvelopeReader([self.key.encryption_secret])
        head: bytearray | None = bytearray()
        with self.blobs.open(attachment.blob) as envelope:
            while True:
                chunk = envelope.read(_READ_SIZE)
                plain = reader.update(chunk) if chunk else reader.finish()
                if head is not None:
                    head += plain
                    end = head.find(b"\n", 0, MAX_ATTACHMENT_HEADER)
                    if end < 0:
                        if len(head) >= MAX_ATTACHMENT_HEADER or not chunk:
                            raise DecryptionError()
                        continue
                    plain, head = bytes(head[end + 1 :]), None
                if plain:
                    yield plain
                if not chunk:
                    return

    def _conversation(self, report_id: str) -> list[Entry]:
        rows = self._rows(
            """SELECT position, CASE WHEN unreadable THEN 'unreadable' ELSE kind END, day, text,
                      attachments, 1 FROM items
                   WHERE report_id = ? AND (kind IN ('message', 'reply') OR unreadable)
               UNION ALL
               SELECT position, 'own', day, text, '[]', bundle IS NOT NULL FROM replies
                   WHERE report_id = ?
               ORDER BY 1""",
            (report_id, report_id),
        )
        kinds = {
            "message": "message",
            "reply": "analyst_reply",
            "own": "reply",
            "unreadable": "unreadable",
        }
        return [
            Entry(
                kind=kinds[kind],
                day=day,
                text=text or "",
                attachments=tuple(json.loads(names or "[]")),
                sent=bool(sent),
            )
            for _position, kind, day, text, names, sent in rows
        ]

    def pending(self) -> Pending:
        (row,) = self._rows(
            """SELECT (SELECT count(*) FROM replies WHERE bundle IS NULL)
                      + (SELECT count(*) FROM reporter_status WHERE bundle IS NULL),
                      (SELECT count(*) FROM items WHERE ack_bundle IS NULL),
                      (SELECT count(*) FROM reports
                          WHERE delete_asked IS NOT NULL AND delete_bundle IS NULL)"""
        )
        return Pending(*row)

    def reply_bundles(self) -> list[ReplyBundleRecord]:
        return [
            ReplyBundleRecord(*row)
            for row in self._rows(
                "SELECT id, day, file, replies, acknowledged, deletions FROM reply_bundles"
                " ORDER BY rowid DESC"
            )
        ]

    def reply_bundle(self, bundle_id: str) -> ReplyBundleRecord | None:
        for record in self.reply_bundles():
            if record.id == bundle_id:
                return record
        return None

    # --- case data -----------------------------------------------------------------------------

    def ask_deletion(self, report_id: str, asked: bool) -> None:
        """Ask (or stop asking) the server to delete a report, in the next reply bundle.

        A request already sent cannot be taken back.
        """
        with self.transaction() as db:
            db.execute(
                "UPDATE reports SET delete_asked = ? WHERE id = ? AND delete_bundle IS NULL",
                (today() if asked else None, report_id),
            )

    def next_position(self, db: sqlite3.Connection) -> int:
        (value,) = db.execute(
            "SELECT max(coalesce((SELECT max(position) FROM items), 0),"
            " coalesce((SELECT max(position) FROM replies), 0))"
        ).fetchone()
        return int(value) + 1


def unlock_key(paths: VaultPaths, passphrase: str, analyst: str = "") -> AnalystKey:
    """The key of the vault's first analyst, or of ``analyst`` by account name (keyring.py);
    :class:`WrongPassphrase` for a wrong passphrase or a name the vault does not know."""
    file = keyring.key_file(paths.root, analyst, paths.key_file)
    try:
        if file is None:
            raise KeyFileError("no such analyst")
        return open_key_file(file.read_bytes(), passphrase)
    except (KeyFileError, FileNotFoundError):
        raise WrongPassphrase() from None


def check_is_vault(paths: VaultPaths) -> None:
    for part in (paths.key_file, paths.salt_file, paths.db_file):
        if not part.is_file():
            raise VaultError(
                f"{paths.root} is not a vault ({part.name} is missing); make one with "
                "`blagh workstation init`, or check --vault"
            )


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VaultError(
            f"{path.parent} is open in another program (the workstation app with someone "
            "logged in, or another blagh workstation command); log out or wait, then try again"
        ) from None
    return fd


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
