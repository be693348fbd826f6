"""Retention: closed cases are purged from the vault a configurable number of days after closing.

A case closed on day D is due once ``D + days <= today``.  Purging a report removes, in one
transaction, every row that belongs to it (its items, replies, notes, tags, history, search
entries, connections: any table with a ``report_id`` or ``report_num`` column, so tables added
later are covered too), the report, and its reporter's row once no report of theirs is left;
then the attachments' envelope files.  The purge is written to the audit log in the same
transaction (event ``purge``: the report's id, the day it was closed, how many items and files),
so no purge goes unrecorded and no record outlives a purge that failed.  A tombstone stays in
the vault (``tombstones``: the report's id, its reference, the days it was closed and purged,
nothing it held): a reporter who writes again afterwards opens a new case that says so.  The
audit log itself is never purged: it holds ids, days and hashes, nothing a reporter wrote.

When a case was closed comes from the case-work tables (``reports.closed_on``, a day, set by
:mod:`journalist_interface.cases` when the status becomes closed and cleared on reopening):
:func:`closed_cases` is the one query that reads it.  A vault without that column has no closed
day and nothing is ever due.

A report is kept, even when due, while the server may still send its items again: until every
item of it was acknowledged and every reply and deletion request left in a reply bundle.
Otherwise the next pickup would bring it back as a new report.  Such reports are listed as
``waiting`` and purged by a later run.

Run by ``blagh workstation purge --vault DIR --closed-days N``, and by the app once a day while
someone is logged in when it was started with ``--purge-closed-after N``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta

from journalist_interface import audit
from journalist_interface.vault import Vault, today

AUTOMATIC = "blagh:retention"
"""The name the audit log gives the app's own daily purge."""


@dataclass(frozen=True)
class Purge:
    """What a purge did (or, for a dry run, would do)."""

    purged: tuple[str, ...]
    waiting: tuple[str, ...]
    files: int


def closed_cases(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """``(report id, day closed)`` of every closed case, oldest first; [] for a vault whose
    reports have no ``closed_on`` column yet."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(reports)")}
    if "closed_on" not in columns:
        return []
    return [
        (row[0], row[1])
        for row in db.execute(
            "SELECT id, closed_on FROM reports WHERE status = 'closed' AND closed_on IS NOT NULL"
            " ORDER BY closed_on, id"
        )
    ]


def due(vault: Vault, days: int, on: date | None = None) -> list[tuple[str, str]]:
    """The closed cases whose ``days`` have passed on ``on`` (today by default)."""
    if days < 0:
        raise ValueError("the retention time is a number of days, 0 or more")
    limit = ((on or date.fromisoformat(today())) - timedelta(days=days)).isoformat()
    with vault.transaction() as db:
        return [(report, day) for report, day in closed_cases(db) if day <= limit]


def purge(
    vault: Vault,
    days: int,
    *,
    analyst: str | None = None,
    on: date | None = None,
    dry_run: bool = False,
) -> Purge:
    """Purge the closed cases due after ``days`` (see the module's notes); log each purge."""
    who = analyst or audit.analyst_of(vault)
    purged: list[str] = []
    waiting: list[str] = []
    files = 0
    for report_id, closed_on in due(vault, days, on):
        blobs: list[str] = []
        with vault.transaction() as db:
            if not _settled(db, report_id):
                waiting.append(report_id)
                continue
            blobs = [
                row[0]
                for row in db.execute(
                    "SELECT blob FROM items WHERE report_id = ? AND blob IS NOT NULL",
                    (report_id,),
                )
            ]
            (items,) = db.execute(
                "SELECT count(*) FROM items WHERE report_id = ?", (report_id,)
            ).fetchone()
            if dry_run:
                purged.append(report_id)
                files += len(blobs)
                continue
            ref = _ref(db, report_id)
            _delete_report(db, report_id)
            _bury(db, report_id, ref, closed_on, (on or date.fromisoformat(today())).isoformat())
            audit.append(
                db,
                who,
                "purge",
                {
                    "report": report_id,
                    "closed_on": closed_on,
                    "days": days,
                    "items": items,
                    "files": len(blobs),
                },
            )
        for blob in blobs:
            vault.blobs.delete(blob)
        if blobs:
            vault.blobs.sync_dir()
        purged.append(report_id)
        files += len(blobs)
    return Purge(tuple(purged), tuple(waiting), files)


def _settled(db: sqlite3.Connection, report_id: str) -> bool:
    """Nothing of the report is still to tell the server (acks, replies, deletion request)."""
    (pending,) = db.execute(
        """SELECT (SELECT count(*) FROM items WHERE report_id = ?1 AND ack_bundle IS NULL)
                + (SELECT count(*) FROM replies WHERE report_id = ?1 AND bundle IS NULL)
                + (SELECT count(*) FROM reports WHERE id = ?1
                       AND delete_asked IS NOT NULL AND delete_bundle IS NULL)""",
        (report_id,),
    ).fetchone()
    return int(pending) == 0


def _delete_report(db: sqlite3.Connection, report_id: str) -> None:
    row = db.execute("SELECT source_id FROM reports WHERE id = ?", (report_id,)).fetchone()
    if row is None:
        return
    source = row[0]
    columns = {row[1] for row in db.execute("PRAGMA table_info(reports)")}
    number = None
    if "num" in columns:
        (number,) = db.execute("SELECT num FROM reports WHERE id = ?", (report_id,)).fetchone()
    for table in _tables(db):
        if table in ("reports", "audit"):
            continue
        table_columns = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
        if "report_id" in table_columns:
            db.execute(f'DELETE FROM "{table}" WHERE report_id = ?', (report_id,))  # noqa: S608
        elif "report_num" in table_columns and number is not None:
            db.execute(f'DELETE FROM "{table}" WHERE report_num = ?', (number,))  # noqa: S608
    db.execute("DELETE FROM reports WHERE id = ?", (report_id,))
    db.execute(
        "DELETE FROM sources WHERE id = ? AND NOT EXISTS"
        " (SELECT 1 FROM reports WHERE source_id = ?)",
        (source, source),
    )


def _ref(db: sqlite3.Connection, report_id: str) -> str | None:
    if "ref" not in {row[1] for row in db.execute("PRAGMA table_info(reports)")}:
        return None
    row = db.execute("SELECT ref FROM reports WHERE id = ?", (report_id,)).fetchone()
    return row[0] if row else None


def _bury(
    db: sqlite3.Connection, report_id: str, ref: str | None, closed_on: str, purged_on: str
) -> None:
    """Leave a tombstone (id, reference, days closed and purged: nothing the case held), so
    that a reporter writing again after the purge opens a new case linked to this one."""
    if "tombstones" in _tables(db):
        db.execute(
            "INSERT OR REPLACE INTO tombstones (report_id, ref, closed_on, purged_on)"
            " VALUES (?, ?, ?, ?)",
            (report_id, ref, closed_on, purged_on),
        )


def _tables(db: sqlite3.Connection) -> list[str]:
    """The vault's tables, FTS5's own shadow tables left out (the index follows its table)."""
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    virtual = {name for name, sql in rows if sql and sql.upper().startswith("CREATE VIRTUAL")}
    return [
        name
        for name, _sql in rows
        if not any(name.startswith(f"{parent}_") for parent in virtual)
        and not name.startswith("sqlite_")
    ]
