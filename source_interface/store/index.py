"""The server's index of sources, reports, items and sessions, in SQLCipher.

Rows hold ids, sizes, hashes, days and ciphertext: nothing a seized disk could read a report
from, and no time finer than a day except session expiry (which a session needs, and which is
deleted with the session).
"""

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from blagh.sqlcipher import connect
from source_interface.store.blobs import BlobRef

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    verifier BLOB UNIQUE,
    public_key BLOB,
    day TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    day TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('fields', 'file', 'message', 'reply')),
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    day TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_report ON items(report_id, seq);
CREATE TABLE IF NOT EXISTS drafts (
    token_hash BLOB NOT NULL,
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS drafts_by_token ON drafts(token_hash);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    sealed_secret BLOB NOT NULL,
    expires INTEGER NOT NULL
);
"""


def today() -> str:
    """The current UTC day: the finest time the store keeps."""
    return datetime.now(UTC).date().isoformat()


def new_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Source:
    id: str
    public_key: bytes | None
    day: str


@dataclass(frozen=True)
class Item:
    id: str
    report_id: str
    kind: str
    blob: str
    size: int
    sha256: str
    day: str


@dataclass(frozen=True)
class Report:
    id: str
    source_id: str
    day: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Session:
    source_id: str
    sealed_secret: bytes
    expires: int


class Index:
    """One connection per thread (gunicorn's threaded workers); transactions are short."""

    def __init__(self, path: Path, key: bytes) -> None:
        self._path = path
        self._key = key
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._db.executescript(SCHEMA)

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self._path, self._key)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def create_source(self, verifier: bytes | None, public_key: bytes | None) -> Source:
        source = Source(new_id(), public_key, today())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sources (id, verifier, public_key, day) VALUES (?, ?, ?, ?)",
                (source.id, verifier, public_key, source.day),
            )
        return source

    def source_by_verifier(self, verifier: bytes) -> Source | None:
        row = self._db.execute(
            "SELECT id, public_key, day FROM sources WHERE verifier = ?", (verifier,)
        ).fetchone()
        return Source(*row) if row else None

    def source(self, source_id: str) -> Source | None:
        row = self._db.execute(
            "SELECT id, public_key, day FROM sources WHERE id = ?", (source_id,)
        ).fetchone()
        return Source(*row) if row else None

    def add_report(
        self, source_id: str, items: list[tuple[str, BlobRef]], draft: bytes | None = None
    ) -> Report:
        """Record a report and its items (blobs already committed) in one transaction.

        Items taken from a draft (files kept from an earlier attempt) stop being a draft in the
        same transaction, so a crash leaves them in exactly one of the two places.
        """
        report_id = new_id()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO reports (id, source_id, day) VALUES (?, ?, ?)",
                (report_id, source_id, today()),
            )
            self._insert_items(db, report_id, items)
            if draft is not None:
                db.execute("DELETE FROM drafts WHERE token_hash = ?", (draft,))
        found = self.report(source_id, report_id)
        assert found is not None
        return found

    def add_items(
        self,
        source_id: str,
        report_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
    ) -> bool:
        """Append items to a report of this source; False if it has no such report."""
        with self.transaction() as db:
            owner = db.execute("SELECT source_id FROM reports WHERE id = ?", (report_id,))
            row = owner.fetchone()
            if row is None or row[0] != source_id:
                return False
            self._insert_items(db, report_id, items)
            if draft is not None:
                db.execute("DELETE FROM drafts WHERE token_hash = ?", (draft,))
        return True

    @staticmethod
    def _insert_items(
        db: sqlite3.Connection, report_id: str, items: list[tuple[str, BlobRef]]
    ) -> None:
        (seq,) = db.execute(
            "SELECT coalesce(max(seq), 0) FROM items WHERE report_id = ?", (report_id,)
        ).fetchone()
        day = today()
        for offset, (kind, blob) in enumerate(items, start=1):
            db.execute(
                "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (new_id(), report_id, kind, blob.name, blob.size, blob.sha256, day, seq + offset),
            )

    def reports_of(self, source_id: str) -> list[Report]:
        rows = self._db.execute(
            "SELECT id FROM reports WHERE source_id = ? ORDER BY day, rowid", (source_id,)
        ).fetchall()
        reports = [self.report(source_id, report_id) for (report_id,) in rows]
        return [r for r in reports if r is not None]

    def report(self, source_id: str, report_id: str) -> Report | None:
        row = self._db.execute(
            "SELECT id, source_id, day FROM reports WHERE id = ? AND source_id = ?",
            (report_id, source_id),
        ).fetchone()
        if row is None:
            return None
        items = self._db.execute(
            "SELECT id, report_id, kind, blob, size, sha256, day FROM items"
            " WHERE report_id = ? ORDER BY seq",
            (report_id,),
        ).fetchall()
        return Report(row[0], row[1], row[2], tuple(Item(*i) for i in items))

    def delete_source(self, source_id: str) -> list[str]:
        """Delete a source and everything of theirs; return the blob names to remove."""
        with self.transaction() as db:
            blobs = [
                name
                for (name,) in db.execute(
                    "SELECT items.blob FROM items JOIN reports ON items.report_id = reports.id"
                    " WHERE reports.source_id = ?",
                    (source_id,),
                )
            ]
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        return blobs

    def blob_names(self) -> set[str]:
        """Every blob a row refers to: report items and files kept in drafts."""
        rows = self._db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts")
        return {name for (name,) in rows}

    def add_to_draft(self, token_hash: bytes, blobs: list[BlobRef], lifetime: int) -> None:
        """Keep committed file blobs for a report whose form must be corrected first."""
        expires = int(time.time()) + lifetime
        with self.transaction() as db:
            db.execute("UPDATE drafts SET expires = ? WHERE token_hash = ?", (expires, token_hash))
            db.executemany(
                "INSERT INTO drafts (token_hash, blob, size, sha256, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                [(token_hash, b.name, b.size, b.sha256, expires) for b in blobs],
            )

    def draft(self, token_hash: bytes) -> list[BlobRef]:
        rows = self._db.execute(
            "SELECT blob, size, sha256 FROM drafts WHERE token_hash = ? AND expires >= ?"
            " ORDER BY rowid",
            (token_hash, int(time.time())),
        )
        return [BlobRef(*row) for row in rows]

    def delete_sources_without_reports(self) -> int:
        """Forget sources that have no report; return how many.

        A new report's source row is committed before the report's (its blobs are made durable
        in between), so a worker killed in that window leaves a source with nothing: no
        content, only a day and maybe the login verifier of a codename nobody was shown.
        Every other way a source ends deletes it whole.  For the sweep, before workers serve.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "DELETE FROM sources WHERE id NOT IN (SELECT source_id FROM reports)"
            )
        return cursor.rowcount

    def expire_drafts(self) -> list[str]:
        """Forget abandoned drafts; return their blob names for deletion."""
        now = int(time.time())
        with self.transaction() as db:
            rows = db.execute("SELECT blob FROM drafts WHERE expires < ?", (now,)).fetchall()
            db.execute("DELETE FROM drafts WHERE expires < ?", (now,))
        return [name for (name,) in rows]

    def replace_session_secret(self, token_hash: bytes, sealed_secret: bytes) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sessions SET sealed_secret = ? WHERE token_hash = ?",
                (sealed_secret, token_hash),
            )

    def create_session(
        self, token_hash: bytes, source_id: str, sealed_secret: bytes, lifetime: int
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sessions (token_hash, source_id, sealed_secret, expires)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, source_id, sealed_secret, int(time.time()) + lifetime),
            )

    def session(self, token_hash: bytes, lifetime: int) -> Session | None:
        """The live session for this token, its idle timer restarted; None if absent or idle."""
        now = int(time.time())
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            row = db.execute(
                "SELECT source_id, sealed_secret FROM sessions WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE sessions SET expires = ? WHERE token_hash = ?", (now + lifetime, token_hash)
            )
        return Session(row[0], row[1], now + lifetime)

    def delete_session(self, token_hash: bytes) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
