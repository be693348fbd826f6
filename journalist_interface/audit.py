"""The audit log: who did what to which report, append-only and hash-chained.

Every view, status change, reply, export, deletion and purge is one entry in the vault's
``audit`` table (inside the SQLCipher database, so it is as private as the reports)::

    seq      1, 2, 3…  with no gap
    at       UTC time to the second, "2025-03-14T10:22:01Z"
    analyst  who: the account name, or the analyst key's fingerprint
    event    what: "view", "status", "reply", "export", "purge"… (EVENTS)
    fields   canonical JSON of the details ({"report": "…", "status": "closed"})
    prev     the previous entry's hash (64 zeros for the first)
    hash     SHA-256 of the canonical JSON of all the above

Each entry names the hash of the one before, so editing an entry changes its hash and breaks the
link from the next one, and removing one leaves a gap in ``seq`` and a broken link.  The newest
``seq:hash`` is also kept in the vault's settings, written in the same transaction, so removing
the newest entries is detected too.  Triggers refuse UPDATE and DELETE on the table: nothing in
Blagh can rewrite the log, and what is done behind its back (with the passphrase and a SQLCipher
shell) is caught by :func:`verify`.  Someone holding the passphrase could still rebuild a whole
chain; the head printed by ``blagh workstation audit verify`` and written into every evidence
export is the anchor to keep elsewhere to catch that.

Use::

    from journalist_interface import audit
    audit.record(vault, analyst, "status", report=report_id, status="closed")

or, inside a write that must be logged with it, all or nothing::

    with vault.transaction() as db:
        ...
        audit.append(db, analyst, "purge", {"report": report_id})

Field values are what canonical JSON allows: str, int, bool, None, lists and dicts of them.
Nothing a reporter wrote goes into the log: ids, statuses, counts and file hashes only.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crypto.manifest import canonical_json
from journalist_interface.vault import Vault

GENESIS = "0" * 64
HEAD_SETTING = "audit_head"

EVENTS = frozenset(
    {
        "login",
        "logout",
        "import",
        "view",  # a report's page
        "view_file",  # an attachment downloaded, or its safe preview revealed
        "metadata",  # an attachment's metadata read (mat2, exiftool)
        "clean_copy",  # a mat2-cleaned copy downloaded
        "status",
        "assign",
        "notes",
        "tags",
        "reply",
        "reply_bundle",
        "deletion_request",
        "export",
        "purge",
        "account",
        "takedown",  # a takedown notice drafted, sent, or the platform's answer
        "notice_template",  # a takedown notice template edited
        "reporter_status",  # the status the reporter sees, set
    }
)
"""The events Blagh records.  :func:`record` accepts any name of the same shape, so a new
feature can log before this list is updated; keep it in step all the same (docs/workstation.md)."""

_EVENT = re.compile(r"[a-z][a-z0-9_.]{0,39}")
_MAX_ANALYST = 200

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        analyst TEXT NOT NULL,
        event TEXT NOT NULL,
        fields TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
_TRIGGERS = ("audit_no_update", "audit_no_delete")


@dataclass(frozen=True)
class Entry:
    """One line of the audit log."""

    seq: int
    at: str
    analyst: str
    event: str
    fields: dict[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """What the hash covers: everything but the hash."""
        return {
            "seq": self.seq,
            "at": self.at,
            "analyst": self.analyst,
            "event": self.event,
            "fields": self.fields,
            "prev": self.prev,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def line(self) -> str:
        """The entry as one line of canonical JSON (for ``audit show`` and evidence exports)."""
        return canonical_json(self.to_dict()).decode("utf-8")


@dataclass(frozen=True)
class Check:
    """What :func:`verify` found: how many entries, the newest hash, and every problem."""

    entries: int
    head: str
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's body."""
    return hashlib.sha256(canonical_json(dict(body))).hexdigest()


def analyst_of(vault: Vault) -> str:
    """Who acts through ``vault``: its ``analyst`` (the account name), else :func:`key_analyst`."""
    name = getattr(vault, "analyst", "")
    return str(name) if name else key_analyst(vault)


def key_analyst(vault: Vault) -> str:
    """The name of the vault's analyst key, until accounts give analysts names of their own:
    ``key:`` and its fingerprint."""
    return "key:" + vault.key.public().fingerprint()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(vault: Vault, event: str, **fields: Any) -> Entry:
    """Append an entry as the vault's :attr:`~journalist_interface.vault.Vault.analyst`, in a
    transaction of its own (not inside ``vault.transaction()``: use :func:`append` there)."""
    return record(vault, vault.analyst, event, **fields)


def record(vault: Vault, analyst: str, event: str, **fields: Any) -> Entry:
    """Append one entry to ``vault``'s audit log, in a transaction of its own; return it."""
    with vault.transaction() as db:
        return append(db, analyst, event, fields)


def append(db: sqlite3.Connection, analyst: str, event: str, fields: Mapping[str, Any]) -> Entry:
    """Append one entry inside the caller's transaction (``with vault.transaction() as db``).

    Raises ``ValueError`` for an event name of the wrong shape, an empty analyst, or field
    values canonical JSON cannot hold (floats, bytes, objects).
    """
    if _EVENT.fullmatch(event) is None:
        raise ValueError("an audit event is a short lowercase name such as 'view'")
    analyst = analyst.strip()
    if not analyst or len(analyst) > _MAX_ANALYST:
        raise ValueError("an audit entry names its analyst")
    fields = dict(fields)
    fields_json = canonical_json(fields).decode("utf-8")
    _ensure_schema(db)
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
    entry = Entry(seq, now(), analyst, event, fields, prev, "")
    digest = entry_hash(entry.body())
    db.execute(
        "INSERT INTO audit (seq, at, analyst, event, fields, prev, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, entry.at, analyst, event, fields_json, prev, digest),
    )
    db.execute(
        "INSERT INTO settings (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (HEAD_SETTING, f"{seq}:{digest}"),
    )
    return Entry(seq, entry.at, analyst, event, fields, prev, digest)


def record_import(vault: Vault, bundle: str, new_items: int, new_reports: int) -> Entry:
    """Log an import (:class:`journalist_interface.importer.ImportResult`'s numbers), naming
    the reports whose items it brought, for their chain of custody."""
    with vault.transaction() as db:
        reports = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT report_id FROM items WHERE pickup = ? ORDER BY report_id",
                (bundle,),
            )
        ]
        fields = {
            "bundle": bundle,
            "new_items": new_items,
            "new_reports": new_reports,
            "reports": reports if new_items else [],
        }
        return append(db, analyst_of(vault), "import", fields)


def _ensure_schema(db: sqlite3.Connection) -> None:
    """Make the table and its triggers in a vault that has none yet (older vaults too).

    Only when the table is missing: triggers someone dropped are not quietly put back, so
    :func:`verify` can report them.
    """
    if _has_table(db):
        return
    for statement in SCHEMA:
        db.execute(statement)


def _has_table(db: sqlite3.Connection) -> bool:
    return bool(
        db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchall()
    )


def entries(
    vault: Vault, *, report: str | None = None, events: Iterable[str] | None = None
) -> list[Entry]:
    """The log, oldest first; only the entries about ``report`` (its id in any field, or in a
    list field such as an import's ``reports``) and of ``events`` when given."""
    with vault.transaction() as db:
        if not _has_table(db):
            return []
        rows = db.execute(
            "SELECT seq, at, analyst, event, fields, prev, hash FROM audit ORDER BY seq"
        ).fetchall()
    wanted = set(events) if events is not None else None
    found = []
    for row in rows:
        entry = _entry(row)
        if entry is None:
            continue
        if wanted is not None and entry.event not in wanted:
            continue
        if report is not None and not _mentions(entry.fields, report):
            continue
        found.append(entry)
    return found


def _mentions(fields: Mapping[str, Any], report: str) -> bool:
    for value in fields.values():
        if value == report or (isinstance(value, list) and report in value):
            return True
    return False


def _entry(row: tuple[Any, ...]) -> Entry | None:
    try:
        fields = json.loads(row[4])
    except (TypeError, json.JSONDecodeError):
        return None
    if not isinstance(fields, dict):
        return None
    return Entry(row[0], row[1], row[2], row[3], fields, row[5], row[6])


def head(vault: Vault) -> str:
    """``seq:hash`` of the newest entry (``0:000…`` for an empty log): the anchor to note."""
    with vault.transaction() as db:
        row = db.execute("SELECT value FROM settings WHERE name = ?", (HEAD_SETTING,)).fetchone()
    return str(row[0]) if row else f"0:{GENESIS}"


def verify(vault: Vault) -> Check:
    """Check the whole chain; every problem found is listed (the first is the one to read).

    Detected: an entry edited (its hash no longer matches), removed (a gap in ``seq``, a broken
    link), the newest entries removed (the head in the settings is further on), the log or its
    append-only triggers removed.
    """
    problems: list[str] = []
    with vault.transaction() as db:
        anchor = db.execute("SELECT value FROM settings WHERE name = ?", (HEAD_SETTING,)).fetchone()
        if not _has_table(db):
            if anchor is not None:
                problems.append("the audit log was removed from the vault")
            return Check(0, GENESIS, tuple(problems))
        triggers = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        rows = db.execute(
            "SELECT seq, at, analyst, event, fields, prev, hash FROM audit ORDER BY seq"
        ).fetchall()
    for name in _TRIGGERS:
        if name not in triggers:
            problems.append(f"the trigger that keeps the log append-only ({name}) was removed")
    expected_seq, prev = 1, GENESIS
    for row in rows:
        seq = row[0]
        if seq != expected_seq:
            if seq > expected_seq:
                problems.append(f"entries {expected_seq} to {seq - 1} were removed")
            else:
                problems.append(f"entry {seq} is out of order")
        entry = _entry(row)
        if entry is None:
            problems.append(f"entry {seq} is damaged: its details are not JSON")
        else:
            if entry.prev != prev:
                problems.append(
                    f"entry {seq} does not follow the entry before it (one was removed or edited)"
                )
            try:
                digest = entry_hash(entry.body())
            except ValueError:
                digest = ""
            if digest != entry.hash or canonical_json(entry.fields).decode() != row[4]:
                problems.append(f"entry {seq} was edited: its hash does not match its content")
        prev = row[6]
        expected_seq = seq + 1
    last = f"{rows[-1][0]}:{rows[-1][6]}" if rows else None
    if anchor is None:
        if rows:
            problems.append("the audit log's head is missing from the vault's settings")
    elif last != anchor[0]:
        anchored = str(anchor[0]).split(":", 1)[0]
        problems.append(
            f"the log should end at entry {anchored}, but ends at "
            f"{rows[-1][0] if rows else 0}: the newest entries were removed or replaced"
        )
    return Check(len(rows), rows[-1][6] if rows else GENESIS, tuple(problems))
