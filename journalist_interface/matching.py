"""Known-content matching: hash lists in the vault, and attachments checked against them.

Units receive lists of known abuse or terrorist material (from NCMEC, GIFCT, a national
hotline…) as SHA-256, MD5 or PDQ hashes.  Analysts should not have to look at such material
again to recognise it, so:

- every attachment is fingerprinted when it is imported (:mod:`journalist_interface.fingerprints`,
  in the sandbox) and checked against the lists: an exact SHA-256 or MD5, or a PDQ hash within
  :attr:`Thresholds.pdq_distance` bits of one whose quality is at least
  :attr:`Thresholds.pdq_quality`.  A list imported later is checked against every attachment
  already in the vault;
- a match is recorded (table ``matches``, with the list's name, the entry's label and category)
  and written to the audit log; the report's priority rises to *high* (never lowered), the
  category of the entry is shown as a suggestion, and the image's preview is **not made at all**
  until an analyst asks for it (:func:`unhide`, audited): not even blurred;
- images of different reports whose PDQ hashes are within the distance become a Connections
  link (``image_keys``): a wave of sextortion reports with the same pictures is one cluster.

Hash lists (:func:`parse_list`, format in docs/casework.md) are imported with
``blagh workstation hashlist import NAME FILE``, optionally with a detached Ed25519 signature
checked against a key the administrator names.  Importing a name again makes a new version that
replaces the entries of the previous one; removing a list deletes its entries (its versions stay
listed, marked removed, for the record).  Every import, removal and match is in the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from journalist_interface import audit, cases, pdq
from journalist_interface.errors import WorkstationError
from journalist_interface.fingerprints import Fingerprint, fingerprint
from journalist_interface.sandbox import SandboxError, SandboxUnavailable
from journalist_interface.vault import Attachment, Vault, today

MAX_LIST_BYTES = 512 * 1024 * 1024
MAX_LINE = 4096
MAX_LABEL = 200
MAX_CATEGORY = 64
MAX_NAME = 64
MATCH_PRIORITY = 2
"""A report with a match is at least *high* priority (cases.PRIORITY_NAMES)."""
KINDS = ("sha256", "md5", "pdq")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")
_LENGTHS = {"sha256": 64, "md5": 32, "pdq": 64}


class HashListError(WorkstationError):
    """A hash list was refused (malformed, too large, badly signed) or is unknown."""


@dataclass(frozen=True)
class Thresholds:
    """When a PDQ hash matches: within ``pdq_distance`` bits, both of quality ≥ ``pdq_quality``."""

    pdq_distance: int = pdq.MAX_DISTANCE
    pdq_quality: int = pdq.MIN_QUALITY

    def __post_init__(self) -> None:
        if not 0 <= self.pdq_distance <= 128 or not 0 <= self.pdq_quality <= 100:
            raise ValueError("pdq_distance is 0 to 128 bits and pdq_quality 0 to 100")


@dataclass(frozen=True)
class Entry:
    kind: str
    value: str
    label: str = ""
    category: str = ""


@dataclass(frozen=True)
class ListInfo:
    """One version of a hash list."""

    id: int
    name: str
    version: int
    imported: str
    analyst: str
    file_sha256: str
    signed_by: str | None
    entries: int
    removed: str | None


@dataclass(frozen=True)
class Match:
    """An attachment found on a list."""

    item_id: str
    report_id: str
    list_name: str
    kind: str
    value: str
    distance: int
    label: str
    category: str


# --- the list format --------------------------------------------------------------------------


def parse_list(data: bytes, *, bare_64: str = "sha256") -> list[Entry]:
    """The entries of a hash list file (format: docs/casework.md, "Known-content matching").

    One entry a line: ``[KIND:]HEX``, then optionally a TAB and a label, then a TAB and a
    category.  ``KIND`` is ``sha256``, ``md5`` or ``pdq``; without it 32 hex digits are an MD5
    and 64 a SHA-256 (or a PDQ hash when ``bare_64`` is ``"pdq"``).  Blank lines and lines
    starting with ``#`` are ignored.  Raises :class:`HashListError` naming the first bad line.
    """
    if bare_64 not in ("sha256", "pdq"):
        raise ValueError("bare 64-digit hashes are sha256 or pdq")
    if len(data) > MAX_LIST_BYTES:
        raise HashListError(f"the list is larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HashListError("the list is not UTF-8 text") from None
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip("\r\n ")
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE:
            raise HashListError(f"line {number} is too long")
        parts = line.split("\t")
        if len(parts) > 3:
            raise HashListError(f"line {number} has more than three TAB-separated fields")
        head = parts[0].strip().lower()
        kind, sep, value = head.partition(":")
        if not sep:
            value = kind
            kind = {32: "md5", 64: bare_64}.get(len(value), "")
        if kind not in _LENGTHS or len(value) != _LENGTHS[kind] or not _HEX.fullmatch(value):
            raise HashListError(
                f"line {number} is not a SHA-256, MD5 or PDQ hash (hex, optionally "
                "prefixed sha256:, md5: or pdq:)"
            )
        label = " ".join(parts[1].split())[:MAX_LABEL] if len(parts) > 1 else ""
        category = parts[2].strip().lower()[:MAX_CATEGORY] if len(parts) > 2 else ""
        entries.append(Entry(kind, value, label, category))
    if not entries:
        raise HashListError("the list holds no hash")
    return entries


# --- lists in the vault -----------------------------------------------------------------------


def import_list(
    vault: Vault,
    name: str,
    data: bytes,
    *,
    signer: str | None = None,
    bare_64: str = "sha256",
    thresholds: Thresholds = Thresholds(),
) -> tuple[ListInfo, list[Match]]:
    """Store ``data`` as the next version of the list ``name`` (replacing the previous
    version's entries), audit it, then check every attachment already in the vault against it.

    ``signer`` is the fingerprint of the key whose signature the caller checked, or None for an
    unsigned list.  Returns the new version and the matches it found.
    """
    if not _NAME.fullmatch(name):
        raise HashListError("a list name is 1 to 64 letters, digits, dots, dashes or underscores")
    entries = parse_list(data, bare_64=bare_64)
    analyst = audit.analyst_of(vault)
    with vault.transaction() as db:
        row = db.execute(
            "SELECT coalesce(max(version), 0) FROM hashlists WHERE name = ?", (name,)
        ).fetchone()
        version = int(row[0]) + 1
        db.execute(
            "DELETE FROM hashlist_entries WHERE list_id IN"
            " (SELECT id FROM hashlists WHERE name = ?)",
            (name,),
        )
        db.execute("UPDATE hashlists SET removed = ? WHERE name = ? AND removed IS NULL",
                   (today(), name))  # fmt: skip
        list_id = db.execute(
            "INSERT INTO hashlists (name, version, imported, analyst, file_sha256, signed_by,"
            " entries) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, version, today(), analyst, hashlib.sha256(data).hexdigest(), signer,
             len(entries)),
        ).lastrowid  # fmt: skip
        db.executemany(
            "INSERT INTO hashlist_entries (list_id, kind, value, label, category)"
            " VALUES (?, ?, ?, ?, ?)",
            [(list_id, e.kind, e.value, e.label, e.category) for e in entries],
        )
        counts = {kind: sum(1 for e in entries if e.kind == kind) for kind in KINDS}
        audit.append(
            db,
            analyst,
            "hashlist_import",
            {
                "list": name,
                "version": version,
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "signed_by": signer,
                **counts,
            },
        )
    info = next(i for i in lists(vault) if i.id == list_id)
    found = check(vault, None, thresholds)
    return info, found


def lists(vault: Vault, *, include_removed: bool = True) -> list[ListInfo]:
    """Every version of every list, by name then version."""
    with vault.transaction() as db:
        rows = db.execute(
            "SELECT id, name, version, imported, analyst, file_sha256, signed_by, entries, removed"
            " FROM hashlists ORDER BY name, version"
        ).fetchall()
    found = [ListInfo(*row) for row in rows]
    return [i for i in found if include_removed or i.removed is None]


def remove_list(vault: Vault, name: str) -> int:
    """Delete the entries of every version of ``name`` (they stay listed, marked removed);
    the matches already found are kept as case facts.  Returns how many entries went."""
    analyst = audit.analyst_of(vault)
    with vault.transaction() as db:
        active = db.execute(
            "SELECT id, version FROM hashlists WHERE name = ? AND removed IS NULL", (name,)
        ).fetchone()
        if active is None:
            raise HashListError(f"there is no list named {name} in this vault")
        gone = db.execute(
            "DELETE FROM hashlist_entries WHERE list_id IN"
            " (SELECT id FROM hashlists WHERE name = ?)",
            (name,),
        ).rowcount
        db.execute("UPDATE hashlists SET removed = ? WHERE name = ? AND removed IS NULL",
                   (today(), name))  # fmt: skip
        audit.append(
            db, analyst, "hashlist_remove", {"list": name, "version": active[1], "entries": gone}
        )
    return int(gone)


# --- the PDQ index of the lists, loaded once --------------------------------------------------


@dataclass
class _ListIndex:
    generation: tuple[int, int, int]
    index: pdq.PdqIndex
    rows: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    """Per row of the index: list id, list name, hex, label, category."""


_INDEXES: dict[str, _ListIndex] = {}
"""Per vault database (every analyst's view of one vault shares it): its lists' index."""
_INDEXES_LOCK = threading.Lock()


def _generation(db: sqlite3.Connection) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT coalesce(max(id), 0), count(removed), count(*) FROM hashlists"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _list_index(vault: Vault, db: sqlite3.Connection) -> _ListIndex:
    """The active lists' PDQ hashes, packed; rebuilt only when a list came or went."""
    generation = _generation(db)
    where = str(vault.paths.db_file)
    with _INDEXES_LOCK:
        known = _INDEXES.get(where)
    if known is not None and known.generation == generation:
        return known
    rows = db.execute(
        "SELECT l.id, l.name, e.value, e.label, e.category FROM hashlist_entries e"
        " JOIN hashlists l ON l.id = e.list_id WHERE e.kind = 'pdq' AND l.removed IS NULL"
        " ORDER BY e.rowid"
    ).fetchall()
    built = _ListIndex(generation, pdq.PdqIndex([row[2] for row in rows]), rows)
    with _INDEXES_LOCK:
        _INDEXES[where] = built
    return built


# --- fingerprinting and checking --------------------------------------------------------------


def fingerprint_new(vault: Vault, max_pixels: int | None = None) -> list[str]:
    """Fingerprint every readable attachment that has no fingerprint yet (in the sandbox);
    returns their item ids.  A file the sandbox fails on is recorded with its bytes' hashes
    computed here and no PDQ, so it is still matched exactly."""
    with vault.transaction() as db:
        todo = db.execute(
            "SELECT i.id, i.report_id, i.day, i.name, i.content_type, i.size, i.blob"
            " FROM items i LEFT JOIN fingerprints f ON f.item_id = i.id"
            " WHERE i.kind = 'file' AND NOT i.unreadable AND i.blob IS NOT NULL"
            " AND f.item_id IS NULL ORDER BY i.position"
        ).fetchall()
    done: list[str] = []
    for item_id, report_id, day, name, content_type, size, blob in todo:
        attachment = Attachment(item_id, day, name or "", content_type or "", size or 0, blob)
        try:
            found = (
                fingerprint(vault, attachment)
                if max_pixels is None
                else fingerprint(vault, attachment, max_pixels)
            )
        except SandboxUnavailable:
            raise  # nothing is checked: the caller says so, the next import retries
        except SandboxError:
            found = _bytes_only(vault, attachment)
        store_fingerprint(vault, item_id, report_id, found)
        done.append(item_id)
    return done


def _bytes_only(vault: Vault, attachment: Attachment) -> Fingerprint:
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 (what hash lists use, not security)
    for chunk in vault.attachment_chunks(attachment):
        sha.update(chunk)
        md5.update(chunk)
    return Fingerprint(sha.hexdigest(), md5.hexdigest(), (), "", False)


def store_fingerprint(vault: Vault, item_id: str, report_id: str, found: Fingerprint) -> None:
    hashes = [[h.hex, h.quality] for h in found.pdq]
    with vault.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO fingerprints (item_id, report_id, sha256, md5, pdq, family,"
            " decoded) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item_id, report_id, found.sha256, found.md5, json.dumps(hashes), found.family,
             int(found.decoded)),
        )  # fmt: skip


def check(
    vault: Vault, item_ids: Sequence[str] | None, thresholds: Thresholds = Thresholds()
) -> list[Match]:
    """Check the fingerprints of ``item_ids`` (None: all) against the active lists; record
    what is new, raise priorities, audit each match; link new images (``item_ids`` given) to
    the near images of other reports.  Returns the new matches."""
    new: list[Match] = []
    raised: set[str] = set()
    with vault.transaction() as db:
        prints = _fingerprints(db, item_ids)
        index = _list_index(vault, db)
        for item_id, report_id, sha256, md5, hashes in prints:
            for match in _matches_of(db, index, item_id, report_id, sha256, md5, hashes,
                                     thresholds):  # fmt: skip
                inserted = db.execute(
                    "INSERT OR IGNORE INTO matches (item_id, report_id, list_id, list_name, kind,"
                    " value, distance, label, category, day)"
                    " SELECT ?, ?, id, ?, ?, ?, ?, ?, ?, ? FROM hashlists"
                    " WHERE name = ? AND removed IS NULL",
                    (match.item_id, match.report_id, match.list_name, match.kind, match.value,
                     match.distance, match.label, match.category, today(), match.list_name),
                ).rowcount  # fmt: skip
                if inserted:
                    new.append(match)
                    raised.add(report_id)
                    audit.append(
                        db,
                        audit.analyst_of(vault),
                        "match",
                        {
                            "report": report_id,
                            "item": item_id,
                            "list": match.list_name,
                            "kind": match.kind,
                            "distance": match.distance,
                            "label": match.label,
                        },
                    )
        if item_ids is not None:
            _link_images(db, prints, thresholds)
    for report_id in sorted(raised):
        _raise_priority(vault, report_id)
    return new


def _fingerprints(
    db: sqlite3.Connection, item_ids: Sequence[str] | None
) -> list[tuple[str, str, str, str, list[tuple[str, int]]]]:
    query = "SELECT item_id, report_id, sha256, md5, pdq FROM fingerprints"
    rows: list[tuple[str, str, str, str, str]] = []
    if item_ids is None:
        rows = db.execute(query + " ORDER BY item_id").fetchall()
    else:
        for start in range(0, len(item_ids), 500):
            part = list(item_ids[start : start + 500])
            marks = ", ".join("?" * len(part))
            rows += db.execute(f"{query} WHERE item_id IN ({marks})", part).fetchall()
    return [(a, b, c, d, [(h, int(q)) for h, q in json.loads(e)]) for a, b, c, d, e in rows]


def _matches_of(
    db: sqlite3.Connection,
    index: _ListIndex,
    item_id: str,
    report_id: str,
    sha256: str,
    md5: str,
    hashes: Iterable[tuple[str, int]],
    thresholds: Thresholds,
) -> list[Match]:
    found: dict[tuple[str, str, str], Match] = {}
    for kind, value in (("sha256", sha256), ("md5", md5)):
        for name, label, category in db.execute(
            "SELECT l.name, e.label, e.category FROM hashlist_entries e"
            " JOIN hashlists l ON l.id = e.list_id"
            " WHERE e.kind = ? AND e.value = ? AND l.removed IS NULL",
            (kind, value),
        ):
            found[(name, kind, value)] = Match(
                item_id, report_id, name, kind, value, 0, label, category
            )
    for hex_hash, quality in hashes:
        if quality < thresholds.pdq_quality:
            continue  # a weak hash meets others by chance
        for row, dist in index.index.near(hex_hash, thresholds.pdq_distance):
            _list_id, name, value, label, category = index.rows[row]
            key = (name, "pdq", value)
            if key not in found or found[key].distance > dist:
                found[key] = Match(item_id, report_id, name, "pdq", value, dist, label, category)
    return list(found.values())


def _link_images(
    db: sqlite3.Connection,
    prints: Sequence[tuple[str, str, str, str, list[tuple[str, int]]]],
    thresholds: Thresholds,
) -> None:
    """Give each new image the image key of the near images already in the vault (the
    earliest key among them; its own hash's key if there is none), and link the reports of
    them all under that key, so near-duplicates across reports form one Connections cluster.

    A key is never changed once given: near images that arrive later join it, so a wave stays
    one cluster as it grows (images near two clusters join the older key)."""
    new = {item_id for item_id, *_rest in prints}
    known = _keyed_images(db, new, thresholds)
    index = pdq.PdqIndex([hex_hash for _item, _report, hex_hash, _key in known])
    added: list[tuple[str, str, str, str]] = []  # this batch's, compared one by one
    for item_id, report_id, _sha, _md5, hashes in prints:
        good = [h for h, quality in hashes if quality >= thresholds.pdq_quality]
        if not good:
            continue
        near = [
            known[row]
            for hex_hash in good
            for row, _distance in index.near(hex_hash, thresholds.pdq_distance)
        ]
        near += [
            entry
            for entry in added
            if any(pdq.distance(h, entry[2]) <= thresholds.pdq_distance for h in good)
        ]
        keys = sorted({key for *_rest, key in near if key})
        key = keys[0] if keys else "pdq:" + good[0]
        db.execute("UPDATE fingerprints SET image_key = ? WHERE item_id = ?", (key, item_id))
        added += [(item_id, report_id, h, key) for h in good]
        reports = {report for _item, report, _h, _key in near} | {report_id}
        if len(reports) < 2:
            continue
        db.executemany(
            "INSERT OR IGNORE INTO image_keys (value, report_num)"
            " SELECT ?, num FROM reports WHERE id = ?",
            [(key, report) for report in sorted(reports)],
        )


def _keyed_images(
    db: sqlite3.Connection, leave_out: set[str], thresholds: Thresholds
) -> list[tuple[str, str, str, str]]:
    """(item, report, hex, image key) of every good PDQ hash already in the vault."""
    found = []
    for item_id, report_id, hashes, key in db.execute(
        "SELECT item_id, report_id, pdq, image_key FROM fingerprints WHERE pdq != '[]'"
    ):
        if item_id in leave_out:
            continue
        for hex_hash, quality in json.loads(hashes):
            if int(quality) >= thresholds.pdq_quality:
                found.append((item_id, report_id, hex_hash, key or ""))
    return found


def _raise_priority(vault: Vault, report_id: str) -> None:
    with vault.transaction() as db:
        row = db.execute(
            f"SELECT {cases.AUTO_PRIORITY} FROM reports r WHERE r.id = ?",  # noqa: S608
            (report_id,),
        ).fetchone()
    if row is not None and row[0] < MATCH_PRIORITY:
        cases.update(vault, report_id, priority=MATCH_PRIORITY)


# --- what the views read ----------------------------------------------------------------------


def matches_of_report(vault: Vault, report_id: str) -> list[Match]:
    with vault.transaction() as db:
        rows = db.execute(
            "SELECT item_id, report_id, list_name, kind, value, distance, label, category"
            " FROM matches WHERE report_id = ? ORDER BY item_id, distance, list_name",
            (report_id,),
        ).fetchall()
    return [Match(*row) for row in rows]


def is_hidden(vault: Vault, item_id: str) -> bool:
    """Whether the attachment matched a list and no analyst has asked to see it yet."""
    with vault.transaction() as db:
        row = db.execute(
            "SELECT EXISTS (SELECT 1 FROM matches WHERE item_id = ?),"
            " EXISTS (SELECT 1 FROM match_unhidden WHERE item_id = ?)",
            (item_id, item_id),
        ).fetchone()
    return bool(row[0]) and not row[1]


def unhide(vault: Vault, report_id: str, item_id: str) -> None:
    """An analyst asked to see a matched attachment's preview: allow it, and audit it."""
    analyst = audit.analyst_of(vault)
    with vault.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO match_unhidden (item_id, report_id, analyst, day)"
            " VALUES (?, ?, ?, ?)",
            (item_id, report_id, analyst, today()),
        )
        audit.append(db, analyst, "match_unhide", {"report": report_id, "item": item_id})


def after_import(
    vault: Vault, thresholds: Thresholds = Thresholds(), max_pixels: int | None = None
) -> list[Match]:
    """Fingerprint what imports brought (and anything left unfingerprinted before) and check
    it.  Raises ``SandboxUnavailable`` when nothing could be fingerprinted."""
    return check(vault, fingerprint_new(vault, max_pixels), thresholds)
