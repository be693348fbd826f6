"""The server store on PostgreSQL: the index and the envelopes, so that several source-interface
machines see every submission (docs/scale.md).

Same guarantees as SQLCipher + files (source_interface/store/index.py, blobs.py):

* an envelope is streamed into ``blob_chunks`` (:data:`CHUNK_BYTES` a row, never whole in
  memory) from the local temporary file the request sealed into, in one transaction; the row
  that refers to it commits later, as with files.  A crash in between leaves an envelope no row
  refers to: invisible, and removed by the sweep a day later;
* a write returns once PostgreSQL's COMMIT has returned, and the store refuses a server whose
  ``synchronous_commit`` is off or whose ``fsync`` is off: nothing is acknowledged before it is
  durable;
* days only: no ``timestamptz`` column, no ``serial``; every id random, every table ordered by
  its random key; the coarse expiries of sessions and drafts as in SQLCipher.  PostgreSQL keeps
  its own hidden columns (``xmin``) which order rows by transaction: nothing here reads or
  exposes them, but a seized PostgreSQL disk has them (docs/scale.md);
* ciphertext, ids, sizes, hashes and days only, as in SQLCipher; but the PostgreSQL files are
  not encrypted by Blagh: put them on an encrypted volume (docs/scale.md).

Writes go straight to the pool, one transaction each, on a bounded set of threads
(:class:`~blagh.offload.Offload`): PostgreSQL commits concurrent transactions together itself
(group commit in its WAL writer), so the SQLCipher store's writer thread is not needed, and a
single writer thread would serialise every machine's worker behind one connection.
"""

from __future__ import annotations

import atexit
import io
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from blagh.blobs import BlobFolder, BlobRef, PendingBlob
from blagh.errors import SetupError
from blagh.offload import Offload
from source_interface.errors import SourceInterfaceError
from source_interface.store.records import (
    AppliedReplies,
    DuplicateSubmission,
    Item,
    NewReply,
    NewSession,
    NewSource,
    PendingItem,
    PickupSnapshot,
    PickupState,
    Purged,
    ReplyConflict,
    Report,
    Session,
    Source,
    Submission,
    coarse_expiry,
    new_id,
    today,
)

_T = TypeVar("_T")

CHUNK_BYTES = 256 * 1024
"""Bytes of an envelope per ``blob_chunks`` row: what a read or a write holds at once."""

POOL_SIZE = 8
"""Connections per worker process (and threads that use them)."""

QUEUE = 4096

CONNECT_SECONDS = 10

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS blagh_schema (
    id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id text PRIMARY KEY, verifier bytea UNIQUE, public_key bytea, day text NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id text PRIMARY KEY,
    source_id text NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    day text NOT NULL, seq integer NOT NULL);
CREATE INDEX IF NOT EXISTS reports_by_source ON reports(source_id, seq);
CREATE TABLE IF NOT EXISTS blobs (
    name text PRIMARY KEY, size bigint NOT NULL, sha256 text NOT NULL, day text NOT NULL);
CREATE TABLE IF NOT EXISTS blob_chunks (
    name text NOT NULL REFERENCES blobs(name) ON DELETE CASCADE,
    seq integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (name, seq));
CREATE TABLE IF NOT EXISTS items (
    id text PRIMARY KEY,
    report_id text NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('fields', 'file', 'message', 'reply')),
    blob text NOT NULL UNIQUE, size bigint NOT NULL, sha256 text NOT NULL,
    day text NOT NULL, seq integer NOT NULL, delivered_day text);
CREATE INDEX IF NOT EXISTS items_by_report ON items(report_id, seq);
CREATE INDEX IF NOT EXISTS items_by_delivery ON items(delivered_day);
CREATE TABLE IF NOT EXISTS drafts (
    blob text PRIMARY KEY, token_hash bytea NOT NULL, size bigint NOT NULL,
    sha256 text NOT NULL, expires bigint NOT NULL, seq integer NOT NULL);
CREATE INDEX IF NOT EXISTS drafts_by_token ON drafts(token_hash, seq);
CREATE INDEX IF NOT EXISTS drafts_by_expiry ON drafts(expires);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash bytea PRIMARY KEY,
    source_id text NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    sealed_secret bytea NOT NULL, expires bigint NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires);
CREATE INDEX IF NOT EXISTS sessions_by_source ON sessions(source_id);
CREATE TABLE IF NOT EXISTS submissions (
    key bytea PRIMARY KEY, outcome text NOT NULL, day text NOT NULL);
CREATE INDEX IF NOT EXISTS submissions_by_day ON submissions(day);
CREATE TABLE IF NOT EXISTS applied_bundles (id text PRIMARY KEY, day text NOT NULL);
CREATE TABLE IF NOT EXISTS pickup_tokens (
    name text PRIMARY KEY, token_hash bytea NOT NULL UNIQUE, day text NOT NULL);
CREATE TABLE IF NOT EXISTS pickup_state (
    id integer PRIMARY KEY CHECK (id = 1), generation bigint NOT NULL, deletions bigint NOT NULL,
    bundle_generation bigint, bundle_context text, bundle_key text, bundle_items integer);
INSERT INTO pickup_state (id, generation, deletions) VALUES (1, 0, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION blagh_pickup_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.delivered_day IS NULL AND NEW.kind <> 'reply' THEN
            UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF (OLD.delivered_day IS NULL AND OLD.kind <> 'reply')
                OR (NEW.delivered_day IS NULL AND NEW.kind <> 'reply') THEN
            UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
        END IF;
    ELSE
        UPDATE pickup_state SET deletions = deletions + 1,
            generation = generation
                + (OLD.delivered_day IS NULL AND OLD.kind <> 'reply')::integer
        WHERE id = 1;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION blagh_pickup_parents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE pickup_state SET generation = generation + 1, deletions = deletions + 1 WHERE id = 1;
    ELSE
        UPDATE pickup_state SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER pickup_items AFTER INSERT OR UPDATE OR DELETE ON items
    FOR EACH ROW EXECUTE FUNCTION blagh_pickup_items();
CREATE OR REPLACE TRIGGER pickup_reports AFTER UPDATE OF id, source_id, day OR DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION blagh_pickup_parents();
CREATE OR REPLACE TRIGGER pickup_sources AFTER UPDATE OF id, public_key OR DELETE ON sources
    FOR EACH ROW EXECUTE FUNCTION blagh_pickup_parents();
"""

_UNDELIVERED = (
    "SELECT i.id, i.report_id, r.source_id, i.kind, i.blob, i.size, i.sha256, i.day,"
    " i.seq, r.day AS report_day, s.public_key"
    " FROM items AS i JOIN reports AS r ON r.id = i.report_id"
    " JOIN sources AS s ON s.id = r.source_id"
    " WHERE i.delivered_day IS NULL AND i.kind IN ('fields', 'file', 'message')"
)


_BY_ID = "SELECT id, public_key, day FROM sources WHERE id = %s"
_BY_VERIFIER = "SELECT id, public_key, day FROM sources WHERE verifier = %s"


class PostgresError(SourceInterfaceError, SetupError):
    """The PostgreSQL server cannot be used as it is (said without the DSN: it may hold a
    password)."""


def _yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def _day_of(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


class PgIndex:
    """The index's operations (the same as :class:`~source_interface.store.index.Index`) on a
    connection pool; every call runs on :attr:`jobs`, off the event loop."""

    def __init__(self, dsn: str) -> None:
        self.jobs = Offload("postgresql", threads=POOL_SIZE, queue=QUEUE)
        try:
            # One connection first: a wrong DSN fails at once, not after the pool's retries.
            psycopg.connect(dsn, connect_timeout=CONNECT_SECONDS).close()
            self._pool = ConnectionPool(
                dsn,
                min_size=1,
                max_size=POOL_SIZE,
                open=True,
                timeout=30,
                kwargs={"autocommit": False},
            )
            self._pool.wait(timeout=30)
        except Exception:
            raise PostgresError(
                "cannot connect to PostgreSQL with [store] dsn: check that the server runs and "
                "that the DSN's host, port, user and database are right"
            ) from None
        try:
            self._run(self._make_schema)
        except BaseException:
            self._pool.close()
            raise
        # A worker's store lives as long as the process: close the pool before the interpreter
        # is finalised, or its finaliser fails there (under gevent, with a traceback in the log).
        atexit.register(_close_at_exit, weakref.ref(self))

    def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return self.jobs.run(function, *args)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction: committed when the block ends (COMMIT returned: durable), rolled
        back if it raises."""
        with self._pool.connection() as db, db.transaction():
            yield db

    def _make_schema(self) -> None:
        with self.transaction() as db:
            for setting in ("fsync", "synchronous_commit"):
                (value,) = db.execute(f"SHOW {setting}").fetchone() or ("off",)
                if value == "off":
                    raise PostgresError(
                        f"PostgreSQL has {setting} = {value}: an acknowledged report could be "
                        "lost in a crash; set it to on"
                    )
            db.execute("SELECT pg_advisory_xact_lock(7256)")  # workers starting together
            db.execute(SCHEMA)
            db.execute(
                "INSERT INTO blagh_schema (id, version) VALUES (1, %s) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )
            row = db.execute("SELECT version FROM blagh_schema WHERE id = 1").fetchone()
            if row is None or row[0] != SCHEMA_VERSION:
                raise PostgresError(
                    "the PostgreSQL database was made by another version of Blagh; run the "
                    "version that made it"
                )

    def close(self) -> None:
        self._pool.close()
        self.jobs.close()

    # --- sources, reports, items --------------------------------------------------------

    def create_source(self, verifier: bytes | None, public_key: bytes | None) -> Source:
        source = Source(new_id(), public_key, today())

        def write() -> None:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO sources (id, verifier, public_key, day) VALUES (%s, %s, %s, %s)",
                    (source.id, verifier, public_key, source.day),
                )

        self._run(write)
        return source

    def source_by_verifier(self, verifier: bytes) -> Source | None:
        return self._run(self._source, _BY_VERIFIER, verifier)

    def source(self, source_id: str) -> Source | None:
        return self._run(self._source, _BY_ID, source_id)

    def _source(self, query: str, value: Any) -> Source | None:
        with self.transaction() as db:
            row = db.execute(query, (value,)).fetchone()
        return Source(row[0], row[1], row[2]) if row else None

    def add_report(
        self,
        source_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
        new_source: NewSource | None = None,
        submission: Submission | None = None,
        new_session: NewSession | None = None,
    ) -> Report:
        """As :meth:`Index.add_report`: one transaction, a form's submission recorded once
        (a concurrent duplicate waits for the first's commit on the key, then is refused)."""
        return self._run(
            self._add_report, source_id, items, draft, new_source, submission, new_session
        )

    def _add_report(
        self,
        source_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None,
        new_source: NewSource | None,
        submission: Submission | None,
        new_session: NewSession | None,
    ) -> Report:
        report_id = new_id()
        day = today()
        with self.transaction() as db:
            if submission is not None:
                inserted = db.execute(
                    "INSERT INTO submissions (key, outcome, day) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    (submission.key, submission.outcome, day),
                ).fetchone()
                if inserted is None:
                    found = db.execute(
                        "SELECT outcome FROM submissions WHERE key = %s", (submission.key,)
                    ).fetchone()
                    raise DuplicateSubmission(found[0] if found else submission.outcome)
            if new_source is not None:
                db.execute(
                    "INSERT INTO sources (id, verifier, public_key, day) VALUES (%s, %s, %s, %s)",
                    (source_id, new_source.verifier, new_source.public_key, day),
                )
            db.execute("SELECT 1 FROM sources WHERE id = %s FOR UPDATE", (source_id,))
            db.execute(
                "INSERT INTO reports (id, source_id, day, seq) SELECT %s, %s, %s,"
                " coalesce(max(seq), 0) + 1 FROM reports WHERE source_id = %s",
                (report_id, source_id, day, source_id),
            )
            _insert_items(db, report_id, items)
            if draft is not None:
                db.execute("DELETE FROM drafts WHERE token_hash = %s", (draft,))
            if new_session is not None:
                db.execute(
                    "INSERT INTO sessions (token_hash, source_id, sealed_secret, expires)"
                    " VALUES (%s, %s, %s, %s)",
                    (
                        new_session.token_hash,
                        source_id,
                        new_session.sealed_secret,
                        int(time.time()) + new_session.lifetime,
                    ),
                )
        found = self._report(source_id, report_id)
        assert found is not None
        return found

    def add_items(
        self,
        source_id: str,
        report_id: str,
        items: list[tuple[str, BlobRef]],
        draft: bytes | None = None,
    ) -> bool:
        def write() -> bool:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT source_id FROM reports WHERE id = %s FOR UPDATE", (report_id,)
                ).fetchone()
                if row is None or row[0] != source_id:
                    return False
                _insert_items(db, report_id, items)
                if draft is not None:
                    db.execute("DELETE FROM drafts WHERE token_hash = %s", (draft,))
            return True

        return self._run(write)

    def reports_of(self, source_id: str) -> list[Report]:
        def read() -> list[Report]:
            with self.transaction() as db:
                reports = db.execute(
                    "SELECT id, source_id, day FROM reports WHERE source_id = %s ORDER BY seq",
                    (source_id,),
                ).fetchall()
                items: dict[str, list[Item]] = {}
                for row in db.execute(
                    "SELECT i.id, i.report_id, i.kind, i.blob, i.size, i.sha256, i.day"
                    " FROM items AS i JOIN reports AS r ON r.id = i.report_id"
                    " WHERE r.source_id = %s ORDER BY i.report_id, i.seq",
                    (source_id,),
                ).fetchall():
                    items.setdefault(row[1], []).append(Item(*row))
            return [Report(r[0], r[1], r[2], tuple(items.get(r[0], ()))) for r in reports]

        return self._run(read)

    def report(self, source_id: str, report_id: str) -> Report | None:
        return self._run(self._report, source_id, report_id)

    def _report(self, source_id: str, report_id: str) -> Report | None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, source_id, day FROM reports WHERE id = %s AND source_id = %s",
                (report_id, source_id),
            ).fetchone()
            if row is None:
                return None
            items = db.execute(
                "SELECT id, report_id, kind, blob, size, sha256, day FROM items"
                " WHERE report_id = %s ORDER BY seq",
                (report_id,),
            ).fetchall()
        return Report(row[0], row[1], row[2], tuple(Item(*i) for i in items))

    def delete_source(self, source_id: str) -> list[str]:
        def write() -> list[str]:
            with self.transaction() as db:
                rows = db.execute(
                    "SELECT items.blob FROM items JOIN reports ON items.report_id = reports.id"
                    " WHERE reports.source_id = %s",
                    (source_id,),
                ).fetchall()
                db.execute("DELETE FROM sources WHERE id = %s", (source_id,))
            return [name for (name,) in rows]

        return self._run(write)

    def blob_names(self) -> set[str]:
        def read() -> set[str]:
            with self.transaction() as db:
                rows = db.execute("SELECT blob FROM items UNION SELECT blob FROM drafts")
                return {name for (name,) in rows}

        return self._run(read)

    def delete_sources_without_reports(self) -> int:
        def write() -> int:
            with self.transaction() as db:
                cursor = db.execute(
                    "DELETE FROM sources AS s"
                    " WHERE NOT EXISTS (SELECT 1 FROM reports WHERE source_id = s.id)"
                )
            return cursor.rowcount

        return self._run(write)

    # --- drafts -------------------------------------------------------------------------

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
        """As :meth:`Index.add_to_draft`; the bounds are checked under one advisory lock, so
        two machines cannot both squeeze past them."""

        def write() -> tuple[bool, list[str]]:
            expires = coarse_expiry(time.time(), lifetime)
            with self.transaction() as db:
                db.execute("SELECT pg_advisory_xact_lock(7257)")
                count, size, seq = db.execute(
                    "SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0)"
                    " FROM drafts WHERE token_hash = %s",
                    (token_hash,),
                ).fetchone() or (0, 0, 0)
                new_size = sum(b.size for b in blobs)
                if (max_files is not None and count + len(blobs) > max_files) or (
                    max_bytes is not None and size + new_size > max_bytes
                ):
                    return False, [b.name for b in blobs]
                db.execute(
                    "UPDATE drafts SET expires = %s WHERE token_hash = %s", (expires, token_hash)
                )
                with db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO drafts (token_hash, blob, size, sha256, expires, seq)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (token_hash, b.name, b.size, b.sha256, expires, seq + offset)
                            for offset, b in enumerate(blobs, start=1)
                        ],
                    )
                if max_total_bytes is None:
                    return True, []
                return _evict_drafts(db, token_hash, max_total_bytes)

        return self._run(write)

    def remove_from_draft(self, token_hash: bytes, names: list[str]) -> list[str]:
        def write() -> list[str]:
            removed = []
            with self.transaction() as db:
                for name in names:
                    cursor = db.execute(
                        "DELETE FROM drafts WHERE token_hash = %s AND blob = %s",
                        (token_hash, name),
                    )
                    if cursor.rowcount:
                        removed.append(name)
            return removed

        return self._run(write)

    def draft(self, token_hash: bytes) -> list[BlobRef]:
        def read() -> list[BlobRef]:
            with self.transaction() as db:
                rows = db.execute(
                    "SELECT blob, size, sha256 FROM drafts WHERE token_hash = %s"
                    " AND expires >= %s ORDER BY seq",
                    (token_hash, int(time.time())),
                ).fetchall()
            return [BlobRef(*row) for row in rows]

        return self._run(read)

    def expire_drafts(self) -> list[str]:
        def write() -> list[str]:
            with self.transaction() as db:
                rows = db.execute(
                    "DELETE FROM drafts WHERE expires < %s RETURNING blob", (int(time.time()),)
                ).fetchall()
            return [name for (name,) in rows]

        return self._run(write)

    # --- sessions and submissions -------------------------------------------------------

    def create_session(
        self, token_hash: bytes, source_id: str, sealed_secret: bytes, lifetime: int
    ) -> None:
        self._write(
            "INSERT INTO sessions (token_hash, source_id, sealed_secret, expires)"
            " VALUES (%s, %s, %s, %s)",
            (token_hash, source_id, sealed_secret, coarse_expiry(time.time(), lifetime)),
        )

    def replace_session_secret(self, token_hash: bytes, sealed_secret: bytes) -> None:
        self._write(
            "UPDATE sessions SET sealed_secret = %s WHERE token_hash = %s",
            (sealed_secret, token_hash),
        )

    def session(self, token_hash: bytes, lifetime: int) -> Session | None:
        """As :meth:`Index.session`: the expiry written back only when it moves a grain."""

        def read() -> Session | None:
            now = int(time.time())
            with self.transaction() as db:
                row = db.execute(
                    "SELECT source_id, sealed_secret, expires FROM sessions"
                    " WHERE token_hash = %s AND expires >= %s",
                    (token_hash, now),
                ).fetchone()
                if row is None:
                    return None
                expires = int(row[2])
                later = coarse_expiry(now, lifetime)
                if expires < later:
                    expires = later
                    cursor = db.execute(
                        "UPDATE sessions SET expires = %s WHERE token_hash = %s AND expires >= %s",
                        (expires, token_hash, now),
                    )
                    if not cursor.rowcount:
                        return None
            return Session(row[0], bytes(row[1]), expires)

        return self._run(read)

    def delete_session(self, token_hash: bytes) -> None:
        self._write("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    def expire_sessions(self) -> int:
        return self._write("DELETE FROM sessions WHERE expires < %s", (int(time.time()),))

    def submission(self, key: bytes) -> str | None:
        def read() -> str | None:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT outcome FROM submissions WHERE key = %s", (key,)
                ).fetchone()
            return str(row[0]) if row else None

        return self._run(read)

    def expire_submissions(self) -> int:
        return self._write("DELETE FROM submissions WHERE day < %s", (_yesterday(),))

    def _write(self, statement: str, args: tuple[Any, ...]) -> int:
        def write() -> int:
            with self.transaction() as db:
                return db.execute(statement, args).rowcount

        return self._run(write)

    # --- scrubbing: PostgreSQL's own ------------------------------------------------------

    def scrub_pending(self) -> bool:
        """Nothing to do here: PostgreSQL reuses dead rows' space after (auto)vacuum, and its
        WAL segments are recycled by the server (docs/scale.md says what that leaves)."""
        return False

    def scrub(self) -> bool:
        return True

    # --- pickup --------------------------------------------------------------------------

    def undelivered(self) -> list[PendingItem]:
        return self.undelivered_snapshot().items

    def undelivered_snapshot(self) -> PickupSnapshot:
        """The counters and the items in one REPEATABLE READ snapshot."""

        def read() -> PickupSnapshot:
            with self._pool.connection() as db:
                db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                try:
                    with db.transaction():
                        generation, deletions = db.execute(
                            "SELECT generation, deletions FROM pickup_state WHERE id = 1"
                        ).fetchone() or (0, 0)
                        rows = db.execute(
                            _UNDELIVERED + " ORDER BY report_day, i.report_id, i.seq"
                        ).fetchall()
                finally:
                    db.isolation_level = None
            return PickupSnapshot(generation, deletions, [_pending(row) for row in rows])

        return self._run(read)

    def check_writes(self) -> None:
        """As the SQLCipher index's: a transaction that changes nothing, on the pool every
        write takes."""

        def check() -> None:
            with self.transaction() as db:
                db.execute("SELECT 1")

        self._run(check)

    def monitoring(self) -> tuple[int, str | None]:
        """As the SQLCipher index's: items waiting for the workstation, the last day any was
        acknowledged."""

        def read() -> tuple[int, str | None]:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT (SELECT COUNT(*) FROM items WHERE delivered_day IS NULL"
                    " AND kind IN ('fields', 'file', 'message')),"
                    " (SELECT MAX(delivered_day) FROM items)"
                ).fetchone()
            assert row is not None
            return int(row[0]), row[1]

        return self._run(read)

    def pickup_state(self) -> PickupState:
        def read() -> PickupState:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT generation, deletions, bundle_generation, bundle_context,"
                    " bundle_key, bundle_items FROM pickup_state WHERE id = 1"
                ).fetchone()
            assert row is not None
            return PickupState(*row)

        return self._run(read)

    def record_pickup_bundle(self, generation: int, context: str, key: str, items: int) -> bool:
        return bool(
            self._write(
                "UPDATE pickup_state SET bundle_generation = %s, bundle_context = %s,"
                " bundle_key = %s, bundle_items = %s WHERE id = 1 AND generation = %s",
                (generation, context, key, items, generation),
            )
        )

    def bundle_applied(self, bundle_id: str) -> bool:
        def read() -> bool:
            with self.transaction() as db:
                row = db.execute("SELECT 1 FROM applied_bundles WHERE id = %s", (bundle_id,))
                return row.fetchone() is not None

        return self._run(read)

    def apply_replies(
        self,
        bundle_id: str,
        replies: list[NewReply],
        acknowledged: list[str],
        delete_reports: list[str],
    ) -> AppliedReplies | None:
        """As :meth:`Index.apply_replies`, in one transaction."""
        return self._run(self._apply_replies, bundle_id, replies, acknowledged, delete_reports)

    def _apply_replies(
        self,
        bundle_id: str,
        replies: list[NewReply],
        acknowledged: list[str],
        delete_reports: list[str],
    ) -> AppliedReplies | None:
        day = today()
        stored = already = dropped = acked = 0
        unused: list[str] = []
        with self.transaction() as db:
            inserted = db.execute(
                "INSERT INTO applied_bundles (id, day) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (bundle_id, day),
            ).fetchone()
            if inserted is None:
                return None
            for item_id in acknowledged:
                acked += db.execute(
                    "UPDATE items SET delivered_day = %s WHERE id = %s"
                    " AND delivered_day IS NULL AND kind IN ('fields', 'file', 'message')",
                    (day, item_id),
                ).rowcount
            for reply in replies:
                existing = db.execute(
                    "SELECT report_id, kind, sha256 FROM items WHERE id = %s", (reply.id,)
                ).fetchone()
                if existing is not None:
                    if tuple(existing) != (reply.report_id, "reply", reply.blob.sha256):
                        raise ReplyConflict(reply.id)
                    already += 1
                    unused.append(reply.blob.name)
                    continue
                target = db.execute(
                    "SELECT s.public_key FROM reports AS r JOIN sources AS s"
                    " ON s.id = r.source_id WHERE r.id = %s FOR UPDATE OF r",
                    (reply.report_id,),
                ).fetchone()
                if target is None or target[0] is None:
                    dropped += 1
                    unused.append(reply.blob.name)
                    continue
                db.execute(
                    "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
                    " SELECT %s, %s, 'reply', %s, %s, %s, %s, coalesce(max(seq), 0) + 1"
                    " FROM items WHERE report_id = %s",
                    (
                        reply.id,
                        reply.report_id,
                        reply.blob.name,
                        reply.blob.size,
                        reply.blob.sha256,
                        day,
                        reply.report_id,
                    ),
                )
                stored += 1
            deleted, sources, blobs = _delete_reports(db, delete_reports)
            unused += blobs
        return AppliedReplies(stored, already, dropped, acked, deleted, sources, tuple(unused))

    def purge_delivered(self, cutoff_day: str) -> Purged:
        def write() -> Purged:
            with self.transaction() as db:
                rows = db.execute(
                    "DELETE FROM items WHERE delivered_day IS NOT NULL AND delivered_day <= %s"
                    " RETURNING id, blob, report_id",
                    (cutoff_day,),
                ).fetchall()
                blobs = [name for (_, name, _) in rows]
                emptied = sorted({report_id for (_, _, report_id) in rows})
                orphaned = [
                    report_id
                    for report_id in emptied
                    if db.execute(
                        "SELECT 1 FROM reports AS r JOIN sources AS s ON s.id = r.source_id"
                        " WHERE r.id = %s AND s.public_key IS NULL"
                        " AND NOT EXISTS (SELECT 1 FROM items WHERE report_id = r.id)",
                        (report_id,),
                    ).fetchone()
                ]
                reports, sources, more = _delete_reports(db, orphaned)
            return Purged(len(rows), reports, sources, tuple(blobs + more))

        return self._run(write)

    def delete_reports(self, report_ids: list[str]) -> tuple[int, list[str]]:
        def write() -> tuple[int, list[str]]:
            with self.transaction() as db:
                deleted, _, blobs = _delete_reports(db, report_ids)
            return deleted, blobs

        return self._run(write)

    # --- transfer stations' tokens -------------------------------------------------------

    def add_pickup_token(self, name: str, token_hash: bytes) -> bool:
        return bool(
            self._write(
                "INSERT INTO pickup_tokens (name, token_hash, day) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, token_hash, today()),
            )
        )

    def remove_pickup_token(self, name: str) -> bool:
        return self._write("DELETE FROM pickup_tokens WHERE name = %s", (name,)) > 0

    def pickup_tokens(self) -> list[tuple[str, str]]:
        def read() -> list[tuple[str, str]]:
            with self.transaction() as db:
                rows = db.execute("SELECT name, day FROM pickup_tokens ORDER BY name").fetchall()
            return [(name, day) for name, day in rows]

        return self._run(read)

    def pickup_token_name(self, token_hash: bytes) -> str | None:
        def read() -> str | None:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT name FROM pickup_tokens WHERE token_hash = %s", (token_hash,)
                ).fetchone()
            return None if row is None else str(row[0])

        return self._run(read)

    # --- envelopes -----------------------------------------------------------------------

    def put_blob(self, name: str, path: Path) -> None:
        """Stream the file at ``path`` into the database as blob ``name``, one transaction."""

        def write() -> None:
            import hashlib

            digest, size = hashlib.sha256(), 0
            with self.transaction() as db, open(path, "rb") as f:
                db.execute(
                    "INSERT INTO blobs (name, size, sha256, day) VALUES (%s, 0, '', %s)",
                    (name, today()),
                )
                for seq, chunk in enumerate(iter(lambda: f.read(CHUNK_BYTES), b"")):
                    db.execute(
                        "INSERT INTO blob_chunks (name, seq, data) VALUES (%s, %s, %s)",
                        (name, seq, chunk),
                    )
                    digest.update(chunk)
                    size += len(chunk)
                db.execute(
                    "UPDATE blobs SET size = %s, sha256 = %s WHERE name = %s",
                    (size, digest.hexdigest(), name),
                )

        self._run(write)

    def blob_chunk(self, name: str, seq: int) -> bytes | None:
        def read() -> bytes | None:
            with self.transaction() as db:
                row = db.execute(
                    "SELECT data FROM blob_chunks WHERE name = %s AND seq = %s", (name, seq)
                ).fetchone()
            return None if row is None else bytes(row[0])

        return self._run(read)

    def blob_exists(self, name: str) -> bool:
        def read() -> bool:
            with self.transaction() as db:
                row = db.execute("SELECT 1 FROM blobs WHERE name = %s", (name,)).fetchone()
            return row is not None

        return self._run(read)

    def delete_blob(self, name: str) -> None:
        self._write("DELETE FROM blobs WHERE name = %s", (name,))

    def stored_blob_names(self) -> set[str]:
        def read() -> set[str]:
            with self.transaction() as db:
                return {name for (name,) in db.execute("SELECT name FROM blobs").fetchall()}

        return self._run(read)

    def sweep_blobs(self, before_day: str | None) -> int:
        """Delete envelopes no row refers to, stored before ``before_day`` (None: all)."""
        return self._write(
            "DELETE FROM blobs AS b WHERE (%s::text IS NULL OR b.day < %s)"
            " AND NOT EXISTS (SELECT 1 FROM items WHERE blob = b.name)"
            " AND NOT EXISTS (SELECT 1 FROM drafts WHERE blob = b.name)",
            (before_day, before_day),
        )


def _close_at_exit(index: weakref.ref[PgIndex]) -> None:
    alive = index()
    if alive is not None:
        alive.close()


def _pending(row: tuple[Any, ...]) -> PendingItem:
    values = list(row)
    if values[10] is not None:
        values[10] = bytes(values[10])
    return PendingItem(*values)


def _insert_items(
    db: psycopg.Connection[Any], report_id: str, items: list[tuple[str, BlobRef]]
) -> None:
    row = db.execute(
        "SELECT coalesce(max(seq), 0) FROM items WHERE report_id = %s", (report_id,)
    ).fetchone()
    seq = row[0] if row else 0
    day = today()
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (new_id(), report_id, kind, blob.name, blob.size, blob.sha256, day, seq + n)
                for n, (kind, blob) in enumerate(items, start=1)
            ],
        )


def _delete_reports(
    db: psycopg.Connection[Any], report_ids: list[str]
) -> tuple[int, int, list[str]]:
    blobs: list[str] = []
    touched: set[str] = set()
    deleted = 0
    for report_id in report_ids:
        rows = db.execute("SELECT blob FROM items WHERE report_id = %s", (report_id,)).fetchall()
        found = db.execute(
            "DELETE FROM reports WHERE id = %s RETURNING source_id", (report_id,)
        ).fetchone()
        if found is None:
            continue
        touched.add(found[0])
        blobs += [name for (name,) in rows]  # the items went with it (ON DELETE CASCADE)
        deleted += 1
    sources = 0
    for source_id in sorted(touched):
        sources += db.execute(
            "DELETE FROM sources WHERE id = %s"
            " AND NOT EXISTS (SELECT 1 FROM reports WHERE source_id = %s)",
            (source_id, source_id),
        ).rowcount
    return deleted, sources, blobs


def _evict_drafts(
    db: psycopg.Connection[Any], keep: bytes, max_total_bytes: int
) -> tuple[bool, list[str]]:
    row = db.execute("SELECT coalesce(sum(size), 0) FROM drafts").fetchone()
    total = row[0] if row else 0
    dropped: list[str] = []
    kept = True
    while total > max_total_bytes:
        victim = db.execute(
            "SELECT token_hash FROM drafts ORDER BY token_hash = %s, expires, token_hash LIMIT 1",
            (keep,),
        ).fetchone()
        if victim is None:
            break
        names = db.execute(
            "DELETE FROM drafts WHERE token_hash = %s RETURNING blob, size", (victim[0],)
        ).fetchall()
        dropped.extend(name for name, _ in names)
        total -= sum(size for _, size in names)
        kept = kept and bytes(victim[0]) != keep
    return kept, dropped


class PgPendingBlob(PendingBlob):
    """Sealed into a local temporary file as on the SQLCipher store (ciphertext only), then
    streamed into PostgreSQL at commit and the file removed."""

    def _make_durable(self) -> None:
        folder = self._folder
        assert isinstance(folder, PgBlobFolder)
        try:
            self._file.flush()
            self._file.close()
            folder.index.put_blob(self.name, self._temp)
        except BaseException:
            self.discard()
            raise
        self._temp.unlink(missing_ok=True)


class PgBlobFolder(BlobFolder):
    """Committed envelopes in PostgreSQL; the local folder keeps only blobs being written
    (``tmp/``) and the pool of ready files."""

    pending_class = PgPendingBlob

    def __init__(self, root: Path, index: PgIndex, *, pool_size: int = 0) -> None:
        super().__init__(root, pool_size=pool_size)
        self.index = index

    def link_in(self, path: Path, name: str) -> None:
        self.path_of(name)  # a valid name
        self.index.put_blob(name, path)

    def open(self, name: str) -> BinaryIO:
        self.path_of(name)
        if not self.index.blob_exists(name):
            raise FileNotFoundError(name)
        return io.BufferedReader(_ChunkReader(self.index, name), CHUNK_BYTES)

    def stamp(self, name: str) -> None:
        """Rows keep days only: nothing to set back."""

    def restamp(self) -> int:
        return 0

    def delete(self, name: str) -> None:
        self.path_of(name)
        self.index.delete_blob(name)

    def renamed(self) -> None:
        """Nothing is renamed into a folder here."""

    def names(self) -> set[str]:
        return self.index.stored_blob_names()

    def sweep(self, referenced: set[str], min_age: float = 0.0, now: float | None = None) -> int:
        """Temporary files older than ``min_age``; envelopes no row refers to, stored before
        the day ``min_age`` ago (rows keep days only: an orphan lives a day or two), or all of
        them with 0 (nothing in flight)."""
        moment = time.time() if now is None else now
        removed = self._remove_temporary(moment - min_age)
        before = _day_of(moment - min_age) if min_age else None
        return removed + self.index.sweep_blobs(before)


class _ChunkReader(io.RawIOBase):
    """An envelope read from ``blob_chunks`` a row at a time."""

    def __init__(self, index: PgIndex, name: str) -> None:
        self._index = index
        self._name = name
        self._seq = 0
        self._buffer = b""
        self._end = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if not self._buffer and not self._end:
            chunk = self._index.blob_chunk(self._name, self._seq)
            self._seq += 1
            if chunk is None:
                self._end = True
            else:
                self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
