"""Upgrading the server's index from one schema version to the next, in place, at open.

The version is SQLite's ``PRAGMA user_version``.  ``index.py`` creates version 2 (the first
versioned index, :data:`index.SCHEMA`, frozen); every later version is a step here, applied in
order by :func:`upgrade` each time the store opens, so an old index upgrades itself the first
time a newer Blagh serves it, and a new one goes through the very same steps.  Each step runs in
one transaction with its ``user_version``, so a crash (power cut, kill) leaves the index at the
old version or the new one, never between, and the next open simply runs the step again.
Workers starting together take the write lock in turn: the first runs the step, the others
find the version already current.  Add a step at the end of :data:`STEPS`; never edit one in.

An index newer than this code is refused (:class:`VersionRefused`): an older Blagh does not
know what a newer one's rows mean.

Version 3: ``submissions``, one row per form already stored (views/report.py), so the same form
sent twice stores one report.  Index versions 2 made before it had no such table.

Version 4: ``items_by_delivery`` holds delivered items only.  Every new item is undelivered,
and an index entry for it was one more page to read, encrypt and log per report; what uses the
index asks for delivered items (the retention purge, the last delivery day).  The lists of
undelivered items read the table itself, which holds little else: delivered items leave it
after the retention days.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

FIRST = 2
"""The version ``index.py`` creates; steps start from it."""

LATEST = 4

_V3 = (
    # Reports already stored, by the keyed hash of the form's one-time submission id.
    # ``outcome`` is what its reporter was shown ("received" or "codename"); no link to the
    # report.  Kept the day it was made and the next (a day, as everywhere else: no finer time).
    """CREATE TABLE submissions (
        key BLOB PRIMARY KEY,
        outcome TEXT NOT NULL,
        day TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX submissions_by_day ON submissions(day)",
)


_V4 = (
    "DROP INDEX items_by_delivery",
    "CREATE INDEX items_by_delivery ON items(delivered_day) WHERE delivered_day IS NOT NULL",
)


def _statements(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    def step(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return step


STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {3: _statements(_V3), 4: _statements(_V4)}
"""Version N -> the step that brings an index from N - 1 to N."""


class VersionRefused(Exception):
    """The index's version is not one this code can bring to :data:`LATEST`."""


def version(db: sqlite3.Connection) -> int:
    (found,) = db.execute("PRAGMA user_version").fetchone()
    return int(found)


def upgrade(db: sqlite3.Connection) -> int:
    """Bring the index to :data:`LATEST`, one step per transaction; return how many steps ran.

    Foreign keys are off while a step runs (a table may be rebuilt under its children), and
    checked before it commits.  The version is read again inside each step's write
    transaction: another process may have run the step meanwhile.
    """
    ran = 0
    while True:
        db.execute("PRAGMA foreign_keys = OFF")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                current = version(db)
                if current == LATEST:
                    db.execute("COMMIT")
                    return ran
                if current > LATEST:
                    raise VersionRefused(
                        f"was made by a newer version of Blagh (index version {current}, this "
                        f"one reads up to {LATEST}); run that version or a later one"
                    )
                if current < FIRST:
                    raise VersionRefused(
                        f"has index version {current}, which no version of Blagh upgrades; "
                        "restore it from a backup"
                    )
                target = current + 1
                STEPS[target](db)
                if db.execute("PRAGMA foreign_key_check").fetchall():
                    raise sqlite3.IntegrityError("the upgraded index breaks a foreign key")
                db.execute(f"PRAGMA user_version = {int(target)}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            ran += 1
        finally:
            db.execute("PRAGMA foreign_keys = ON")
