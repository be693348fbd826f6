"""Importing a pickup bundle: verify all of it, then decrypt it into the vault in one step.

The bundle is checked whole before anything is written (:class:`blagh.bundles.BundleReader`:
the pinned server key's signature, the member list, every hash), then its manifest's own
structure (sources, reports, items); any failure refuses the whole bundle and leaves the vault
exactly as it was.  Items already in the vault are skipped, so importing a bundle twice, or a
later bundle that repeats items not yet acknowledged, changes nothing.

What a reporter wrote is another matter: on the JavaScript path their browser seals it, so an
item may be sealed to the wrong keys or hold a malformed document.  Such an item is recorded as
unreadable (and acknowledged like the rest, so the server can drop it) instead of refusing the
bundle, or one reporter could stop every import.  Documents are read defensively: fields of the
wrong type are dropped.

Attachments stay envelopes: each is copied into ``blobs/`` while it is decrypted once, in a
stream, to check it opens and to read its name and type; the file's bytes are not kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blagh.blobs import PendingBlob
from blagh.bundles import BundleError, BundleReader
from blagh.payloads import MAX_ATTACHMENT_HEADER, PayloadError, decode_document, split_attachment
from crypto.envelope import EnvelopeReader, check_public_key, open_envelope
from crypto.errors import DecryptionError, InvalidPublicKey
from crypto.keys import KEY_BYTES, AnalystPublicKey
from journalist_interface import cases
from journalist_interface.connections import index_reports
from journalist_interface.errors import ImportRefused
from journalist_interface.vault import Vault, today

PICKUP_FORMAT = "blagh-pickup"
MAX_DOCUMENT_ENVELOPE = 4 * 1024 * 1024
"""Documents (report fields, messages, replies) are small: a larger one is not read."""

MAX_TEXT = 100_000
MAX_SHORT_TEXT = 2_048
MAX_LIST = 200

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DOCUMENT_KINDS = {"fields": "report", "message": "message"}
_KINDS = {*_DOCUMENT_KINDS, "file"}
"""A pickup item is a reporter's: never ``reply`` (replies go the other way, in reply bundles;
one arriving here would be shown as the analysts' own words)."""

ProgressCallback = Callable[[int], None]
"""Told how many more bytes were decrypted."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    bundle: str
    items: int
    new_items: int
    new_reports: int
    unreadable: int


@dataclass(frozen=True)
class _Item:
    id: str
    report: str
    kind: str
    size: int
    day: str
    seq: int


@dataclass(frozen=True)
class _Manifest:
    bundle: str
    day: str
    analysts: tuple[str, ...]
    sources: dict[str, bytes | None]
    reports: dict[str, tuple[str, str]]
    items: tuple[_Item, ...]


@dataclass
class _Decrypted:
    """An item ready to store: its columns (the search index follows them: schema.py)."""

    item: _Item
    columns: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] | None = None


def import_bundle(
    vault: Vault,
    path: Path,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Verify the pickup bundle at ``path`` and decrypt what is new into ``vault``.

    ``on_start`` is given the number of bytes to decrypt once the bundle is verified, and
    ``on_progress`` each increment after.  Raises :class:`ImportRefused`, saying which check
    failed, when the bundle is not wholly right; the vault is then unchanged.
    """
    try:
        reader = BundleReader(path, [vault.server_key().verify], PICKUP_FORMAT)
    except BundleError as error:
        raise ImportRefused(
            f"{error}. The whole bundle was refused: nothing was imported"
        ) from None
    with reader:
        manifest = _check_manifest(reader.manifest, vault, path)
        known = vault.known_items([item.id for item in manifest.items])
        todo = sorted(
            (item for item in manifest.items if item.id not in known),
            key=lambda item: (item.day, item.report, item.seq),
        )
        if on_start is not None:
            on_start(sum(item.size for item in todo))
        committed: list[PendingBlob] = []
        try:
            decrypted = [
                _decrypt(vault, reader, item, committed, on_progress or _ignore) for item in todo
            ]
            new_reports = _store(vault, manifest, decrypted)
        except BundleError as error:  # the file changed after it was verified
            for blob in committed:
                vault.blobs.delete(blob.name)
            raise ImportRefused(
                f"{error}. The whole bundle was refused: nothing was imported"
            ) from None
        except BaseException:
            for blob in committed:
                vault.blobs.delete(blob.name)
            raise
    return ImportResult(
        bundle=manifest.bundle,
        items=len(manifest.items),
        new_items=len(todo),
        new_reports=new_reports,
        unreadable=sum(1 for entry in decrypted if entry.columns.get("unreadable")),
    )


def _ignore(_done: int) -> None:
    pass


# --- the manifest ------------------------------------------------------------------------------


def _check_manifest(manifest: Mapping[str, Any], vault: Vault, path: Path) -> _Manifest:
    """The manifest's parts beyond what BundleReader checks, or ImportRefused naming the part."""

    def refuse(what: str) -> ImportRefused:
        return ImportRefused(
            f"{path}: the manifest's {what} is malformed. The whole bundle was refused: "
            "nothing was imported"
        )

    bundle, day = manifest.get("bundle"), manifest.get("day")
    if not _is(bundle, _HEX32) or not _is(day, _DAY):
        raise refuse("bundle id or day")
    analysts = manifest.get("analysts")
    if not isinstance(analysts, list) or not 1 <= len(analysts) <= 32:
        raise refuse("analyst list")
    try:
        parsed = [AnalystPublicKey.from_line(line) for line in analysts]
    except (InvalidPublicKey, AttributeError, TypeError):
        raise refuse("analyst list") from None
    if len(set(parsed)) != len(parsed):
        raise refuse("analyst list")

    sources: dict[str, bytes | None] = {}
    for entry in _list(manifest.get("sources"), refuse("source list")):
        public = entry.get("public_key")
        if not _is(entry.get("id"), _HEX32) or entry["id"] in sources:
            raise refuse("source list")
        if public is not None and not _is(public, _HEX64):
            raise refuse("source list")
        sources[entry["id"]] = _usable_key(public)

    reports: dict[str, tuple[str, str]] = {}
    for entry in _list(manifest.get("reports"), refuse("report list")):
        report_id, source = entry.get("id"), entry.get("source")
        if not _is(report_id, _HEX32) or report_id in reports or not _is(entry.get("day"), _DAY):
            raise refuse("report list")
        if source not in sources and not vault.report_exists(str(report_id)):
            raise refuse("report list")
        reports[str(report_id)] = (str(source), str(entry["day"]))

    items: list[_Item] = []
    for entry in manifest["items"]:  # id, size and sha256 were checked by BundleReader
        report, kind, seq = entry.get("report"), entry.get("kind"), entry.get("seq")
        if kind == "reply":
            raise ImportRefused(
                f"{path}: the manifest lists an item of kind 'reply': a pickup bundle carries "
                "reporters' items only. The whole bundle was refused: nothing was imported"
            )
        if (
            kind not in _KINDS
            or not _is(report, _HEX32)
            or not _is(entry.get("day"), _DAY)
            or not isinstance(seq, int)
            or isinstance(seq, bool)
            or (report not in reports and not vault.report_exists(str(report)))
        ):
            raise refuse("item list")
        items.append(_Item(entry["id"], report, kind, entry["size"], entry["day"], seq))
    return _Manifest(str(bundle), str(day), tuple(analysts), sources, reports, tuple(items))


def _usable_key(public: str | None) -> bytes | None:
    """A source's public key, or None when nothing can be sealed to it (a low-order point a
    reporter's tampered browser sent an older server): no reply can reach that reporter, as
    when no codename was kept.  Refusing the bundle instead would let one reporter stop every
    import."""
    if public is None:
        return None
    key = bytes.fromhex(public)
    try:
        check_public_key(key)
    except InvalidPublicKey:
        return None
    return key


def _is(value: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _list(value: object, error: ImportRefused) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise error
    return value


# --- decrypting --------------------------------------------------------------------------------


def _decrypt(
    vault: Vault,
    reader: BundleReader,
    item: _Item,
    committed: list[PendingBlob],
    progress: ProgressCallback,
) -> _Decrypted:
    if item.kind == "file":
        return _decrypt_file(vault, reader, item, committed, progress)
    result = _Decrypted(item)
    if item.size > MAX_DOCUMENT_ENVELOPE:
        progress(item.size)
        result.columns["unreadable"] = 1
        return result
    envelope = reader.read_item(item.id)
    progress(item.size)
    try:
        document = decode_document(
            open_envelope(envelope, [vault.key.encryption_secret]), _DOCUMENT_KINDS[item.kind]
        )
    except (DecryptionError, PayloadError):
        result.columns["unreadable"] = 1
        return result
    if item.kind == "fields":
        result.fields = _report_fields(document)
    else:
        text = _text(document.get("text"), MAX_TEXT)
        names = _names(document.get("attachments"))
        result.columns.update(text=text, attachments=json.dumps(names, ensure_ascii=False))
    return result


def _decrypt_file(
    vault: Vault,
    reader: BundleReader,
    item: _Item,
    committed: list[PendingBlob],
    progress: ProgressCallback,
) -> _Decrypted:
    """Copy the envelope into the blob folder, opening it on the way to read its description."""
    result = _Decrypted(item)
    blob = vault.blobs.new()
    envelope = EnvelopeReader([vault.key.encryption_secret])
    head = bytearray()
    plain_size = 0
    digest = _FileDigest()
    try:
        for chunk in reader.item_chunks(item.id):
            blob.write(chunk)
            progress(len(chunk))
            plain = envelope.update(chunk)
            plain_size += len(plain)
            digest.update(plain)
            if len(head) <= MAX_ATTACHMENT_HEADER:
                head += plain[: MAX_ATTACHMENT_HEADER + 1 - len(head)]
        last = envelope.finish()
        plain_size += len(last)
        digest.update(last)
        head += last[: max(0, MAX_ATTACHMENT_HEADER + 1 - len(head))]
        description, _rest = split_attachment(bytes(head))
    except (DecryptionError, PayloadError):
        blob.discard()
        result.columns["unreadable"] = 1
        return result
    except BaseException:
        blob.discard()
        raise
    committed.append(blob)
    ref = blob.commit()
    header_size = bytes(head).index(b"\n") + 1
    name = _text(description.get("name"), 255) or "attachment"
    result.columns.update(
        blob=ref.name,
        name=name,
        content_type=_text(description.get("type"), 255),
        size=plain_size - header_size,
        sha256=digest.hexdigest(),
    )
    return result


class _FileDigest:
    """SHA-256 of an attachment's bytes, after its description line (for connections)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._in_header = True

    def update(self, plain: bytes) -> None:
        if self._in_header:
            end = plain.find(b"\n")
            if end < 0:
                return
            plain, self._in_header = plain[end + 1 :], False
        self._hash.update(plain)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _text(value: object, limit: int = MAX_SHORT_TEXT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [_text(name, 255) for name in value[:MAX_LIST] if isinstance(name, str)]


def _report_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """A report document's fields, each of the type the vault stores or else empty."""
    links = document.get("links")
    identity = document.get("identity")
    seen_on = document.get("seen_on")
    person = None
    if isinstance(identity, dict):
        person = {key: _text(identity.get(key), 254) for key in ("name", "phone", "email")}
        if not any(person.values()):
            person = None
    return {
        "category": _text(document.get("category"), 64),
        "danger": 1 if document.get("danger") is True else 0,
        "description": _text(document.get("description"), MAX_TEXT),
        "links": [_text(link) for link in links[:MAX_LIST] if isinstance(link, str)]
        if isinstance(links, list)
        else [],
        "platform": _text(document.get("platform"), 200),
        "seen_on": seen_on if _is(seen_on, _DAY) else None,
        "identity": person,
        "attachments": _names(document.get("attachments")),
    }


# --- storing -----------------------------------------------------------------------------------


def _store(vault: Vault, manifest: _Manifest, decrypted: Iterable[_Decrypted]) -> int:
    """Write everything in one transaction; return how many reports were new."""
    with vault.transaction() as db:
        for source_id, public_key in manifest.sources.items():
            if public_key is not None and len(public_key) != KEY_BYTES:
                public_key = None
            db.execute(
                "INSERT OR IGNORE INTO sources (id, public_key) VALUES (?, ?)",
                (source_id, public_key),
            )
        new_reports = 0
        for report_id, (source_id, day) in manifest.reports.items():
            new_reports += db.execute(
                "INSERT OR IGNORE INTO reports (id, source_id, day) VALUES (?, ?, ?)",
                (report_id, source_id, day),
            ).rowcount
        position = vault.next_position(db)
        for entry in decrypted:
            item = entry.item
            columns = {
                "id": item.id,
                "report_id": item.report,
                "kind": item.kind,
                "day": item.day,
                "seq": item.seq,
                "position": position,
                "pickup": manifest.bundle,
                **entry.columns,
            }
            position += 1
            names = ", ".join(columns)
            marks = ", ".join("?" * len(columns))
            db.execute(f"INSERT INTO items ({names}) VALUES ({marks})", list(columns.values()))  # noqa: S608
            if entry.fields is not None:
                _store_fields(db, item.report, entry.fields)
        index_reports(db, sorted({entry.item.report for entry in decrypted}))
        reopened = cases.reopen_followed_up(
            vault,
            db,
            sorted({e.item.report for e in decrypted if e.item.kind in ("message", "file")}),
        )
        seen = db.execute(
            "INSERT OR IGNORE INTO pickups (id, day, imported, items, new_items)"
            " VALUES (?, ?, ?, ?, ?)",
            (manifest.bundle, manifest.day, today(), len(manifest.items), len(list(decrypted))),
        ).rowcount
        if seen and manifest.day >= vault.analysts_day():
            db.executemany(
                "UPDATE settings SET value = ? WHERE name = ?",
                [(json.dumps(list(manifest.analysts)), "analysts"), (manifest.day, "analysts_day")],
            )
    for report_id in reopened:
        cases.audit(vault, "status", report=report_id, **cases.REOPENED)
    return new_reports


def _store_fields(db: Any, report_id: str, fields: Mapping[str, Any]) -> None:
    db.execute(
        """UPDATE reports SET received = 1, category = ?, danger = ?, description = ?, links = ?,
               platform = ?, seen_on = ?, identity = ?, attachments = ?
           WHERE id = ? AND received = 0""",
        (
            fields["category"],
            fields["danger"],
            fields["description"],
            json.dumps(fields["links"], ensure_ascii=False),
            fields["platform"],
            fields["seen_on"],
            json.dumps(fields["identity"], ensure_ascii=False) if fields["identity"] else None,
            json.dumps(fields["attachments"], ensure_ascii=False),
            report_id,
        ),
    )
