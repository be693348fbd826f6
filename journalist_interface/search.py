"""The inbox: filters, sort, pages, and full-text search with the matches highlighted.

The full-text index (SQLCipher's FTS5, table ``search``, kept by triggers: ``schema.py``) holds
one row per text: a report's own fields, each message, file name and reply, each note.  A row's
rowid is ``num * 2**20 + slot``, so the reports that match a query are ``rowid >> 20``, read
from the index alone.  What an analyst types is never FTS5 syntax: words must all appear
(in any text of the report), ``"quoted words"`` must appear together, and ``word*`` matches
any word it begins.  Highlights come back from ``snippet()`` between control characters 2
and 3 (which the index never holds), and become ``<mark>`` only after the text is escaped.

The index's tokenizer keeps letters and digits only: an emoji is a separator to it, and a
search for one would find nothing.  A term made of symbols (Unicode "So": emoji, ©, ☎) is
looked for as a substring of the report's texts instead (:func:`symbol_terms`), read through
the report's own rows of the index, which are found by rowid range.
"""

from __future__ import annotations

import math
import re
import sqlite3
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from markupsafe import Markup, escape

from journalist_interface.cases import AUTO_PRIORITY, OPEN_STATUSES, PRIORITIES
from journalist_interface.schema import SLOT_BITS
from journalist_interface.vault import STATUSES, Vault

PER_PAGE = 50
MAX_QUERY = 200
MAX_TERMS = 16
SNIPPETS_PER_REPORT = 3
SNIPPET_TOKENS = 14
SORTS = ("priority", "activity", "newest", "oldest", "status", "category", "assignee")
PREVIEW = 120
"""The inbox shows this many characters of a description, on one line."""
UNASSIGNED = "-"
_TERM = re.compile(r'"([^"]*)"?|(\S+)')
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"

_ORDER = {
    "priority": f"{AUTO_PRIORITY} DESC, r.day DESC, r.num DESC",
    "activity": "r.activity DESC, r.num DESC",
    "newest": "r.day DESC, r.num DESC",
    "oldest": "r.day, r.num",
    "status": "CASE r.status "
    + " ".join(f"WHEN '{status}' THEN {index}" for index, status in enumerate(STATUSES))
    + f" END, {AUTO_PRIORITY} DESC, r.day DESC, r.num DESC",
    "category": "r.category, r.day DESC, r.num DESC",
    "assignee": "r.assignee IS NULL, r.assignee, r.day DESC, r.num DESC",
}


@dataclass(frozen=True)
class InboxQuery:
    """What the inbox shows: every field is optional, and checked (a bad value is dropped)."""

    text: str = ""
    status: str = ""
    """A status, ``open`` (any but closed), or empty for any."""
    category: str = ""
    priority: int | None = None
    assignee: str = ""
    """An analyst's name, :data:`UNASSIGNED`, or empty for anyone."""
    tag: str = ""
    day_from: str = ""
    day_to: str = ""
    sort: str = "priority"
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> InboxQuery:
        status = args.get("status", "")
        priority = args.get("priority", "")
        page = args.get("page", "1")
        sort = args.get("sort", "priority")
        return cls(
            text=" ".join(args.get("q", "")[:MAX_QUERY].split()),
            status=status if status in (*STATUSES, "open") else "",
            category=args.get("category", "")[:64],
            priority=int(priority) if priority in {str(p) for p in PRIORITIES} else None,
            assignee=args.get("assignee", "")[:64],
            tag=args.get("tag", "")[:64].strip(),
            day_from=_day(args.get("from", "")),
            day_to=_day(args.get("to", "")),
            sort=sort if sort in SORTS else "priority",
            page=int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1,
        )

    def args(self, **changes: Any) -> dict[str, str]:
        """The query string of this query with ``changes``, without its empty parts."""
        query = replace(self, **changes)
        pairs = {
            "q": query.text,
            "status": query.status,
            "category": query.category,
            "priority": "" if query.priority is None else str(query.priority),
            "assignee": query.assignee,
            "tag": query.tag,
            "from": query.day_from,
            "to": query.day_to,
            "sort": "" if query.sort == "priority" else query.sort,
            "page": "" if query.page == 1 else str(query.page),
        }
        return {key: value for key, value in pairs.items() if value}

    @property
    def filtered(self) -> bool:
        return bool(self.args(sort="priority", page=1))


@dataclass(frozen=True)
class Snippet:
    kind: str
    """report, message, file, reply, analyst_reply or note: where the words were found."""
    html: Markup


@dataclass(frozen=True)
class InboxRow:
    id: str
    day: str
    received: bool
    category: str
    danger: bool
    platform: str
    status: str
    priority: int
    assignee: str | None
    messages: int
    files: int
    delete_asked: bool
    tags: tuple[str, ...] = ()
    snippets: tuple[Snippet, ...] = ()
    ref: str = ""
    unread: bool = False
    """The reporter sent something since this analyst last opened the report."""
    preview: str = ""
    """The description's beginning, on one line."""
    follows_purged: bool = False
    """A new case opened by a reporter who wrote again after their case was purged."""


@dataclass(frozen=True)
class InboxPage:
    """One page of the inbox.  ``total`` is exact, or a floor when ``more`` (a search matching
    more than :data:`COUNT_CAP` reports), or None when a search matches most of the vault
    (counting would cost more than showing: the page says "many")."""

    query: InboxQuery
    rows: tuple[InboxRow, ...]
    total: int | None
    per_page: int = PER_PAGE
    invalid_search: bool = False
    more: bool = False
    has_next: bool = False

    @property
    def pages(self) -> int | None:
        if self.total is None or self.more:
            return None
        return max(1, math.ceil(self.total / self.per_page))


def _day(value: str) -> str:
    if _DAY.fullmatch(value) is None:
        return ""
    try:
        date.fromisoformat(value)
    except ValueError:
        return ""
    return value


def fts_query(text: str) -> str | None:
    """The FTS5 query for what an analyst typed, or None when it holds no word at all.

    Every term becomes a quoted FTS5 string (FTS5 tokenizes it; a quote inside is doubled), so
    nothing typed is FTS5 syntax: ``OR``, ``NEAR``, ``-``, ``:`` and ``^`` are plain words.
    """
    terms: list[str] = []
    for phrase, word in _TERM.findall(text):
        value = phrase if phrase else word
        prefix = not phrase and value.endswith("*") and len(value.rstrip("*")) > 1
        value = value.rstrip("*") if prefix else value
        if not any(character.isalnum() for character in value):
            continue
        terms.append('"' + value.replace('"', '""') + '"' + (" *" if prefix else ""))
        if len(terms) == MAX_TERMS:
            break
    return " AND ".join(terms) if terms else None


def preview(description: str) -> str:
    """A description's first :data:`PREVIEW` characters on one line, cut at a word if it can."""
    line = " ".join(description.split())
    if len(line) <= PREVIEW:
        return line
    cut = line[:PREVIEW]
    if " " in cut[PREVIEW // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


def symbol_terms(text: str) -> list[str]:
    """The terms of a search made of symbols (emoji and the like), which the index cannot hold:
    each is searched for as it is, in the report's texts."""
    terms: list[str] = []
    for phrase, word in _TERM.findall(text):
        value = (phrase or word).strip()
        if any(character.isalnum() for character in value):
            continue
        if any(unicodedata.category(character) == "So" for character in value):
            terms.append(value)
        if len(terms) == MAX_TERMS:
            break
    return terms


_SYMBOL = (
    "EXISTS (SELECT 1 FROM search s WHERE s.rowid BETWEEN r.num << 20"
    " AND (r.num << 20) + 1048575 AND instr(s.body, ?) > 0)"
)


def highlight(snippet: str) -> Markup:
    """A snippet from the index, escaped, with its matches in ``<mark>``."""
    out = Markup("")
    marked = False
    for part in re.split(f"([{_MARK_OPEN}{_MARK_CLOSE}])", snippet):
        if part == _MARK_OPEN and not marked:
            out += Markup("<mark>")
            marked = True
        elif part == _MARK_CLOSE and marked:
            out += Markup("</mark>")
            marked = False
        elif part not in (_MARK_OPEN, _MARK_CLOSE):
            out += escape(part)
    return out + (Markup("</mark>") if marked else Markup(""))


def inbox(vault: Vault, query: InboxQuery, per_page: int = PER_PAGE) -> InboxPage:
    """One page of the inbox for ``query``: its rows, and how many reports match.

    A search runs one of two ways.  Usually the index gives the matching reports (``rowid >>
    20``, from the index alone), and the page is read in the sort's order among them; the count
    stops at :data:`COUNT_CAP`.  When its words are in a large part of the vault (the index's
    own word counts say so), the reports are read in the sort's order and each is checked
    against the index until the page is full: listing most of the vault to show 50 would cost
    more.
    """
    where: list[str] = []
    args: list[Any] = []
    match = fts_query(query.text) if query.text else None
    symbols = symbol_terms(query.text) if query.text else []
    if query.text and match is None and not symbols:
        return InboxPage(query, (), 0, per_page, invalid_search=True)
    _filters(query, where, args)
    for symbol in symbols:
        where.append(_SYMBOL)
        args.append(symbol)
    with vault.transaction() as db:
        broad = False
        count_where = rows_where = (" WHERE " + " AND ".join(where)) if where else ""
        try:
            if match is not None:
                texts = _estimate(db, query.text)
                (reports,) = db.execute("SELECT coalesce(max(num), 0) FROM reports").fetchone()
                broad = reports >= BROAD_MIN_REPORTS and texts is not None
                broad = broad and texts > BROAD_SHARE * reports
                few = texts is not None and texts <= FEW_TEXTS
                # The reports, from the index's list (``r.num IN``), or read in the sort's order
                # and looked up in that list (``+r.num IN``), or checked one by one (EXISTS).
                count_where = " WHERE " + " AND ".join([_BROAD if broad else _LISTED, *where])
                rows_where = " WHERE " + " AND ".join(
                    [_BROAD if broad else _LISTED if few else _SCANNED, *where]
                )
                args.insert(0, match)
            total, more = (
                (None, False)
                if broad
                else _count(db, count_where, args, COUNT_CAP if match else None)
            )
            page = query.page
            if total is not None and not more:
                page = min(page, max(1, math.ceil(total / per_page)))
            rows = db.execute(
                f"""SELECT r.num, r.id, r.day, r.received, r.category, r.danger, r.platform,
                           r.status, {AUTO_PRIORITY}, r.assignee, r.delete_asked IS NOT NULL,
                           r.ref, r.activity > coalesce((SELECT s.activity FROM seen s
                               WHERE s.analyst = ? AND s.report_num = r.num), 0),
                           substr(r.description, 1, {PREVIEW * 2}),
                           EXISTS (SELECT 1 FROM tombstones t WHERE t.report_id = r.id)
                    FROM reports r{rows_where}
                    ORDER BY {_ORDER[query.sort]} LIMIT ? OFFSET ?""",  # noqa: S608 (constants)
                [vault.analyst, *args, per_page + 1, (page - 1) * per_page],
            ).fetchall()
        except sqlite3.OperationalError as error:  # FTS5 refused the query
            if match is not None and ("fts5" in str(error).lower() or "syntax" in str(error)):
                return InboxPage(query, (), 0, per_page, invalid_search=True)
            raise
        has_next = len(rows) > per_page
        rows = rows[:per_page]
        nums = [row[0] for row in rows]
        counts = _counts(db, [row[1] for row in rows])
        tags = _tags(db, nums)
        snippets = {num: _snippets(db, match, num) for num in nums} if match else {}
    return InboxPage(
        replace(query, page=page),
        tuple(
            InboxRow(
                id=row[1],
                day=row[2],
                received=bool(row[3]),
                category=row[4],
                danger=bool(row[5]),
                platform=row[6],
                status=row[7],
                priority=row[8],
                assignee=row[9],
                delete_asked=bool(row[10]),
                messages=counts.get((row[1], "message"), 0),
                files=counts.get((row[1], "file"), 0),
                tags=tuple(tags.get(row[0], ())),
                snippets=tuple(snippets.get(row[0], ())),
                ref=row[11] or "",
                unread=bool(row[12]),
                preview=preview(row[13]),
                follows_purged=bool(row[14]),
            )
            for row in rows
        ),
        None if broad else total,
        per_page,
        more=more,
        has_next=has_next,
    )


COUNT_CAP = 1000
"""A search counts its reports up to this many ("more than 1,000")."""
BROAD_SHARE = 0.3
"""A search whose rarest word is in more than this share of the vault's texts is "broad"."""
BROAD_MIN_REPORTS = 5000
"""Below this many reports, every search is counted in full: it is quick."""

FEW_TEXTS = 2000
"""A search whose rarest word is in at most this many texts reads its reports from the list."""

_LISTED = "r.num IN (SELECT rowid >> 20 FROM search WHERE search MATCH ?)"
_SCANNED = "+" + _LISTED
_BROAD = (
    "EXISTS (SELECT 1 FROM search WHERE search MATCH ?"
    " AND rowid BETWEEN r.num << 20 AND (r.num << 20) + 1048575)"
)
assert SLOT_BITS == 20  # the constants above


def _filters(query: InboxQuery, where: list[str], args: list[Any]) -> None:
    if query.status == "open":
        where.append(f"r.status IN ({','.join('?' * len(OPEN_STATUSES))})")
        args += OPEN_STATUSES
    elif query.status:
        where.append("r.status = ?")
        args.append(query.status)
    if query.category:
        where.append("r.category = ?")
        args.append(query.category)
    if query.priority is not None:
        where.append(f"{AUTO_PRIORITY} = ?")
        args.append(query.priority)
    if query.assignee == UNASSIGNED:
        where.append("r.assignee IS NULL")
    elif query.assignee:
        where.append("r.assignee = ?")
        args.append(query.assignee)
    if query.tag:
        where.append("r.num IN (SELECT report_num FROM tags WHERE tag = ?)")
        args.append(query.tag.casefold())
    if query.day_from:
        where.append("r.day >= ?")
        args.append(query.day_from)
    if query.day_to:
        where.append("r.day <= ?")
        args.append(query.day_to)


def _count(
    db: sqlite3.Connection, sql_where: str, args: Sequence[Any], cap: int | None
) -> tuple[int, bool]:
    """How many reports match (exact, or up to ``cap`` and whether there are more)."""
    if cap is None:
        (total,) = db.execute(
            f"SELECT count(*) FROM reports r{sql_where}",  # noqa: S608 (constants)
            list(args),
        ).fetchone()
        return int(total), False
    (total,) = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM reports r{sql_where} LIMIT ?)",  # noqa: S608
        [*args, cap + 1],
    ).fetchone()
    return min(int(total), cap), total > cap


def _tokens(text: str) -> list[str]:
    """The words of a search as the index's tokenizer sees them (lower case, no accents)."""
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c)
    )
    return [word for word in re.split(r"[^\w]+|_", plain) if word]


def _estimate(db: sqlite3.Connection, text: str) -> int | None:
    """How many texts of the index hold the rarest word of a search (``search_words``), or
    None when that cannot be told (a word cut short with ``*``)."""
    if "*" in text:
        return None
    words = _tokens(text)
    if not words:
        return None
    least = None
    for word in words[:MAX_TERMS]:
        found = db.execute("SELECT doc FROM search_words WHERE term = ?", (word,)).fetchone()
        count = int(found[0]) if found else 0
        least = count if least is None else min(least, count)
    return least


def _counts(db: Any, ids: Sequence[str]) -> dict[tuple[str, str], int]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {
        (report, kind): count
        for report, kind, count in db.execute(
            f"""SELECT report_id, kind, count(*) FROM items
                WHERE report_id IN ({marks}) AND kind IN ('message', 'file') AND NOT unreadable
                GROUP BY report_id, kind""",  # noqa: S608 (placeholders only)
            list(ids),
        )
    }


def _tags(db: Any, nums: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if nums:
        marks = ",".join("?" * len(nums))
        for num, tag in db.execute(
            f"SELECT report_num, tag FROM tags WHERE report_num IN ({marks})"  # noqa: S608
            " ORDER BY tag",
            list(nums),
        ):
            found.setdefault(num, []).append(tag)
    return found


def _snippets(db: Any, match: str, num: int) -> list[Snippet]:
    base = num << SLOT_BITS
    return [
        Snippet(kind, highlight(text))
        for kind, text in db.execute(
            "SELECT kind, snippet(search, 1, char(2), char(3), '…', ?) FROM search"
            " WHERE search MATCH ? AND rowid BETWEEN ? AND ? LIMIT ?",
            (SNIPPET_TOKENS, match, base, base + (1 << SLOT_BITS) - 1, SNIPPETS_PER_REPORT),
        )
    ]


def snippets_for(vault: Vault, text: str, report_id: str) -> list[Snippet]:
    """Where the words of a search appear in one report (for its page)."""
    match = fts_query(text)
    if match is None:
        return []
    with vault.transaction() as db:
        row = db.execute("SELECT num FROM reports WHERE id = ?", (report_id,)).fetchone()
        return _snippets(db, match, row[0]) if row else []
