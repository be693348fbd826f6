"""Case work on a report: status, priority, assignee, notes and tags, every change recorded.

Each change is one transaction that writes the change and a line of ``case_history`` (who,
when, what): the report's page shows that history.  :func:`record` is the one place a change
is recorded; once the transaction has committed it also hands the event to the vault's audit
log (``audit.log(vault, event, **fields)``: the hash-chained log of
``journalist_interface/audit.py``), so the case history and the audit log see the same changes.

Statuses: new, triaged, in progress, escalated, closed (a reason is required to close).
Priorities: 0 low, 1 normal, 2 high, 3 urgent; unset, a report is urgent when the reporter said
someone is in immediate danger, normal otherwise.  Times are UTC to the second: the workstation
is trusted, and a chain of custody needs them (the server keeps days only).
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from journalist_interface import audit as audit_log
from journalist_interface.errors import WorkstationError
from journalist_interface.vault import STATUSES, Vault

OPEN_STATUSES = tuple(status for status in STATUSES if status != "closed")
PRIORITIES = (3, 2, 1, 0)
"""Urgent, high, normal, low: the order a selector lists them in."""
PRIORITY_NAMES = {3: "urgent", 2: "high", 1: "normal", 0: "low"}
AUTO_PRIORITY = "coalesce(r.priority, 1 + 2 * r.danger)"
"""The SQL of a report's priority (the same expression as the index ``reports_by_priority``)."""

MAX_NOTE = 20_000
MAX_REASON = 500
MAX_TAG = 40
MAX_TAGS = 30
_TAG = re.compile(r"[\w][\w .+#-]*", re.UNICODE)


class CaseError(WorkstationError):
    """A change that cannot be made: no such report, an unknown value, a missing reason.

    ``reason`` says which (one of the constants below), for the app to word it.
    """

    NO_REPORT = "no_report"
    UNKNOWN_VALUE = "unknown_value"
    NO_REASON = "no_reason"
    EMPTY_NOTE = "empty_note"
    LONG_NOTE = "long_note"
    NO_NOTE = "no_note"
    NOT_AUTHOR = "not_author"
    BAD_TAG = "bad_tag"
    TOO_MANY_TAGS = "too_many_tags"
    NO_ANALYST = "no_analyst"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Note:
    id: int
    at: str
    analyst: str
    text: str


@dataclass(frozen=True)
class Change:
    """One line of a case's history."""

    at: str
    analyst: str
    event: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Case:
    report_id: str
    status: str
    close_reason: str
    closed_on: str | None
    assignee: str | None
    priority: int
    priority_automatic: bool
    tags: tuple[str, ...]
    notes: tuple[Note, ...]
    history: tuple[Change, ...]

    @property
    def open(self) -> bool:
        return self.status != "closed"


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- reading -----------------------------------------------------------------------------------


def case(vault: Vault, report_id: str) -> Case | None:
    with vault.transaction() as db:
        row = db.execute(
            f"""SELECT r.num, r.status, r.close_reason, r.closed_on, r.assignee,
                       {AUTO_PRIORITY}, r.priority IS NULL
                FROM reports r WHERE r.id = ?""",  # noqa: S608 (a constant)
            (report_id,),
        ).fetchone()
        if row is None:
            return None
        num = row[0]
        tags = [t for (t,) in db.execute("SELECT tag FROM tags WHERE report_num = ?", (num,))]
        notes = [
            Note(*note)
            for note in db.execute(
                "SELECT id, at, analyst, text FROM notes WHERE report_num = ? ORDER BY id", (num,)
            )
        ]
        history = [
            Change(at, analyst, event, json.loads(detail))
            for at, analyst, event, detail in db.execute(
                "SELECT at, analyst, event, detail FROM case_history WHERE report_num = ?"
                " ORDER BY id DESC",
                (num,),
            )
        ]
    return Case(
        report_id=report_id,
        status=row[1],
        close_reason=row[2],
        closed_on=row[3],
        assignee=row[4],
        priority=row[5],
        priority_automatic=bool(row[6]),
        tags=tuple(sorted(tags)),
        notes=tuple(notes),
        history=tuple(history),
    )


@dataclass(frozen=True)
class Tombstone:
    """What is left of a purged case: enough to say a new case follows it, nothing it held."""

    report_id: str
    ref: str | None
    closed_on: str | None
    purged_on: str


def tombstone(vault: Vault, report_id: str) -> Tombstone | None:
    """The purged case this report's id once was, if it was: the reporter wrote again since."""
    with vault.transaction() as db:
        row = db.execute(
            "SELECT report_id, ref, closed_on, purged_on FROM tombstones WHERE report_id = ?",
            (report_id,),
        ).fetchone()
    return Tombstone(*row) if row else None


def mark_seen(vault: Vault, report_id: str) -> None:
    """The analyst has seen everything the reporter sent so far: the report is read for them."""
    with vault.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO seen (analyst, report_num, activity)"
            " SELECT ?, num, activity FROM reports WHERE id = ?",
            (vault.analyst, report_id),
        )


def reopen_followed_up(vault: Vault, db: sqlite3.Connection, report_ids: list[str]) -> list[str]:
    """Reopen the closed cases among ``report_ids`` (their reporter wrote again), in the
    importer's transaction; returns them, for :func:`audit` once the import committed.

    A follow-up on a closed case must not hide under the "open" filter: it goes back to "in
    progress", and its history says why."""
    reopened: list[str] = []
    for report_id in report_ids:
        changed = db.execute(
            "UPDATE reports SET status = 'in_progress', close_reason = '', closed_on = NULL"
            " WHERE id = ? AND status = 'closed'",
            (report_id,),
        ).rowcount
        if changed:
            record(vault, db, "status", report_id, **REOPENED)
            reopened.append(report_id)
    return reopened


REOPENED = {"from": "closed", "to": "in_progress", "cause": "follow_up"}
"""The history line of a case reopened by the reporter's follow-up."""


def analyst_names(vault: Vault, *, active_only: bool = True) -> list[str]:
    with vault.transaction() as db:
        return [
            name
            for (name, active) in db.execute("SELECT name, active FROM analysts ORDER BY name")
            if active or not active_only
        ]


def all_tags(vault: Vault) -> list[str]:
    with vault.transaction() as db:
        return [tag for (tag,) in db.execute("SELECT DISTINCT tag FROM tags ORDER BY tag")]


# --- changing ----------------------------------------------------------------------------------


_UNSET: Any = object()


def update(
    vault: Vault,
    report_id: str,
    *,
    status: str | None = None,
    reason: str = "",
    assignee: str | None = _UNSET,
    priority: int | None = _UNSET,
) -> list[str]:
    """Change what is given of a case's status, assignee and priority, in one transaction.

    Closing needs a ``reason``; reopening clears it.  ``assignee`` None unassigns, ``priority``
    None goes back to automatic.  Returns the events recorded (nothing for no change).
    """
    if status is not None and status not in STATUSES:
        raise CaseError(CaseError.UNKNOWN_VALUE, "unknown status")
    reason = " ".join(reason.split())[:MAX_REASON]
    if status == "closed" and not reason:
        raise CaseError(CaseError.NO_REASON, "a reason is needed to close a case")
    if priority is not _UNSET and priority is not None and priority not in PRIORITIES:
        raise CaseError(CaseError.UNKNOWN_VALUE, "unknown priority")
    with _changing(vault, report_id) as (db, num, events):
        old_status, old_reason, old_assignee, old_priority = db.execute(
            "SELECT status, close_reason, assignee, priority FROM reports WHERE num = ?", (num,)
        ).fetchone()
        if status is not None and (status, reason if status == "closed" else "") != (
            old_status,
            old_reason,
        ):
            closed_on = _today() if status == "closed" else None
            db.execute(
                "UPDATE reports SET status = ?, close_reason = ?, closed_on = ? WHERE num = ?",
                (status, reason if status == "closed" else "", closed_on, num),
            )
            detail = {"from": old_status, "to": status}
            if status == "closed":
                detail["reason"] = reason
            events.append(("status", detail))
        if assignee is not _UNSET and assignee != old_assignee:
            if assignee is not None and assignee not in _active_analysts(db):
                raise CaseError(CaseError.NO_ANALYST, "there is no such analyst")
            db.execute("UPDATE reports SET assignee = ? WHERE num = ?", (assignee, num))
            events.append(("assign", {"from": old_assignee, "to": assignee}))
        if priority is not _UNSET and priority != old_priority:
            db.execute("UPDATE reports SET priority = ? WHERE num = ?", (priority, num))
            events.append(("priority", {"from": old_priority, "to": priority}))
    return [event for event, _detail in events]


def add_note(vault: Vault, report_id: str, text: str) -> int:
    text = text.strip()
    if not text:
        raise CaseError(CaseError.EMPTY_NOTE, "the note is empty")
    if len(text) > MAX_NOTE:
        raise CaseError(CaseError.LONG_NOTE, f"the note is too long: at most {MAX_NOTE} characters")
    with _changing(vault, report_id) as (db, num, events):
        note_id = int(
            db.execute(
                "INSERT INTO notes (report_num, at, analyst, text) VALUES (?, ?, ?, ?)",
                (num, now(), vault.analyst, text),
            ).lastrowid
            or 0
        )
        events.append(("note_added", {"note": note_id, "text": text}))
    return note_id


def delete_note(vault: Vault, report_id: str, note_id: int) -> None:
    """Delete a note its author wrote (the history keeps what it said and who deleted it)."""
    with _changing(vault, report_id) as (db, num, events):
        row = db.execute(
            "SELECT analyst, text FROM notes WHERE id = ? AND report_num = ?", (note_id, num)
        ).fetchone()
        if row is None:
            raise CaseError(CaseError.NO_NOTE, "there is no such note")
        if row[0] != vault.analyst:
            raise CaseError(CaseError.NOT_AUTHOR, "only the analyst who wrote a note can delete it")
        db.execute("DELETE FROM notes WHERE id = ?", (note_id,))
        events.append(("note_deleted", {"note": note_id, "text": row[1]}))


def clean_tag(tag: str) -> str:
    """A tag as stored: NFKC, lower case, single spaces; or CaseError if it is not one."""
    tag = " ".join(unicodedata.normalize("NFKC", tag).casefold().split())
    if not tag or len(tag) > MAX_TAG or _TAG.fullmatch(tag) is None:
        raise CaseError(
            CaseError.BAD_TAG,
            f"a tag is letters, digits, spaces and - _ . + #, at most {MAX_TAG} characters",
        )
    return tag


def add_tag(vault: Vault, report_id: str, tag: str) -> str:
    tag = clean_tag(tag)
    with _changing(vault, report_id) as (db, num, events):
        (count,) = db.execute("SELECT count(*) FROM tags WHERE report_num = ?", (num,)).fetchone()
        added = db.execute(
            "INSERT OR IGNORE INTO tags (report_num, tag) VALUES (?, ?)", (num, tag)
        ).rowcount
        if added:
            if count >= MAX_TAGS:
                raise CaseError(CaseError.TOO_MANY_TAGS, f"a report has at most {MAX_TAGS} tags")
            events.append(("tag_added", {"tag": tag}))
    return tag


def remove_tag(vault: Vault, report_id: str, tag: str) -> None:
    with _changing(vault, report_id) as (db, num, events):
        if db.execute("DELETE FROM tags WHERE report_num = ? AND tag = ?", (num, tag)).rowcount:
            events.append(("tag_removed", {"tag": tag}))


# --- recording ---------------------------------------------------------------------------------


@contextmanager
def _changing(
    vault: Vault, report_id: str
) -> Iterator[tuple[sqlite3.Connection, int, list[tuple[str, dict[str, Any]]]]]:
    """A transaction on one report; the events appended are recorded before it commits and
    handed to the audit log after."""
    events: list[tuple[str, dict[str, Any]]] = []
    with vault.transaction() as db:
        row = db.execute("SELECT num FROM reports WHERE id = ?", (report_id,)).fetchone()
        if row is None:
            raise CaseError(CaseError.NO_REPORT, "there is no such report")
        yield db, row[0], events
        for event, detail in events:
            record(vault, db, event, report_id, **detail)
    for event, detail in events:
        audit(vault, event, report=report_id, **detail)


def record(vault: Vault, db: sqlite3.Connection, event: str, report_id: str, **detail: Any) -> None:
    """Write one line of a case's history, in the caller's transaction."""
    db.execute(
        "INSERT INTO case_history (report_num, at, analyst, event, detail)"
        " SELECT num, ?, ?, ?, ? FROM reports WHERE id = ?",
        (now(), vault.analyst, event, json.dumps(detail, ensure_ascii=False), report_id),
    )


_AUDITED: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "status": ("status", ("from", "to"), {}),
    "assign": ("assign", ("from", "to"), {}),
    "priority": ("status", ("from", "to"), {"field": "priority"}),
    "note_added": ("notes", ("note",), {"action": "added"}),
    "note_deleted": ("notes", ("note",), {"action": "deleted"}),
    "tag_added": ("tags", ("tag",), {"action": "added"}),
    "tag_removed": ("tags", ("tag",), {"action": "removed"}),
}
"""A case event -> the audit log's event, the fields it keeps, and fields it adds.  The log keeps
ids, statuses and names, never the text of a note or a reason (they stay in the case history)."""


def audit(vault: Vault, event: str, report: str, **detail: Any) -> None:
    """Hand a committed change to the vault's audit log.

    The single call point between case work and the audit log (``journalist_interface/audit.py``):
    ``audit.log(vault, event, report=ID, **fields)``, called after the change committed.
    """
    name, kept, added = _AUDITED.get(event, (event, (), {}))
    audit_log.log(vault, name, report=report, **added, **{key: detail.get(key) for key in kept})


def _active_analysts(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM analysts WHERE active")}


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
