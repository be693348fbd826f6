"""Upgrading a vault's database from one schema version to the next, in place.

``vault.py`` creates version 1 (the tables of the first workstation); every later version is a
step here, applied in order by :func:`upgrade` when a vault is created or opened, so an old
vault upgrades itself the first time a newer Blagh opens it, and a new one goes through the very
same steps.  The version is the ``schema`` row of ``settings``; each step runs in one
transaction with that row, so a crash leaves the vault at the old version or the new, never
between.  Another engineer's step is added at the end of :data:`STEPS`, never edited in.

Version 2, case work (docs/casework.md):

- ``reports`` is rebuilt with a stable integer key ``num`` (the search index is keyed by it),
  five statuses, a reason when closed, the day it was closed, an assignee and a priority
  (``NULL``: automatic, urgent when the reporter said someone is in immediate danger); the old
  free-text ``notes`` column becomes the first note of each case;
- ``analysts`` (accounts: name, public key line, role, optional TOTP), ``notes``, ``tags``,
  ``case_history`` (every change: who, when, what), ``report_keys`` (normalised links, handles
  and file hashes, for connections) and ``items.sha256`` (an attachment's SHA-256);
- the full-text index ``search`` is rebuilt as one row per indexed text (the report's fields,
  a message, a file name, a reply, a note), whose rowid is ``num * 2**20 + slot``: the matching
  reports of a query are then ``rowid >> 20`` without reading a single row.  Triggers keep the
  index in step with the tables, whoever writes them.

Version 4, takedown notices and the status the reporter sees (docs/casework.md): ``takedowns``
(each link's or account's state), ``takedown_history``, ``notice_templates`` (seeded with the
defaults of notice_templates.py) and ``reporter_status`` (sealed statuses waiting for, or sent
in, a reply bundle).

Version 5, known-content matching (docs/casework.md): hash lists, fingerprints, matches, the
analysts' requests to see a matched image, and near-duplicate image keys joined to Connections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

LATEST = 5
SLOT_BITS = 20
SLOTS = 1 << SLOT_BITS

_REPORTS_V2 = """
CREATE TABLE reports_v2 (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
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
    status TEXT NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'triaged', 'in_progress', 'escalated', 'closed')),
    close_reason TEXT NOT NULL DEFAULT '',
    closed_on TEXT,
    assignee TEXT,
    priority INTEGER CHECK (priority BETWEEN 0 AND 3),
    search_slots INTEGER NOT NULL DEFAULT 0,
    delete_asked TEXT,
    delete_bundle TEXT
)
"""


def _index(kind: str, body: str, where: str) -> str:
    """The statements of a trigger that indexes ``body`` for the report ``where`` selects: take
    the report's next slot, then insert the text at ``num * 2**20 + slot``."""
    return f"""
            UPDATE reports SET search_slots = search_slots + 1 WHERE {where};
            INSERT INTO search (rowid, kind, body)
                SELECT (num << 20) + search_slots, {kind}, {_CLEAN.format(text=body)}
                FROM reports WHERE {where};"""  # noqa: S608 (this module's constants)


_CLEAN = "replace(replace({text}, char(2), ''), char(3), '')"
"""Control characters 2 and 3 mark highlights in snippets: the indexed text never holds them."""

_FIELDS_TEXT = """
    new.description || ' ' || new.platform
    || ' ' || coalesce((SELECT group_concat(value, ' ') FROM json_each(new.links)), '')
    || ' ' || coalesce((SELECT group_concat(value, ' ') FROM json_each(new.attachments)), '')
    || ' ' || coalesce(json_extract(new.identity, '$.name'), '')
    || ' ' || coalesce(json_extract(new.identity, '$.phone'), '')
    || ' ' || coalesce(json_extract(new.identity, '$.email'), '')
"""

_ITEM_KIND = "CASE new.kind WHEN 'reply' THEN 'analyst_reply' ELSE new.kind END"
_ITEM_TEXT = (
    "coalesce(new.text, '') || ' ' || coalesce(new.name, '') || ' ' || coalesce("
    "(SELECT group_concat(value, ' ') FROM json_each(coalesce(new.attachments, '[]'))), '')"
)

_V2 = [
    """CREATE TABLE analysts (
        name TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'analyst')),
        active INTEGER NOT NULL DEFAULT 1,
        totp_secret TEXT,
        totp_pending TEXT,
        totp_last INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        at TEXT NOT NULL,
        analyst TEXT NOT NULL,
        text TEXT NOT NULL,
        search_rowid INTEGER
    )""",
    "CREATE INDEX notes_by_report ON notes(report_num, id)",
    """CREATE TABLE tags (
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (report_num, tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX tags_by_tag ON tags(tag, report_num)",
    """CREATE TABLE case_history (
        id INTEGER PRIMARY KEY,
        report_num INTEGER REFERENCES reports(num) ON DELETE CASCADE,
        at TEXT NOT NULL,
        analyst TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX history_by_report ON case_history(report_num, id)",
    """CREATE TABLE report_keys (
        kind TEXT NOT NULL CHECK (kind IN ('url', 'handle', 'email', 'file')),
        value TEXT NOT NULL,
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        PRIMARY KEY (kind, value, report_num)
    ) WITHOUT ROWID""",
    "CREATE INDEX keys_by_report ON report_keys(report_num)",
    "ALTER TABLE items ADD COLUMN sha256 TEXT",
    # The inbox's sorts and filters, and the statistics, read these indexes only (covering).
    "CREATE INDEX reports_by_priority ON reports(coalesce(priority, 1 + 2 * danger), day, num)",
    "CREATE INDEX reports_by_day ON reports(day, category, status, num)",
    "CREATE INDEX reports_by_status ON reports(status, category, assignee, day)",
    "CREATE INDEX reports_by_category ON reports(category, status, day)",
    "CREATE INDEX reports_by_assignee ON reports(assignee, status, day)",
    "CREATE INDEX replies_by_report ON replies(report_id, day)",
    # What waits for the next reply bundle, counted on every page.
    "CREATE INDEX replies_unsent ON replies(id) WHERE bundle IS NULL",
    "CREATE INDEX items_unacknowledged ON items(id) WHERE ack_bundle IS NULL",
    "CREATE INDEX reports_deletions_waiting ON reports(num)"
    " WHERE delete_asked IS NOT NULL AND delete_bundle IS NULL",
    "DROP TABLE search",
    "CREATE VIRTUAL TABLE search USING fts5(kind UNINDEXED, body,"
    " tokenize = 'unicode61 remove_diacritics 2')",
    # How many texts hold each word: search.py reads it to choose how to run a query.
    "CREATE VIRTUAL TABLE search_words USING fts5vocab(search, 'row')",
    # The index follows the tables.  A report's own fields arrive once (received 0 -> 1).
    f"""CREATE TRIGGER search_fields AFTER UPDATE OF received ON reports
        WHEN old.received = 0 AND new.received = 1
        BEGIN{_index("'report'", _FIELDS_TEXT, "num = new.num")}
        END""",
    f"""CREATE TRIGGER search_items AFTER INSERT ON items
        WHEN NOT new.unreadable AND new.kind IN ('message', 'reply', 'file')
        BEGIN{_index(_ITEM_KIND, _ITEM_TEXT, "id = new.report_id")}
        END""",
    f"""CREATE TRIGGER search_replies AFTER INSERT ON replies
        BEGIN{_index("'reply'", "new.text", "id = new.report_id")}
        END""",
    f"""CREATE TRIGGER search_notes AFTER INSERT ON notes
        BEGIN{_index("'note'", "new.text", "num = new.report_num")}
            UPDATE notes SET search_rowid = (
                SELECT (num << 20) + search_slots FROM reports WHERE num = new.report_num
            ) WHERE id = new.id;
        END""",  # noqa: S608
    """CREATE TRIGGER search_notes_gone AFTER DELETE ON notes
        BEGIN
            DELETE FROM search WHERE rowid = old.search_rowid;
        END""",
    """CREATE TRIGGER search_reports_gone AFTER DELETE ON reports
        BEGIN
            DELETE FROM search WHERE rowid BETWEEN old.num * 1048576
                AND old.num * 1048576 + 1048575;
        END""",
]


def _to_2(db: sqlite3.Connection) -> None:
    # A note per report that had notes, kept aside while ``reports`` is rebuilt.
    old_notes = db.execute(
        "SELECT rowid, notes FROM reports WHERE notes != '' ORDER BY rowid"
    ).fetchall()
    db.execute(_REPORTS_V2)
    db.execute(
        """INSERT INTO reports_v2 (num, id, source_id, day, received, category, danger,
               description, links, platform, seen_on, identity, attachments, status,
               delete_asked, delete_bundle)
           SELECT rowid, id, source_id, day, received, category, danger, description, links,
               platform, seen_on, identity, attachments, status, delete_asked, delete_bundle
           FROM reports ORDER BY rowid"""
    )
    db.execute("DROP TABLE reports")
    db.execute("ALTER TABLE reports_v2 RENAME TO reports")
    for statement in _V2:
        db.execute(statement)
    _rebuild_search(db)
    db.executemany(
        "INSERT INTO notes (report_num, at, analyst, text) VALUES (?, '', '', ?)", old_notes
    )
    analyst = db.execute("SELECT value FROM settings WHERE name = 'analyst'").fetchone()
    if analyst is not None:
        db.execute(
            "INSERT INTO analysts (name, public_key, role, created) VALUES (?, ?, 'admin', '')",
            (FIRST_ANALYST, analyst[0]),
        )


FIRST_ANALYST = "analyst"
"""The account of the analyst who made the vault, when the vault was made before accounts."""


def _rebuild_search(db: sqlite3.Connection) -> None:
    """Index what the vault already holds, as the triggers would have (version 1 -> 2)."""
    rows: list[tuple[int, str, str]] = []
    for num, description, platform, links, names, identity in db.execute(
        "SELECT num, description, platform, links, attachments, identity FROM reports"
        " WHERE received ORDER BY num"
    ):
        person = json.loads(identity) if identity else {}
        parts = [description, platform, *json.loads(links), *json.loads(names)]
        parts += [person.get(key) or "" for key in ("name", "phone", "email")]
        rows.append((num, "report", " ".join(parts)))
    for num, kind, text, name, names in db.execute(
        """SELECT r.num, i.kind, i.text, i.name, i.attachments FROM items i
           JOIN reports r ON r.id = i.report_id
           WHERE NOT i.unreadable AND i.kind IN ('message', 'reply', 'file')
           ORDER BY i.position"""
    ):
        parts = [text or "", name or "", *json.loads(names or "[]")]
        rows.append((num, "analyst_reply" if kind == "reply" else kind, " ".join(parts)))
    for num, text in db.execute(
        "SELECT r.num, p.text FROM replies p JOIN reports r ON r.id = p.report_id"
        " ORDER BY p.position"
    ):
        rows.append((num, "reply", text))
    slots: dict[int, int] = {}
    for num, kind, body in rows:
        slot = slots[num] = slots.get(num, 0) + 1
        db.execute(
            "INSERT INTO search (rowid, kind, body) VALUES (?, ?, ?)",
            (num * SLOTS + slot, kind, body.replace("\x02", "").replace("\x03", "")),
        )
    db.executemany(
        "UPDATE reports SET search_slots = ? WHERE num = ?",
        [(slot, num) for num, slot in slots.items()],
    )


REF_FORMAT = "{year}/{number:04d}"
"""A report's human reference (the trigger ``reports_ref`` writes the same)."""

_V3 = [
    "ALTER TABLE reports ADD COLUMN activity INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE reports ADD COLUMN ref TEXT",
    "CREATE INDEX reports_by_activity ON reports(activity, num)",
    "CREATE UNIQUE INDEX reports_by_ref ON reports(ref)",
    """CREATE TABLE seen (
        analyst TEXT NOT NULL,
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        activity INTEGER NOT NULL,
        PRIMARY KEY (analyst, report_num)
    ) WITHOUT ROWID""",
    "CREATE INDEX seen_by_report ON seen(report_num)",
    """CREATE TABLE ref_counters (
        year TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE tombstones (
        report_id TEXT PRIMARY KEY,
        ref TEXT,
        closed_on TEXT,
        purged_on TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TRIGGER reports_activity AFTER INSERT ON items
        WHEN new.kind IN ('fields', 'message', 'file')
        BEGIN
            UPDATE reports SET activity = max(activity, new.position) WHERE id = new.report_id;
        END""",
    """CREATE TRIGGER reports_ref AFTER INSERT ON reports WHEN new.ref IS NULL
        BEGIN
            INSERT OR IGNORE INTO ref_counters (year, last) VALUES (substr(new.day, 1, 4), 0);
            UPDATE ref_counters SET last = last + 1 WHERE year = substr(new.day, 1, 4);
            UPDATE reports SET ref = substr(new.day, 1, 4) || '/' || printf('%04d',
                (SELECT last FROM ref_counters WHERE year = substr(new.day, 1, 4)))
            WHERE num = new.num;
        END""",
]


def _to_3(db: sqlite3.Connection) -> None:
    for statement in _V3:
        db.execute(statement)
    db.execute(
        "UPDATE reports SET activity = coalesce((SELECT max(position) FROM items"
        " WHERE items.report_id = reports.id AND kind IN ('fields', 'message', 'file')), 0)"
    )
    counters: dict[str, int] = {}
    for num, day in db.execute("SELECT num, day FROM reports ORDER BY day, num").fetchall():
        year = day[:4]
        counters[year] = counters.get(year, 0) + 1
        ref = REF_FORMAT.format(year=year, number=counters[year])
        db.execute("UPDATE reports SET ref = ? WHERE num = ?", (ref, num))
    db.executemany("INSERT INTO ref_counters (year, last) VALUES (?, ?)", counters.items())


_V4 = [
    # Takedown notices (takedown.py): one row per link or account the unit asked a platform to
    # remove, its state now, and every step (drafted notice text included) in its history.
    """CREATE TABLE takedowns (
        kind TEXT NOT NULL CHECK (kind IN ('url', 'handle')),
        value TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('drafted', 'sent', 'removed', 'refused', 'no_answer')),
        sent_on TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID""",
    """CREATE TABLE takedown_history (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        report_num INTEGER REFERENCES reports(num) ON DELETE SET NULL,
        at TEXT NOT NULL,
        analyst TEXT NOT NULL,
        state TEXT NOT NULL,
        platform TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '',
        notice TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX takedown_history_by_key ON takedown_history(kind, value, id)",
    # Notice templates per category and platform ('' = any) and language; seeded by
    # takedown.seed_templates, edited by admins.
    """CREATE TABLE notice_templates (
        category TEXT NOT NULL,
        platform TEXT NOT NULL,
        language TEXT NOT NULL CHECK (language IN ('ar', 'fr', 'en', 'es')),
        body TEXT NOT NULL,
        updated TEXT NOT NULL,
        analyst TEXT NOT NULL,
        PRIMARY KEY (category, platform, language)
    ) WITHOUT ROWID""",
    # Reporter-visible statuses (reporter_status.py): sealed as they are set, sent in the next
    # reply bundle like a reply.
    """CREATE TABLE reporter_status (
        id TEXT PRIMARY KEY,
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        day TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        analyst TEXT NOT NULL,
        envelope BLOB NOT NULL,
        bundle TEXT
    )""",
    "CREATE INDEX reporter_status_by_report ON reporter_status(report_num, position)",
    "CREATE INDEX reporter_status_unsent ON reporter_status(id) WHERE bundle IS NULL",
]


def _to_4(db: sqlite3.Connection) -> None:
    from journalist_interface.notice_templates import DEFAULTS

    for statement in _V4:
        db.execute(statement)
    db.executemany(
        "INSERT INTO notice_templates (category, platform, language, body, updated, analyst)"
        " VALUES ('', '', ?, ?, '', '')",
        sorted(DEFAULTS.items()),
    )


# Version 5, known-content matching (docs/casework.md, journalist_interface/matching.py): hash
# lists and their entries (every version kept until the list is removed), each attachment's
# fingerprints (SHA-256, MD5, PDQ), the matches found, the analysts' requests to see a matched
# image, and ``image_keys``: near-duplicate images across reports, a link type of Connections
# (the view ``connection_keys`` joins them to ``report_keys``).
_V5 = [
    """CREATE TABLE hashlists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        imported TEXT NOT NULL,
        analyst TEXT NOT NULL,
        file_sha256 TEXT NOT NULL,
        signed_by TEXT,
        entries INTEGER NOT NULL,
        removed TEXT,
        UNIQUE (name, version)
    )""",
    """CREATE TABLE hashlist_entries (
        list_id INTEGER NOT NULL REFERENCES hashlists(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('sha256', 'md5', 'pdq')),
        value TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX hashlist_entries_by_value ON hashlist_entries(kind, value)",
    "CREATE INDEX hashlist_entries_by_list ON hashlist_entries(list_id)",
    """CREATE TABLE fingerprints (
        item_id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        md5 TEXT NOT NULL,
        pdq TEXT NOT NULL DEFAULT '[]',
        family TEXT NOT NULL DEFAULT '',
        decoded INTEGER NOT NULL DEFAULT 0,
        image_key TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX fingerprints_by_report ON fingerprints(report_id)",
    """CREATE TABLE matches (
        item_id TEXT NOT NULL,
        report_id TEXT NOT NULL,
        list_id INTEGER NOT NULL,
        list_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        distance INTEGER NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        day TEXT NOT NULL,
        PRIMARY KEY (item_id, list_id, kind, value)
    ) WITHOUT ROWID""",
    "CREATE INDEX matches_by_report ON matches(report_id)",
    """CREATE TABLE match_unhidden (
        item_id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL,
        analyst TEXT NOT NULL,
        day TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE image_keys (
        value TEXT NOT NULL,
        report_num INTEGER NOT NULL REFERENCES reports(num) ON DELETE CASCADE,
        PRIMARY KEY (value, report_num)
    ) WITHOUT ROWID""",
    "CREATE INDEX image_keys_by_report ON image_keys(report_num)",
    """CREATE VIEW connection_keys AS
        SELECT kind, value, report_num FROM report_keys
        UNION ALL SELECT 'image', value, report_num FROM image_keys""",
]


def _to_5(db: sqlite3.Connection) -> None:
    for statement in _V5:
        db.execute(statement)


STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _to_2, 3: _to_3, 4: _to_4, 5: _to_5}
"""Version N -> the step that brings a vault from N - 1 to N."""


def version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM settings WHERE name = 'schema'").fetchone()
    return int(row[0]) if row and str(row[0]).isdigit() else 0


def upgrade(db: sqlite3.Connection) -> None:
    """Bring the database to :data:`LATEST`, one step per transaction.

    Foreign keys are off while a step runs (a table is rebuilt under its children), and checked
    before it commits.  A database newer than this code is left alone: the caller refuses it.
    """
    current = version(db)
    while 1 <= current < LATEST:
        target = current + 1
        db.execute("PRAGMA foreign_keys = OFF")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                STEPS[target](db)
                if db.execute("PRAGMA foreign_key_check").fetchall():
                    raise sqlite3.IntegrityError("the upgraded vault breaks a foreign key")
                db.execute("UPDATE settings SET value = ? WHERE name = 'schema'", (str(target),))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA foreign_keys = ON")
        current = target
