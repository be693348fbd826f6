"""Connections between reports: the same link, account or file reported more than once.

Each report gets a set of *keys* (table ``report_keys``), made when it is imported:

- ``url``: every web address in its links, description and messages, normalised so that
  spellings of one page meet: no scheme (http and https are one), no ``www.``/``m.``/
  ``mobile.``, no user, default port, fragment or trailing slash; host in lower case (IDN as
  punycode), a few aliases folded (twitter.com is x.com, youtu.be/ID is youtube.com/watch?v=ID,
  instagr.am is instagram.com); path dot-segments resolved and percent-escapes made canonical;
  tracking parameters dropped (``utm_*``, ``fbclid``, ``gclid``, ``si``, ``igshid``… see
  :data:`TRACKING`) and the rest sorted.  On sites where account names ignore case, the path is
  lower-cased too.  "Defanged" addresses (``hxxp://``, ``[.]``) are read as addresses.
- ``handle``: an account name, ``@name`` in lower case, whether written as ``@name`` or as a
  profile address on a known social site (instagram.com/name, x.com/name/status/1…,
  tiktok.com/@name, t.me/name…).
- ``email``: an e-mail address, in lower case.
- ``file``: the SHA-256 of an attachment's bytes (computed as it is imported).
- ``image``: images (or video frames) whose PDQ hashes are within the matching distance of each
  other, whatever their bytes (re-encoded, resized, lightly cropped): table ``image_keys``,
  filled by :mod:`journalist_interface.matching`; the view ``connection_keys`` reads both.

Reports sharing a key are connected; a *cluster* is a key with the reports that share it,
listed largest first.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from journalist_interface.vault import Vault

TRACKING = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "ttclid", "li_fat_id", "igshid", "igsh", "si", "mc_cid", "mc_eid", "_ga", "_gl",
        "mibextid", "ref_src", "ref_url", "__tn__", "__cft__", "_hsenc", "_hsmi", "mkt_tok",
        "oly_enc_id", "oly_anon_id", "vero_id", "rb_clickid", "s_cid", "spm", "share_id",
        "feature", "is_from_webapp", "sender_device", "sender_web_id", "_t", "_r",
    }
)  # fmt: skip
"""Query parameters that only say who shared a link or how: dropped (and any ``utm_*``)."""

_TRACKING_ON = {"x.com": frozenset({"s", "t"}), "youtube.com": frozenset({"pp", "ab_channel"})}
"""Parameters that are tracking on one site only."""

_ALIASES = {
    "twitter.com": "x.com",
    "fxtwitter.com": "x.com",
    "vxtwitter.com": "x.com",
    "fb.com": "facebook.com",
    "instagr.am": "instagram.com",
    "telegram.me": "t.me",
    "youtube-nocookie.com": "youtube.com",
}
_PREFIXES = ("www.", "m.", "mobile.", "web.")

# Sites whose account names ignore case, and the first path segments that are not accounts.
_SOCIAL: dict[str, frozenset[str]] = {
    "instagram.com": frozenset({"p", "reel", "reels", "stories", "explore", "tv", "accounts"}),
    "x.com": frozenset({"i", "home", "search", "hashtag", "intent", "share", "explore"}),
    "tiktok.com": frozenset({"tag", "discover", "music", "video", "search", "t"}),
    "facebook.com": frozenset(
        {"groups", "pages", "events", "watch", "story.php", "profile.php", "share", "photo.php"}
    ),
    "t.me": frozenset({"s", "c", "joinchat", "addstickers", "share"}),
    "threads.net": frozenset({"t", "search"}),
    "snapchat.com": frozenset({"add", "discover", "spotlight", "t"}),
    "github.com": frozenset({"orgs", "topics", "search", "settings", "marketplace"}),
}
_AT_PROFILE = frozenset({"tiktok.com", "threads.net", "youtube.com"})
"""Sites whose profile addresses are ``/@name``."""

_HANDLE = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.]{0,63})")
_HANDLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,63}")
_EMAIL = re.compile(r"[\w.+-]+@(?:[\w-]+\.)+[A-Za-z]{2,}", re.UNICODE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_BARE = re.compile(r"(?:[\w-]+\.)+[^\W\d_]{2,}(?::\d+)?(?:[/?#]\S*)?", re.UNICODE)
_IN_TEXT = re.compile(
    r"(?:h[xt]{2}ps?(?:://|\[://\])|www\.)[^\s<>\"'“”‘’]+"
    r"|(?<![\w@.])@[A-Za-z0-9_][A-Za-z0-9_.]{1,63}"
    r"|[\w.+-]+@(?:[\w-]+\.)+[A-Za-z]{2,}",
    re.IGNORECASE | re.UNICODE,
)
_SPACE = re.compile(r"\s")
_UNRESERVED_PATH = "/:@!$&'()*+,;=-._~"
MAX_KEYS_PER_REPORT = 500
_STRIP = "\"'<>()[]{}.,;:!?“”‘’«»"


# --- normalising -------------------------------------------------------------------------------


def refang(text: str) -> str:
    """``hxxp://evil[.]example`` -> ``http://evil.example`` (how addresses are often shared)."""
    text = re.sub(r"^h[xX]{2}p", "http", text)
    text = re.sub(r"^(https?)\[:\]//", r"\1://", text)
    text = re.sub(r"^(https?)\[://\]", r"\1://", text)
    return text.replace("[.]", ".").replace("(.)", ".").replace("[dot]", ".")


def normalise_url(text: str) -> str | None:
    """The key of a web address, or None if ``text`` is not one (see the module's rules)."""
    text = refang(text.strip().strip(_STRIP.replace("/", "")))
    if not text or _SPACE.search(text):
        return None
    if not _SCHEME.match(text):
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text) and not re.match(r"[^:/]+:\d", text):
            return None  # javascript:, mailto:, data:… — not a web address
        if _BARE.fullmatch(text) is None:
            return None
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = _host(parts.hostname)
    if host is None:
        return None
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    path = _path(parts.path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if host == "youtu.be" and path.count("/") == 1 and len(path) > 1:
        host, query, path = "youtube.com", [("v", path[1:]), *query], "/watch"
    elif host == "youtube.com" and path.startswith("/shorts/") and path.count("/") == 2:
        query, path = [("v", path.split("/")[2]), *query], "/watch"
    if host in _SOCIAL or (host in _AT_PROFILE and path.startswith("/@")):
        path = path.lower()
    site_tracking = _TRACKING_ON.get(host, frozenset())
    kept = sorted(
        (name, value)
        for name, value in query
        if not (
            name.lower() in TRACKING
            or name.lower().startswith("utm_")
            or name.lower() in site_tracking
        )
    )
    return host + path + ("?" + urlencode(kept, quote_via=quote) if kept else "")


def _host(hostname: str) -> str | None:
    host = hostname.lower().rstrip(".")
    if not host or ".." in host:
        return None
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        if not host.isascii():
            return None
    for prefix in _PREFIXES:
        if host.startswith(prefix) and host.count(".") >= 2:
            host = host[len(prefix) :]
            break
    return _ALIASES.get(host, host)


def _path(raw: str) -> str:
    path = quote(unquote(raw), safe=_UNRESERVED_PATH)
    path = re.sub(r"/{2,}", "/", path)
    if path:
        trailing = path.endswith("/")
        path = posixpath.normpath(path)
        if path in (".", "/"):
            path = ""
        elif trailing:
            path = path.rstrip("/")
    return path if path.startswith("/") or not path else "/" + path


def handle_of_url(key: str) -> str | None:
    """The account a normalised address names on a known social site, as ``@name``."""
    host, _, rest = key.partition("/")
    path = rest.split("?", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        return None
    first = segments[0]
    if host in _AT_PROFILE:
        if first.startswith("@") and _HANDLE_NAME.fullmatch(first[1:]):
            return first.lower()
        return None
    if host in _SOCIAL and first not in _SOCIAL[host] and _HANDLE_NAME.fullmatch(first):
        return "@" + first.lower()
    return None


def keys_of(text: str) -> set[tuple[str, str]]:
    """The keys in one entry of a report's links: an address, ``@handle``, e-mail or free text."""
    entry = text.strip()
    found: set[tuple[str, str]] = set()
    handle = _HANDLE.fullmatch(entry)
    if handle is not None:
        return {("handle", "@" + handle.group(1).lower())}
    if _EMAIL.fullmatch(entry):
        return {("email", entry.lower())}
    url = normalise_url(entry)
    if url is not None:
        found.add(("url", url))
        owner = handle_of_url(url)
        if owner is not None:
            found.add(("handle", owner))
        return found
    return keys_in_text(entry)


def keys_in_text(text: str) -> set[tuple[str, str]]:
    """The addresses (with a scheme or ``www.``), ``@handles`` and e-mails in free text."""
    found: set[tuple[str, str]] = set()
    for match in _IN_TEXT.finditer(text):
        token = match.group(0).rstrip(_STRIP)
        if token.startswith("@"):
            found.add(("handle", token.lower()))
        elif "@" in token and _EMAIL.fullmatch(token):
            found.add(("email", token.lower()))
        else:
            found |= {key for key in keys_of(token) if key[0] in ("url", "handle")}
        if len(found) >= MAX_KEYS_PER_REPORT:
            break
    return found


# --- indexing ----------------------------------------------------------------------------------


def index_reports(db: sqlite3.Connection, report_ids: Iterable[str]) -> None:
    """Recompute the keys of these reports (in the caller's transaction)."""
    for report_id in report_ids:
        row = db.execute(
            "SELECT num, links, description FROM reports WHERE id = ?", (report_id,)
        ).fetchone()
        if row is None:
            continue
        num, links, description = row
        keys: set[tuple[str, str]] = set()
        for link in json.loads(links):
            keys |= keys_of(link)
        keys |= keys_in_text(description)
        for text, sha256 in db.execute(
            "SELECT text, sha256 FROM items WHERE report_id = ? AND NOT unreadable"
            " AND kind IN ('message', 'file')",
            (report_id,),
        ):
            if text:
                keys |= keys_in_text(text)
            if sha256:
                keys.add(("file", sha256))
        db.execute("DELETE FROM report_keys WHERE report_num = ?", (num,))
        db.executemany(
            "INSERT OR IGNORE INTO report_keys (kind, value, report_num) VALUES (?, ?, ?)",
            [(kind, value[:2048], num) for kind, value in sorted(keys)[:MAX_KEYS_PER_REPORT]],
        )


def hash_missing_files(vault: Vault) -> int:
    """Hash the attachments imported before file hashes were kept (this analyst's key opens
    them); return how many were hashed.  Files it cannot open are left for another analyst."""
    with vault.transaction() as db:
        rows = db.execute(
            "SELECT report_id, id FROM items WHERE kind = 'file' AND NOT unreadable"
            " AND sha256 IS NULL"
        ).fetchall()
    done = 0
    for report_id, item_id in rows:
        attachment = vault.attachment(report_id, item_id)
        if attachment is None:
            continue
        digest = hashlib.sha256()
        try:
            for chunk in vault.attachment_chunks(attachment):
                digest.update(chunk)
        except Exception:  # noqa: S112 (sealed to other keys, or damaged: not this analyst's)
            continue
        with vault.transaction() as db:
            db.execute("UPDATE items SET sha256 = ? WHERE id = ?", (digest.hexdigest(), item_id))
            index_reports(db, [report_id])
        done += 1
    return done


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Linked:
    """A report as listed beside a connection."""

    id: str
    day: str
    category: str
    status: str
    received: bool


@dataclass(frozen=True)
class Cluster:
    """A key and the reports that share it (``size`` of them; ``reports`` lists the newest)."""

    kind: str
    value: str
    size: int
    reports: tuple[Linked, ...]


def of_report(vault: Vault, report_id: str, limit: int = 50) -> list[Cluster]:
    """The keys of one report that other reports share too, with those other reports."""
    with vault.transaction() as db:
        row = db.execute("SELECT num FROM reports WHERE id = ?", (report_id,)).fetchone()
        if row is None:
            return []
        shared = db.execute(
            """SELECT k.kind, k.value, count(*) FROM connection_keys k
               JOIN connection_keys o ON o.kind = k.kind AND o.value = k.value
               WHERE k.report_num = ? GROUP BY k.kind, k.value HAVING count(*) > 1
               ORDER BY count(*) DESC, k.kind, k.value""",
            (row[0],),
        ).fetchall()
        return [
            Cluster(kind, value, size, _reports(db, kind, value, limit, exclude=row[0]))
            for kind, value, size in shared
        ]


def clusters(vault: Vault, limit: int = 100, per_cluster: int = 10) -> tuple[list[Cluster], int]:
    """The keys shared by two reports or more, largest first; and how many such keys there are."""
    with vault.transaction() as db:
        found = db.execute(
            """SELECT kind, value, count(*) AS size FROM connection_keys
               GROUP BY kind, value HAVING size > 1
               ORDER BY size DESC, kind, value"""
        ).fetchall()
        return [
            Cluster(kind, value, size, _reports(db, kind, value, per_cluster))
            for kind, value, size in found[:limit]
        ], len(found)


def _reports(
    db: sqlite3.Connection, kind: str, value: str, limit: int, exclude: int = -1
) -> tuple[Linked, ...]:
    return tuple(
        Linked(report_id, day, category, status, bool(received))
        for report_id, day, category, status, received in db.execute(
            """SELECT r.id, r.day, r.category, r.status, r.received FROM connection_keys k
               JOIN reports r ON r.num = k.report_num
               WHERE k.kind = ? AND k.value = ? AND k.report_num != ?
               ORDER BY r.day DESC, r.num DESC LIMIT ?""",
            (kind, value, exclude, limit),
        )
    )
