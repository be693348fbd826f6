"""The server's index of sources, reports, items and sessions, in SQLCipher.

Rows hold ids, sizes, hashes, days and ciphertext: nothing a seized disk could read a report
from, and nothing that orders them in time finer than a day (docs/threat-model.md):

* every id is random, and every table a submission writes to is ``WITHOUT ROWID``, keyed by a
  random id: no rowid counts arrivals, and a row's place in its b-tree follows its id, not when
  it came.  What needs an order keeps one of its own, local to what it orders: ``seq`` numbers
  the items of one report (a conversation) and the reports of one source, the drafts of one
  form;
* the only times finer than a day are the expiries of live sessions and drafts, and they are
  coarse (:data:`EXPIRY_GRAIN_SECONDS`); the janitor deletes each row within a minute of it;
* whatever deletes rows counts it (``scrub_state``); :meth:`Index.scrub` then overwrites the
  write-ahead log's stale frames and empties it, so the deleted rows are in neither the
  database (``secure_delete`` zeroes freed cells and pages), its WAL, nor its free pages.
"""

import functools
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import sqlcipher3

from blagh.blobs import BlobRef
from blagh.errors import SetupError
from blagh.offload import Offload, native_lock, native_thread_id
from blagh.sqlcipher import connect
from source_interface.errors import SourceInterfaceError
from source_interface.store import migrations
from source_interface.store.records import (
    EXPIRY_GRAIN_SECONDS as EXPIRY_GRAIN_SECONDS,
)
from source_interface.store.records import (
    AppliedReplies as AppliedReplies,
)
from source_interface.store.records import (
    DuplicateSubmission as DuplicateSubmission,
)
from source_interface.store.records import (
    Item as Item,
)
from source_interface.store.records import (
    NewReply as NewReply,
)
from source_interface.store.records import (
    NewSession as NewSession,
)
from source_interface.store.records import (
    NewSource as NewSource,
)
from source_interface.store.records import (
    PendingItem as PendingItem,
)
from source_interface.store.records import (
    PickupSnapshot as PickupSnapshot,
)
from source_interface.store.records import (
    PickupState as PickupState,
)
from source_interface.store.records import (
    Purged as Purged,
)
from source_interface.store.records import (
    ReplyConflict as ReplyConflict,
)
from source_interface.store.records import (
    Report as Report,
)
from source_interface.store.records import (
    Session as Session,
)
from source_interface.store.records import (
    Source as Source,
)
from source_interface.store.records import (
    Submission as Submission,
)
from source_interface.store.records import (
    _yesterday as _yesterday,
)
from source_interface.store.records import (
    coarse_expiry as coarse_expiry,
)
from source_interface.store.records import (
    new_id as new_id,
)
from source_interface.store.records import (
    today as today,
)
from source_interface.store.shared_writer import RemoteWrites, WriterService
from source_interface.store.writes import MAX_BATCH, GroupCommit, WriterTurns

_P = ParamSpec("_P")
_R = TypeVar("_R")

WRITE_QUEUE = 4096
"""Writes that may wait for the writer thread at once; past that a request gets "busy"."""


SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the index :data:`SCHEMA` makes: the first versioned index.  Later
versions are steps in :mod:`source_interface.store.migrations`, which every index, new or old,
goes through at open.  :data:`SCHEMA` is frozen at version 2: a change is a new step there.
0 with tables in it: an index made by an earlier Blagh (rowid tables, expiries to the second),
which is refused, not migrated: there were no installations to carry over, and a copy would
leave the old rows in the old file's free space."""

SCRUB_WAIT_MS = 200
"""How long a scrub's checkpoint waits for other workers' readers before giving up for now
(the janitor tries again a minute later)."""

WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    verifier BLOB UNIQUE,
    public_key BLOB,
    day TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('fields', 'file', 'message', 'reply')),
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    day TEXT NOT NULL,
    seq INTEGER NOT NULL,
    delivered_day TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_report ON items(report_id, seq);
CREATE INDEX IF NOT EXISTS items_by_delivery ON items(delivered_day);
CREATE TABLE IF NOT EXISTS drafts (
    blob TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    expires INTEGER NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS drafts_by_token ON drafts(token_hash, seq);
CREATE INDEX IF NOT EXISTS drafts_by_expiry ON drafts(expires);
CREATE INDEX IF NOT EXISTS reports_by_source ON reports(source_id, seq);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    sealed_secret BLOB NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires);
CREATE INDEX IF NOT EXISTS sessions_by_source ON sessions(source_id);
CREATE TABLE IF NOT EXISTS applied_bundles (
    id TEXT PRIMARY KEY,
    day TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pickup_tokens (
    name TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    day TEXT NOT NULL
) WITHOUT ROWID;
-- What a pickup request needs to know without listing every item (docs/pickup.md).  One row.
-- ``generation`` goes up with every change to the set a pickup bundle holds (undelivered
-- items of the deliverable kinds, their reports and sources); ``deletions`` with every item
-- deleted, delivered or not (a bundle built meanwhile may hold a copy of it).  Both only ever
-- go up.  ``bundle_*``: the bundle built for ``bundle_generation``, under the analysts' and
-- server's keys whose digest is ``bundle_context``.
CREATE TABLE IF NOT EXISTS pickup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    deletions INTEGER NOT NULL,
    bundle_generation INTEGER,
    bundle_context TEXT,
    bundle_key TEXT,
    bundle_items INTEGER
);
INSERT OR IGNORE INTO pickup_state (id, generation, deletions) VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS pickup_item_added AFTER INSERT ON items
WHEN NEW.delivered_day IS NULL AND NEW.kind IN ('fields', 'file', 'message')
BEGIN
    UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_item_changed AFTER UPDATE ON items
WHEN (OLD.delivered_day IS NULL AND OLD.kind IN ('fields', 'file', 'message'))
    OR (NEW.delivered_day IS NULL AND NEW.kind IN ('fields', 'file', 'message'))
BEGIN
    UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_item_deleted AFTER DELETE ON items
BEGIN
    UPDATE pickup_state SET deletions = deletions + 1,
        generation = generation
            + (OLD.delivered_day IS NULL AND OLD.kind IN ('fields', 'file', 'message'))
    WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_report_changed AFTER UPDATE OF id, source_id, day ON reports
BEGIN
    UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_report_deleted AFTER DELETE ON reports
BEGIN
    UPDATE pickup_state SET generation = generation + 1, deletions = deletions + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_source_changed AFTER UPDATE OF id, public_key ON sources
BEGIN
    UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS pickup_source_deleted AFTER DELETE ON sources
BEGIN
    UPDATE pickup_state SET generation = generation + 1, deletions = deletions + 1 WHERE id = 1;
END;
-- Rows deleted (``deleted``) and how many of those a scrub has made unrecoverable
-- (``scrubbed``): while they differ, the WAL may still hold a deleted row (Index.scrub).
CREATE TABLE IF NOT EXISTS scrub_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    deleted INTEGER NOT NULL,
    scrubbed INTEGER NOT NULL
);
INSERT OR IGNORE INTO scrub_state (id, deleted, scrubbed) VALUES (1, 0, 0);
-- Zeros a scrub writes through the WAL over its stale frames, deleted in the same transaction.
CREATE TABLE IF NOT EXISTS scrub_filler (id INTEGER PRIMARY KEY, zeros BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS scrub_after_sources AFTER DELETE ON sources
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS scrub_after_reports AFTER DELETE ON reports
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS scrub_after_items AFTER DELETE ON items
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS scrub_after_drafts AFTER DELETE ON drafts
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS scrub_after_sessions AFTER DELETE ON sessions
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS scrub_after_pickup_tokens AFTER DELETE ON pickup_tokens
BEGIN
    UPDATE scrub_state SET deleted = deleted + 1 WHERE id = 1;
END;
"""


class StoreVersionError(SourceInterfaceError, SetupError):
    """The index was made by another version of Blagh and cannot be opened by this one."""


DELIVERABLE_KINDS = ("fields", "file", "message")
"""The kinds of item that travel to the workstation; replies travel the other way."""


def _statements(script: str) -> list[str]:
    """The statements of :data:`SCHEMA`, one by one (``executescript`` would commit first).

    Split on ``;`` at the end of a line: trigger bodies end their inner statements with
    ``;`` too, so a trigger is gathered up to its ``END;``."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.startswith("--") or not line.strip():
            continue
        current.append(line)
        text = "\n".join(current)
        inside_trigger = text.lstrip().upper().startswith("CREATE TRIGGER")
        if line.rstrip().endswith(";") and (not inside_trigger or line.strip() == "END;"):
            statements.append(text)
            current = []
    return statements


WRITE_METHODS: set[str] = set()
"""The names of :class:`Index`'s write methods: what a worker may ask the shared writer for."""


def _writes(
    method: Callable[Concatenate["Index", _P], _R],
) -> Callable[Concatenate["Index", _P], _R]:
    """Run an :class:`Index` method that writes on the index's writer: the process's writer
    thread, or in a gunicorn server's workers the shared writer (store/shared_writer.py).

    Every write goes through one writer, in turn: a request never sleeps in SQLite's busy
    handler waiting for another request's write lock, and under gevent the event loop goes on
    serving while the write (and its fsync) runs.
    """

    WRITE_METHODS.add(method.__name__)

    @functools.wraps(method)
    def on_writer(self: "Index", /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        result: _R = self.writes.run(method, self, *args, **kwargs)
        return result

    return on_writer


class Index:
    """One connection per OS thread; writes on the writer thread; transactions are short.

    Under gevent every greenlet of a worker shares the event loop thread's connection for its
    reads (no read yields to another greenlet half-way) and hands its writes to the writer.
    """

    def __init__(self, path: Path, key: bytes, writer_socket: Path | None = None) -> None:
        """``writer_socket``: send the writes to the shared writer listening there (a gunicorn
        server's workers, source_interface/store/shared_writer.py) instead of writing here."""
        self._path = path
        self._key = key
        self._writer_socket = writer_socket
        self._turns = WriterTurns(path.with_name(path.name + "-lock"))
        self._by_thread: dict[int, sqlite3.Connection] = {}
        self._lock = native_lock()
        self._start_writer()
        self._make_schema()

    def _make_schema(self) -> None:
        """Create the tables of version 2 in a new index, then bring it, or an existing one, to
        :data:`migrations.LATEST` (source_interface/store/migrations.py).

        Checked inside the write transaction: workers starting together create it once."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                (tables,) = db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()
                if tables:
                    raise StoreVersionError(
                        f"{self._path} was made by an earlier version of Blagh, which kept rows "
                        "in arrival order and times to the second; this version cannot open it "
                        "and does not convert it.  Deliver what is pending (blagh export-bundle "
                        "with the earlier version), then make a new data folder with blagh init."
                    )
                for statement in _statements(SCHEMA):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        try:
            migrations.upgrade(db)
        except migrations.VersionRefused as error:
            raise StoreVersionError(f"{self._path} {error}") from None

    def _start_writer(self) -> None:
        self.writer = Offload("database writer", threads=1, queue=WRITE_QUEUE)
        self.writes: GroupCommit | RemoteWrites
        if self._writer_socket is None:
            self.writes = GroupCommit(self.writer, lambda: self._db, turn=self._turns.turn)
        else:
            self.writes = RemoteWrites(self._writer_socket, waiting=WRITE_QUEUE)

    def serve_writes(self, listener: socket.socket, stop: Callable[[], bool]) -> None:
        """Be the shared writer of the workers that connect to ``listener`` until ``stop()``."""
        self.write_service(listener).serve(stop)

    def write_service(self, listener: socket.socket) -> WriterService:
        """The shared writer's loop on ``listener``, writing on this index."""
        if not isinstance(self.writes, GroupCommit):
            raise TypeError("an index whose writes go elsewhere cannot serve them")
        functions = {
            name: functools.partial(getattr(Index, name).__wrapped__, self)
            for name in WRITE_METHODS
        }
        return WriterService(listener, functions, self.writes.run_here, MAX_BATCH)

    @property
    def _db(self) -> sqlite3.Connection:
        thread = native_thread_id()
        db = self._by_thread.get(thread)
        if db is None:
            db = connect(self._path, self._key)
            with self._lock:
                self._by_thread[thread] = db
        return db

    def close(self) -> None:
        self.writer.close()
        if isinstance(self.writes, RemoteWrites):
            self.writes.close()
        with self._lock:
            for db in self._by_thread.values():
                db.close()
            self._by_thread.clear()
        self._turns.close()
        self._start_writer()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction, or inside a group commit's batch (source_interface/store/writes.py)
        a savepoint: all or nothing either way, durable once the batch commits."""
        db = self._db
        if db.in_transaction and self.writes.take_fresh_savepoint():
            # The first transaction of a write in a batch: the write's own savepoint serves.
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK TO one_write")
                raise
            return
        if db.in_transaction:
            db.execute("SAVEPOINT nested")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK TO nested")
                db.execute("RELEASE nested")
                raise
            db.execute("RELEASE nested")
            return
        with self._turns.turn():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @_writes
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

    @_writes
    def add_report(
        self,
        source_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
        new_source: "NewSource | None" = None,
        submission: Submission | None = None,
        new_session: NewSession | None = None,
    ) -> Report:
        """Record a report and its items (blobs already committed) in one transaction.

        A first report creates its source in the same transaction (``new_source``), so a crash
        can leave neither a source without its report nor a report without its source.  Items
        taken from a draft (files kept from an earlier attempt) stop being a draft in the same
        transaction too, so a crash leaves them in exactly one of the two places.  A form's
        ``submission`` is recorded in it as well: a second report from the same form raises
        :class:`DuplicateSubmission` and records nothing.  ``new_session`` starts the reporter's
        session in it.
        """
        report_id = new_id()
        day = today()
        with self.transaction() as db:
            if submission is not None:
                try:
                    db.execute(
                        "INSERT INTO submissions (key, outcome, day) VALUES (?, ?, ?)",
                        (submission.key, submission.outcome, day),
                    )
                except sqlcipher3.IntegrityError:
                    (outcome,) = db.execute(
                        "SELECT outcome FROM submissions WHERE key = ?", (submission.key,)
                    ).fetchone()
                    raise DuplicateSubmission(outcome) from None
            if new_source is not None:
                db.execute(
                    "INSERT INTO sources (id, verifier, public_key, day) VALUES (?, ?, ?, ?)",
                    (source_id, new_source.verifier, new_source.public_key, day),
                )
                seq = 1  # a new source's first report
            else:
                (seq,) = db.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM reports WHERE source_id = ?",
                    (source_id,),
                ).fetchone()
            db.execute(
                "INSERT INTO reports (id, source_id, day, seq) VALUES (?, ?, ?, ?)",
                (report_id, source_id, day, seq),
            )
            stored = self._insert_items(db, report_id, items, after=0)
            if draft is not None:
                db.execute("DELETE FROM drafts WHERE token_hash = ?", (draft,))
            if new_session is not None:
                db.execute(
                    "INSERT INTO sessions (token_hash, source_id, sealed_secret, expires)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        new_session.token_hash,
                        source_id,
                        new_session.sealed_secret,
                        int(time.time()) + new_session.lifetime,
                    ),
                )
        return Report(report_id, source_id, day, tuple(stored))

    @_writes
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
        db: sqlite3.Connection,
        report_id: str,
        items: list[tuple[str, BlobRef]],
        after: int | None = None,
    ) -> list[Item]:
        """Insert items after the report's last (``after``: its seq, when the caller knows
        it, as for a new report); the rows inserted."""
        if after is None:
            (after,) = db.execute(
                "SELECT coalesce(max(seq), 0) FROM items WHERE report_id = ?", (report_id,)
            ).fetchone()
        day = today()
        stored = []
        for offset, (kind, blob) in enumerate(items, start=1):
            item = Item(new_id(), report_id, kind, blob.name, blob.size, blob.sha256, day)
            db.execute(
                "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item.id, report_id, kind, blob.name, blob.size, blob.sha256, day, after + offset),
            )
            stored.append(item)
        return stored

    def reports_of(self, source_id: str) -> list[Report]:
        """A source's reports with their items: two indexed queries, whatever the store holds."""
        db = self._db
        reports = db.execute(
            "SELECT id, source_id, day FROM reports WHERE source_id = ? ORDER BY seq",
            (source_id,),
        ).fetchall()
        items: dict[str, list[Item]] = {}
        for row in db.execute(
            "SELECT i.id, i.report_id, i.kind, i.blob, i.size, i.sha256, i.day FROM items AS i"
            " JOIN reports AS r ON r.id = i.report_id WHERE r.source_id = ?"
            " ORDER BY i.report_id, i.seq",
            (source_id,),
        ).fetchall():
            items.setdefault(row[1], []).append(Item(*row))
        return [Report(r[0], r[1], r[2], tuple(items.get(r[0], ()))) for r in reports]

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

    @_writes
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

    @_writes
    def add_to_draft(
        self,
        token_hash: bytes,
        blobs: list[BlobRef],
        lifetime: int,
        *,
        max_files: int | None = None,
        max_bytes: int | None = None,
        max_total_bytes: int | None = None,
    ) -> tuple[bool, list[str]]:
        """Keep committed file blobs for a report whose form must be corrected first.

        One draft holds at most ``max_files`` blobs and ``max_bytes`` bytes (one report's worth):
        blobs that would take it past either are not added.  All drafts together hold at most
        ``max_total_bytes``: past it, whole drafts are dropped, the least recently added to
        first as far as their coarse expiries tell (others in the same grain in no set order;
        this one last).  Returns whether ``blobs`` were kept, with the names of the blobs
        no row refers to any more (dropped drafts, or ``blobs`` themselves) for the caller to
        delete.  The bounds are checked in the same transaction as the insert, so two workers
        cannot both squeeze past them.
        """
        expires = coarse_expiry(time.time(), lifetime)
        with self.transaction() as db:
            count, size, seq = db.execute(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0) FROM drafts"
                " WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            new_size = sum(b.size for b in blobs)
            if (max_files is not None and count + len(blobs) > max_files) or (
                max_bytes is not None and size + new_size > max_bytes
            ):
                return False, [b.name for b in blobs]
            db.execute("UPDATE drafts SET expires = ? WHERE token_hash = ?", (expires, token_hash))
            db.executemany(
                "INSERT INTO drafts (token_hash, blob, size, sha256, expires, seq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (token_hash, b.name, b.size, b.sha256, expires, seq + offset)
                    for offset, b in enumerate(blobs, start=1)
                ],
            )
            if max_total_bytes is None:
                return True, []
            return self._evict_drafts(db, token_hash, max_total_bytes)

    @_writes
    def remove_from_draft(self, token_hash: bytes, names: list[str]) -> list[str]:
        """Take these blobs out of a draft (the reporter removed the files); the names of those
        it held, for the caller to delete."""
        removed = []
        with self.transaction() as db:
            for name in names:
                cursor = db.execute(
                    "DELETE FROM drafts WHERE token_hash = ? AND blob = ?", (token_hash, name)
                )
                if cursor.rowcount:
                    removed.append(name)
        return removed

    def draft(self, token_hash: bytes) -> list[BlobRef]:
        rows = self._db.execute(
            "SELECT blob, size, sha256 FROM drafts WHERE token_hash = ? AND expires >= ?"
            " ORDER BY seq",
            (token_hash, int(time.time())),
        )
        return [BlobRef(*row) for row in rows]

    @_writes
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

    @_writes
    def expire_drafts(self) -> list[str]:
        """Forget abandoned drafts; return their blob names for deletion."""
        now = int(time.time())
        with self.transaction() as db:
            rows = db.execute("SELECT blob FROM drafts WHERE expires < ?", (now,)).fetchall()
            db.execute("DELETE FROM drafts WHERE expires < ?", (now,))
        return [name for (name,) in rows]

    @_writes
    def replace_session_secret(self, token_hash: bytes, sealed_secret: bytes) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sessions SET sealed_secret = ? WHERE token_hash = ?",
                (sealed_secret, token_hash),
            )

    @_writes
    def create_session(
        self, token_hash: bytes, source_id: str, sealed_secret: bytes, lifetime: int
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sessions (token_hash, source_id, sealed_secret, expires)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, source_id, sealed_secret, coarse_expiry(time.time(), lifetime)),
            )

    def session(self, token_hash: bytes, lifetime: int) -> Session | None:
        """The live session for this token, its idle timer restarted; None if absent or idle.

        The expiry is coarse (:data:`EXPIRY_GRAIN_SECONDS`) and written back only when it moves
        to the next grain, so most page views are a read; expired rows are removed by
        :meth:`expire_sessions` in the background, not here.
        """
        now = int(time.time())
        row = self._db.execute(
            "SELECT source_id, sealed_secret, expires FROM sessions"
            " WHERE token_hash = ? AND expires >= ?",
            (token_hash, now),
        ).fetchone()
        if row is None:
            return None
        expires = int(row[2])
        later = coarse_expiry(now, lifetime)
        if expires < later:
            expires = later
            if not self._touch_session(token_hash, now, expires):
                return None
        return Session(row[0], row[1], expires)

    @_writes
    def _touch_session(self, token_hash: bytes, now: int, expires: int) -> bool:
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE sessions SET expires = ? WHERE token_hash = ? AND expires >= ?",
                (expires, token_hash, now),
            )
        return cursor.rowcount > 0

    def submission(self, key: bytes) -> str | None:
        """The outcome of the report a form's submission stored, or None if it stored none."""
        row = self._db.execute("SELECT outcome FROM submissions WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    @_writes
    def expire_submissions(self) -> int:
        """Forget submissions older than yesterday; return how many (background janitor).

        A form sent again a day or two later is then stored again: by then its reporter has
        seen where the first one led (and the form's page is long gone from any browser)."""
        with self.transaction() as db:
            cursor = db.execute("DELETE FROM submissions WHERE day < ?", (_yesterday(),))
        return cursor.rowcount

    @_writes
    def expire_sessions(self) -> int:
        """Forget sessions idle past their lifetime; return how many (background janitor)."""
        with self.transaction() as db:
            cursor = db.execute("DELETE FROM sessions WHERE expires < ?", (int(time.time()),))
        return cursor.rowcount

    @_writes
    def delete_session(self, token_hash: bytes) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # --- scrubbing: deleted rows out of the WAL and the free pages ---------------------------

    def scrub_pending(self) -> bool:
        """Whether rows were deleted since the last complete :meth:`scrub`."""
        deleted, scrubbed = self._db.execute(
            "SELECT deleted, scrubbed FROM scrub_state WHERE id = 1"
        ).fetchone()
        return bool(deleted != scrubbed)

    def scrub(self) -> bool:
        """Make the rows deleted so far unrecoverable from the index's files; True if done.

        ``secure_delete`` zeroes a deleted row in its page and every page freed, but SQLite
        writes changed pages to the write-ahead log first, and the log keeps the earlier
        versions of a page until its frames are written over: a deleted row can be read back
        from there with the database key (which is on the same disk).  So, on the writer's
        connection, outside any transaction:

        1. a ``RESTART`` checkpoint copies every frame into the database and makes the next
           write start the log again from its first frame;
        2. zeros are written through the log (a row of them, deleted in the same transaction)
           until as many frames as the log file held have been written over, so that the file
           system's blocks of the log hold no stale frame either;
        3. a ``TRUNCATE`` checkpoint copies those in and empties the log file.

        Other workers' readers or writers can hold a step back: it waits :data:`SCRUB_WAIT_MS`
        at most, then gives up, as it does when the disk is too full for the zeros, and the
        janitor tries again a minute later (:meth:`scrub_pending` stays true until a scrub
        completes).  A scrub never fails the deletion that asked for it.  Costs a few fsyncs
        and about the log's size in writes: run after a deletion, never per request.
        """
        return bool(self.writer.run(self._scrub))

    def _scrub(self) -> bool:
        db = self._db
        if db.in_transaction:
            return False  # inside a caller's transaction (the bench's filler): after it, then
        (deleted,) = db.execute("SELECT deleted FROM scrub_state WHERE id = 1").fetchone()
        (patience,) = db.execute("PRAGMA busy_timeout").fetchone()
        db.execute(f"PRAGMA busy_timeout = {SCRUB_WAIT_MS}")
        try:
            return self._scrub_steps(db, deleted)
        except sqlcipher3.Error:  # busy, locked, or no room for the zeros: the janitor retries
            if db.in_transaction:
                db.execute("ROLLBACK")
            return False
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(patience)}")

    def _scrub_steps(self, db: sqlite3.Connection, deleted: int) -> bool:
        if _checkpoint(db, "RESTART"):
            self._overwrite_log(db)
            if _checkpoint(db, "TRUNCATE"):
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "UPDATE scrub_state SET scrubbed = ? WHERE id = 1 AND scrubbed < ?",
                    (deleted, deleted),
                )
                db.execute("COMMIT")
                _checkpoint(db, "TRUNCATE")  # the line just written: an empty log again
                return True
        return False

    def _overwrite_log(self, db: sqlite3.Connection) -> None:
        """Write at least as many frames as the log file holds, all zeros, from its start
        (where the next write goes after a ``RESTART`` checkpoint)."""
        log = self._path.with_name(self._path.name + "-wal")
        try:
            size = log.stat().st_size
        except FileNotFoundError:
            return
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        frames = -(-max(0, size - WAL_HEADER_BYTES) // (page + WAL_FRAME_HEADER_BYTES))
        if not frames:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            # A page holds less than ``page`` bytes of a row: this spans ``frames`` pages or more.
            db.execute("INSERT INTO scrub_filler (zeros) VALUES (zeroblob(?))", (frames * page,))
            db.execute("DELETE FROM scrub_filler")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- pickup: what the workstation has not acknowledged, and what it sends back ----------

    def undelivered(self) -> list[PendingItem]:
        """Every item not yet acknowledged, with its report and source, in one snapshot."""
        rows = self._db.execute(
            "SELECT i.id, i.report_id, r.source_id, i.kind, i.blob, i.size, i.sha256, i.day,"
            " i.seq, r.day, s.public_key"
            " FROM items AS i JOIN reports AS r ON r.id = i.report_id"
            " JOIN sources AS s ON s.id = r.source_id"
            " WHERE i.delivered_day IS NULL AND i.kind IN ('fields', 'file', 'message')"
            " ORDER BY r.day, r.id, i.seq"
        ).fetchall()
        return [PendingItem(*row) for row in rows]

    def bundle_applied(self, bundle_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM applied_bundles WHERE id = ?", (bundle_id,))
        return row.fetchone() is not None

    @_writes
    def apply_replies(
        self,
        bundle_id: str,
        replies: list[NewReply],
        acknowledged: list[str],
        delete_reports: list[str],
    ) -> AppliedReplies | None:
        """Apply a verified reply bundle in one transaction; None if it was applied before.

        Acknowledged items become delivered today (unknown ids and replies are ignored).  A
        reply whose report is gone (deleted by its source, by the analysts, or by retention),
        or whose source kept no codename, is dropped: nobody could ever read it.  A reply
        already stored under the same id, report and hash (sent again in a later bundle) is
        kept once.  Reports asked for are deleted with their items, and sources left without
        any report with them.  Raises :class:`ReplyConflict` (and changes nothing) when a
        reply's id is taken by a different item.
        """
        day = today()
        stored = already = dropped = 0
        unused: list[str] = []
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM applied_bundles WHERE id = ?", (bundle_id,)).fetchone():
                return None
            db.execute("INSERT INTO applied_bundles (id, day) VALUES (?, ?)", (bundle_id, day))
            acked = 0
            for item_id in acknowledged:
                cursor = db.execute(
                    "UPDATE items SET delivered_day = ? WHERE id = ? AND delivered_day IS NULL"
                    " AND kind IN ('fields', 'file', 'message')",
                    (day, item_id),
                )
                acked += cursor.rowcount
            for reply in replies:
                existing = db.execute(
                    "SELECT report_id, kind, sha256 FROM items WHERE id = ?", (reply.id,)
                ).fetchone()
                if existing is not None:
                    if tuple(existing) != (reply.report_id, "reply", reply.blob.sha256):
                        raise ReplyConflict(reply.id)
                    already += 1
                    unused.append(reply.blob.name)
                    continue
                target = db.execute(
                    "SELECT s.public_key FROM reports AS r JOIN sources AS s ON s.id = r.source_id"
                    " WHERE r.id = ?",
                    (reply.report_id,),
                ).fetchone()
                if target is None or target[0] is None:
                    dropped += 1
                    unused.append(reply.blob.name)
                    continue
                (seq,) = db.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM items WHERE report_id = ?",
                    (reply.report_id,),
                ).fetchone()
                db.execute(
                    "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
                    " VALUES (?, ?, 'reply', ?, ?, ?, ?, ?)",
                    (
                        reply.id,
                        reply.report_id,
                        reply.blob.name,
                        reply.blob.size,
                        reply.blob.sha256,
                        day,
                        seq,
                    ),
                )
                stored += 1
            deleted, sources, blobs = self._delete_reports(db, delete_reports)
            unused += blobs
        return AppliedReplies(stored, already, dropped, acked, deleted, sources, tuple(unused))

    @staticmethod
    def _delete_reports(
        db: sqlite3.Connection, report_ids: list[str]
    ) -> tuple[int, int, list[str]]:
        """Delete reports and their items, then the sources of theirs left with no report.

        Only sources that lost a report here are considered: a source whose first report is
        still being stored (its row committed a moment before the report's) is left alone.
        Returns (reports deleted, sources deleted, blob names to remove).
        """
        blobs: list[str] = []
        touched: set[str] = set()
        deleted = 0
        for report_id in report_ids:
            row = db.execute("SELECT source_id FROM reports WHERE id = ?", (report_id,))
            found = row.fetchone()
            if found is None:
                continue
            touched.add(found[0])
            items = db.execute("SELECT blob FROM items WHERE report_id = ?", (report_id,))
            blobs += [name for (name,) in items]
            db.execute("DELETE FROM items WHERE report_id = ?", (report_id,))
            db.execute("DELETE FROM reports WHERE id = ?", (report_id,))
            deleted += 1
        sources = 0
        for source_id in sorted(touched):
            cursor = db.execute(
                "DELETE FROM sources WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM reports WHERE source_id = ?)",
                (source_id, source_id),
            )
            sources += cursor.rowcount
        return deleted, sources, blobs

    @_writes
    def purge_delivered(self, cutoff_day: str) -> Purged:
        """Delete delivered items acknowledged on ``cutoff_day`` or before, then what is left
        with nothing: reports with no item whose source kept no codename (nobody can come
        back to them or be answered), and sources left without any report.

        A report of a source with a codename stays, even empty: its reporter can still log in,
        read the answers and write again, and the analysts can still answer.  Replies are
        never "delivered": they stay until the report is deleted.
        """
        with self.transaction() as db:
            rows = db.execute(
                "SELECT i.id, i.blob, i.report_id FROM items AS i"
                " WHERE i.delivered_day IS NOT NULL AND i.delivered_day <= ?",
                (cutoff_day,),
            ).fetchall()
            blobs = [name for (_, name, _) in rows]
            db.executemany("DELETE FROM items WHERE id = ?", [(item_id,) for item_id, _, _ in rows])
            emptied = sorted({report_id for (_, _, report_id) in rows})
            orphaned = [
                report_id
                for report_id in emptied
                if db.execute(
                    "SELECT 1 FROM reports AS r JOIN sources AS s ON s.id = r.source_id"
                    " WHERE r.id = ? AND s.public_key IS NULL"
                    " AND NOT EXISTS (SELECT 1 FROM items WHERE report_id = r.id)",
                    (report_id,),
                ).fetchone()
            ]
            reports, sources, more = self._delete_reports(db, orphaned)
        return Purged(len(rows), reports, sources, tuple(blobs + more))

    @_writes
    def delete_reports(self, report_ids: list[str]) -> tuple[int, list[str]]:
        """Delete reports (and sources left without any); return (count, blob names)."""
        with self.transaction() as db:
            deleted, _, blobs = self._delete_reports(db, report_ids)
        return deleted, blobs

    # --- transfer stations' tokens -----------------------------------------------------------

    @_writes
    def add_pickup_token(self, name: str, token_hash: bytes) -> bool:
        """Record a token's hash under ``name``; False if the name is taken."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM pickup_tokens WHERE name = ?", (name,)).fetchone():
                return False
            db.execute(
                "INSERT INTO pickup_tokens (name, token_hash, day) VALUES (?, ?, ?)",
                (name, token_hash, today()),
            )
        return True

    @_writes
    def remove_pickup_token(self, name: str) -> bool:
        with self.transaction() as db:
            cursor = db.execute("DELETE FROM pickup_tokens WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def pickup_tokens(self) -> list[tuple[str, str]]:
        """``(name, day made)`` of every token, by name."""
        rows = self._db.execute("SELECT name, day FROM pickup_tokens ORDER BY name")
        return [(name, day) for name, day in rows]

    def pickup_token_name(self, token_hash: bytes) -> str | None:
        row = self._db.execute(
            "SELECT name FROM pickup_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _evict_drafts(
        db: sqlite3.Connection, keep: bytes, max_total_bytes: int
    ) -> tuple[bool, list[str]]:
        """Drop whole drafts, the soonest to expire first (the least recently added to, to
        the grain of their expiry), until all fit in ``max_total_bytes``; ``(keep survived, blob
        names dropped)``."""
        (total,) = db.execute("SELECT coalesce(sum(size), 0) FROM drafts").fetchone()
        dropped: list[str] = []
        kept = True
        while total > max_total_bytes:
            row = db.execute(
                "SELECT token_hash FROM drafts ORDER BY token_hash = ?, expires, token_hash"
                " LIMIT 1",
                (keep,),
            ).fetchone()
            if row is None:
                break
            names = db.execute(
                "SELECT blob, size FROM drafts WHERE token_hash = ?", (row[0],)
            ).fetchall()
            db.execute("DELETE FROM drafts WHERE token_hash = ?", (row[0],))
            dropped.extend(name for name, _ in names)
            total -= sum(size for _, size in names)
            kept = kept and row[0] != keep
        return kept, dropped

    @_writes
    def check_writes(self) -> None:
        """For the health check: a write that changes nothing, through the writer that every
        write takes (in a gunicorn server, the shared one).  It returns once that writer runs
        and has taken the index's write lock: what a report needs to be stored."""
        with self.transaction():
            pass

    def monitoring(self) -> tuple[int, str | None]:
        """For ``blagh status`` and the health check: how many items wait for the
        workstation, and the last day it acknowledged any (a day: nothing finer)."""
        pending, last = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM items WHERE delivered_day IS NULL"
            " AND kind IN ('fields', 'file', 'message')),"
            " (SELECT MAX(delivered_day) FROM items WHERE delivered_day IS NOT NULL)"
        ).fetchone()
        return int(pending), last

    # --- pickup: answering a request whose bundle did not change without listing items ------

    def pickup_state(self) -> "PickupState":
        """The pickup counters and the bundle last recorded for them: one row, one read."""
        row = self._db.execute(
            "SELECT generation, deletions, bundle_generation, bundle_context, bundle_key,"
            " bundle_items FROM pickup_state WHERE id = 1"
        ).fetchone()
        return PickupState(*row)

    def undelivered_snapshot(self) -> "PickupSnapshot":
        """:meth:`undelivered` and the pickup counters it goes with, read in one statement (so
        in one snapshot: a report committed meanwhile is in neither or in both)."""
        rows = self._db.execute(
            "SELECT g.generation, g.deletions, p.* FROM pickup_state AS g LEFT JOIN ("
            " SELECT i.id, i.report_id, r.source_id, i.kind, i.blob, i.size, i.sha256, i.day,"
            " i.seq, r.day AS report_day, s.public_key"
            " FROM items AS i JOIN reports AS r ON r.id = i.report_id"
            " JOIN sources AS s ON s.id = r.source_id"
            " WHERE i.delivered_day IS NULL AND i.kind IN ('fields', 'file', 'message')"
            ") AS p WHERE g.id = 1 ORDER BY p.report_day, p.report_id, p.seq"
        ).fetchall()
        generation, deletions = rows[0][0], rows[0][1]
        if rows[0][2] is None:
            return PickupSnapshot(generation, deletions, [])
        return PickupSnapshot(generation, deletions, [PendingItem(*row[2:13]) for row in rows])

    @_writes
    def record_pickup_bundle(self, generation: int, context: str, key: str, items: int) -> bool:
        """Remember that ``key`` is the bundle of ``generation`` (under the keys ``context``
        names), unless the set changed since; True if recorded."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE pickup_state SET bundle_generation = ?, bundle_context = ?,"
                " bundle_key = ?, bundle_items = ? WHERE id = 1 AND generation = ?",
                (generation, context, key, items, generation),
            )
        return cursor.rowcount > 0


def _checkpoint(db: sqlite3.Connection, mode: str) -> bool:
    """A WAL checkpoint of ``mode``; False if other connections kept it from completing."""
    busy, _, _ = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return not busy


def snapshot_file(index: Path, key: bytes, dest: Path) -> list[str]:
    """Copy the live index file to ``dest`` with SQLite's online backup API (``blagh backup``,
    while ``blagh serve`` runs); return the blob names the copy refers to (items and drafts)."""
    source = connect(index, key)
    try:
        copy_db = connect(dest, key, wal=False)
        try:
            source.backup(copy_db)
            rows = copy_db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts")
            return sorted(name for (name,) in rows)
        finally:
            copy_db.close()
    finally:
        source.close()


def check_file(index: Path, key: bytes) -> tuple[list[str], bool]:
    """The blob names a restored index file refers to, and whether SQLite finds it whole
    (``PRAGMA quick_check``).  Raises :class:`~blagh.sqlcipher.DatabaseError` when ``key`` does
    not open it."""
    db = connect(index, key, wal=False)
    try:
        rows = db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts").fetchall()
        (check,) = db.execute("PRAGMA quick_check").fetchone()
    finally:
        db.close()
    return [name for (name,) in rows], check == "ok"
