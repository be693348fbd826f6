"""Evidence export of a case: one zip an investigator can check offline, byte for byte.

::

    README.txt                      what this is and how to check it
    report.html                     the report, its conversation, files and case, as a page
                                    (no script, no link, nothing loaded: a CSP says so)
    report.json                     the same, as data
    custody.jsonl                   the chain of custody: every audit-log entry about the report
                                    (imported, viewed, revealed, changed, exported…: who, when),
                                    one canonical JSON line each, hashes included
    envelopes/NN-ITEM.envelope      each attachment's envelope, as the server sealed it
    files/NN-NAME                   each attachment decrypted, byte for byte as the reporter sent it
    cleaned/NN-NAME.cleaned.EXT     a copy mat2 cleaned of metadata, where mat2 could
    manifest.signed                 the signed manifest (last)

A reporter's file keeps an extension only when it is a plain picture, sound, video or text
(:func:`evidence_name`, checked against what the bytes really are): anything else ends in
``.bin``, so an investigator who double-clicks ``files/02-x.html.bin`` runs no script.  The name
the reporter gave is in the manifest and in report.json.

The manifest (canonical JSON, docs/keys.md) lists every other member with its size and
SHA-256, the report, who exported it and when, the audit log's head at that moment, and what
could not be cleaned and why; it is signed with the exporting analyst's Ed25519 key
(:func:`crypto.manifest.sign_manifest`, ``blagh-manifest-v1`` domain).  Members are stored
uncompressed, so each file can also be checked with nothing but ``unzip`` and ``sha256sum``.
:func:`verify` (``blagh verify-evidence FILE``) checks the signature, that the members are
exactly those listed (no path that could escape a folder), and every size and hash.

The export itself goes into the audit log with the zip's SHA-256, after it is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from blagh.bundles import MANIFEST_MEMBER, kind_name, unverified_format
from blagh.strict_tar import TarRefused, TarScanner
from crypto.errors import BadSignature
from crypto.keys import AnalystPublicKey
from crypto.manifest import HEADER_BYTES, KEY_BYTES, MAGIC, Sha256, sign_manifest, verify_manifest
from journalist_interface import audit, cases
from journalist_interface.errors import WorkstationError
from journalist_interface.metadata import MetadataError, clean_copy, clean_name
from journalist_interface.safeview import FileKind, kind_of
from journalist_interface.sandbox import SandboxError, memory_folder
from journalist_interface.vault import Attachment, Report, Vault, new_id

FORMAT = "blagh-evidence"
VERSION = 1
MANIFEST = "manifest.signed"
MAX_MANIFEST = 64 * 1024 * 1024
_COPY = 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EvidenceError(WorkstationError):
    """An export could not be made, or an evidence file does not verify."""


@dataclass(frozen=True)
class Exported:
    """What :func:`export_case` wrote."""

    path: Path
    export: str
    sha256: str
    files: int
    not_cleaned: int


@dataclass(frozen=True)
class Verified:
    """An evidence file whose signature, members and hashes all checked out."""

    manifest: dict[str, Any]
    signer: AnalystPublicKey
    files: int


# --- exporting ---------------------------------------------------------------------------------


def export_case(
    vault: Vault, report_id: str, out: Path, *, analyst: str | None = None, clean: bool = True
) -> Exported:
    """Write the evidence zip of ``report_id`` to ``out`` (a new file, mode 0600).

    ``clean`` makes the mat2-cleaned copies (in the sandbox); a file mat2 cannot clean is listed
    in the manifest's ``not_cleaned`` with the reason.  Raises :class:`EvidenceError` for an
    unknown report, ``FileExistsError`` if ``out`` exists.
    """
    report = vault.report(report_id)
    if report is None:
        raise EvidenceError(f"there is no report {report_id} in this vault")
    who = analyst or audit.analyst_of(vault)
    export_id = new_id()
    exported_at = audit.now()
    custody = audit.entries(vault, report=report_id)
    head = audit.head(vault)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            listed = _write_zip(
                vault, report, file, who, export_id, exported_at, custody, head, clean
            )
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    digest = Sha256()
    with out.open("rb") as written:
        while chunk := written.read(_COPY):
            digest.update(chunk)
    files, not_cleaned = listed
    audit.record(
        vault, who, "export", report=report_id, export=export_id, sha256=digest.hexdigest()
    )
    return Exported(out, export_id, digest.hexdigest(), files, not_cleaned)


def _write_zip(
    vault: Vault,
    report: Report,
    file: IO[bytes],
    analyst: str,
    export_id: str,
    exported_at: str,
    custody: Sequence[audit.Entry],
    head: str,
    clean: bool,
) -> tuple[int, int]:
    listed: list[dict[str, Any]] = []
    not_cleaned: list[dict[str, str]] = []
    described: list[dict[str, Any]] = []
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:

        def add(path: str, chunks: Iterable[bytes], **about: Any) -> dict[str, Any]:
            digest, size = Sha256(), 0
            info = zipfile.ZipInfo(path, date_time=_zip_time(exported_at))
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    member.write(chunk)
            entry = {"path": path, "size": size, "sha256": digest.hexdigest(), **about}
            listed.append(entry)
            return entry

        add("README.txt", [_README.encode("utf-8")], role="readme")
        for number, attachment in enumerate(report.files, start=1):
            prefix = f"{number:02d}-"
            add(
                f"envelopes/{prefix}{attachment.id}.envelope",
                _blob_chunks(vault, attachment),
                role="envelope",
                item=attachment.id,
            )
            kind = kind_of(vault, attachment)
            original = add(
                f"files/{prefix}{evidence_name(attachment.name, kind)}",
                vault.attachment_chunks(attachment),
                role="original",
                item=attachment.id,
                name=attachment.name,
                declared_type=attachment.content_type,
                detected_type=kind.mime,
            )
            about = {
                "item": attachment.id,
                "name": attachment.name,
                "declared_type": attachment.content_type,
                "detected_type": kind.mime,
                "day": attachment.day,
                "size": original["size"],
                "sha256": original["sha256"],
                "file": original["path"],
            }
            if clean:
                try:
                    copy = clean_copy(vault, attachment)
                except (MetadataError, SandboxError) as error:
                    not_cleaned.append({"item": attachment.id, "reason": str(error)})
                    about["cleaned"] = None
                else:
                    cleaned = add(
                        f"cleaned/{prefix}{evidence_name(clean_name(attachment.name, kind), kind)}",
                        [copy.data],
                        role="cleaned",
                        item=attachment.id,
                    )
                    about["cleaned"] = cleaned["path"]
            described.append(about)
        data = _report_data(vault, report, described)
        add(
            "report.json",
            [json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")],
            role="report",
        )
        page = _render(
            data=data,
            custody=custody,
            export_id=export_id,
            exported_at=exported_at,
            analyst=analyst,
        )
        add("report.html", [page.encode("utf-8")], role="report")
        add(
            "custody.jsonl",
            [(entry.line() + "\n").encode("utf-8") for entry in custody],
            role="custody",
        )
        key = vault.key.public()
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "export": export_id,
            "report": report.id,
            "exported_at": exported_at,
            "exported_by": analyst,
            "signer": key.to_line(),
            "signer_fingerprint": key.fingerprint(),
            "audit_head": head,
            "custody_entries": len(custody),
            "files": listed,
            "not_cleaned": not_cleaned,
        }
        signed = sign_manifest(manifest, vault.key.sign, key.verify)
        info = zipfile.ZipInfo(MANIFEST, date_time=_zip_time(exported_at))
        info.external_attr = 0o600 << 16
        archive.writestr(info, signed)
    return len(report.files), len(not_cleaned)


def safe_name(name: str) -> str:
    """A reporter's file name made harmless as a zip member: ASCII letters, digits, dots,
    dashes and underscores, no folder, no leading dot, at most 80 characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = _SAFE.sub("_", base).strip("._") or "attachment"
    if len(cleaned) > 80:
        stem, dot, suffix = cleaned.rpartition(".")
        cleaned = (stem[: 79 - len(suffix)] + dot + suffix) if dot and len(suffix) < 12 else ""
        cleaned = cleaned or base[:80]
        cleaned = _SAFE.sub("_", cleaned).strip("._")[:80] or "attachment"
    return cleaned


# Extensions a double-click opens in a viewer that runs nothing the file says (pictures,
# sounds, videos, plain text), by the sniffed kind's suffix (safeview.sniff); a reporter's own
# spelling of the same kind is kept.
_PASSIVE_SUFFIXES = {
    ".jpg": (".jpg", ".jpeg"),
    ".png": (".png",),
    ".gif": (".gif",),
    ".webp": (".webp",),
    ".bmp": (".bmp",),
    ".tiff": (".tiff", ".tif"),
    ".heic": (".heic", ".heif"),
    ".avif": (".avif",),
    ".mp4": (".mp4", ".m4v"),
    ".mov": (".mov",),
    ".m4a": (".m4a",),
    ".avi": (".avi",),
    ".wav": (".wav",),
    ".webm": (".webm", ".mkv"),
    ".wmv": (".wmv",),
    ".ogg": (".ogg", ".oga", ".ogv", ".opus"),
    ".flac": (".flac",),
    ".mp3": (".mp3",),
    ".aiff": (".aiff", ".aif"),
    ".txt": (".txt",),
}
NEUTRAL_SUFFIX = ".bin"


def evidence_name(name: str, kind: FileKind) -> str:
    """The name a reporter's file gets in the zip: :func:`safe_name`, ending in an extension
    that opens it passively.  A picture, sound, video or plain text keeps its extension (or
    gets the one of what its bytes are); anything else, HTML and SVG first (a browser runs
    their scripts from a local file), documents, archives and programs, gets ``.bin`` added:
    ``x.html`` → ``x.html.bin``."""
    base = safe_name(name)
    spellings = _PASSIVE_SUFFIXES.get(kind.suffix)
    if spellings is None:
        return base + NEUTRAL_SUFFIX
    if PurePosixPath(base).suffix.lower() in spellings:
        return base
    return base + kind.suffix


def _zip_time(at: str) -> tuple[int, int, int, int, int, int]:
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z", at)
    if match is None:
        return (1980, 1, 1, 0, 0, 0)
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    return (max(year, 1980), month, day, hour, minute, second)


def _blob_chunks(vault: Vault, attachment: Attachment) -> Iterator[bytes]:
    with vault.blobs.open(attachment.blob) as envelope:
        while chunk := envelope.read(_COPY):
            yield chunk


def _report_data(vault: Vault, report: Report, files: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": report.id,
        "day": report.day,
        "received": report.received,
        "category": report.category,
        "danger": report.danger,
        "description": report.description,
        "links": list(report.links),
        "platform": report.platform,
        "seen_on": report.seen_on,
        "identity": (
            {
                "name": report.identity.name,
                "phone": report.identity.phone,
                "email": report.identity.email,
            }
            if report.identity
            else None
        ),
        "status": report.status,
        "files": files,
        "conversation": [
            {
                "from": entry.kind,
                "day": entry.day,
                "text": entry.text,
                "attachments": list(entry.attachments),
                "sent": entry.sent,
            }
            for entry in report.conversation
        ],
    }
    data["case"] = _case_data(vault, report.id)
    return data


def _case_data(vault: Vault, report_id: str) -> dict[str, Any] | None:
    """Status, reason, assignee and tags from the case-work tables, when the vault has them."""
    found = cases.case(vault, report_id)
    if found is None:
        return None
    return {
        "status": found.status,
        "close_reason": found.close_reason,
        "closed_on": found.closed_on,
        "assignee": found.assignee,
        "tags": list(found.tags),
    }


_ENVIRONMENT = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True),
    keep_trailing_newline=True,
)


def _render(**context: Any) -> str:
    return _ENVIRONMENT.get_template("evidence.html").render(**context)


_README = """Blagh evidence export
=====================

This archive holds one report received through Blagh, exported from an analyst's workstation.

  report.html / report.json   the report, its conversation, its files and its case
  custody.jsonl               the chain of custody: who imported, viewed, changed and exported
                              it, and when (UTC), from the workstation's hash-chained audit log
  envelopes/                  each attachment as the server sealed it (encrypted)
  files/                      each attachment decrypted, exactly as the reporter sent it: the
                              files may be hostile; open them only in an isolated viewer.
                              Only pictures, sounds, videos and plain text keep an extension;
                              anything else (HTML, SVG, documents…) ends in .bin, so that
                              opening it runs nothing: its original name is in the manifest
  cleaned/                    copies with their metadata removed by mat2, where possible
  manifest.signed             the size and SHA-256 of every other file, signed (Ed25519) by
                              the analyst who exported the archive

Check it with:   blagh verify-evidence THIS.zip [--analyst-key LINE]
and compare the signer's fingerprint it prints with the analyst's, by a separate channel.

By hand: manifest.signed is "BLAGHMAN", a version byte (1), the signer's Ed25519 public key
(32 bytes), the signature (64 bytes), then the manifest as canonical JSON; the signature covers
"blagh-manifest-v1" + a zero byte + the public key + the JSON.  Every other member is listed in
the manifest with its SHA-256 (sha256sum) and size; the members are stored uncompressed.
"""


# --- verifying ---------------------------------------------------------------------------------


def verify(path: Path, trusted: Sequence[AnalystPublicKey] = ()) -> Verified:
    """Check an evidence zip offline: signature, member list, every size and SHA-256.

    Without ``trusted`` keys the signature is checked against the key the manifest names (the
    caller must then compare its fingerprint with the analyst's); with them, the signer must be
    one of them.  Raises :class:`EvidenceError` saying what failed.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        signed = _bundle_manifest(path)
        if signed is not None:
            found = unverified_format(signed)
            name = kind_name(found) if found else "a bundle"
            raise EvidenceError(
                f"{path} is {name}, not an evidence export: a bundle is imported, not verified"
            ) from None
        raise EvidenceError(f"{path} is not a readable zip file ({error})") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise EvidenceError("the archive names a member twice")
        for info in infos:
            _check_member_name(info)
        if MANIFEST not in names:
            raise EvidenceError(f"the archive has no {MANIFEST}: it is not a Blagh evidence export")
        manifest_info = archive.getinfo(MANIFEST)
        if manifest_info.file_size > MAX_MANIFEST:
            raise EvidenceError("the manifest is too large")
        signed = _read(archive, MANIFEST)
        signer = _signer(signed)
        keys = [key.verify for key in trusted] if trusted else [signer]
        try:
            verified = verify_manifest(signed, keys)
        except BadSignature:
            if trusted and signer not in keys:
                raise EvidenceError(
                    "the archive is signed by another key than the one given (--analyst-key)"
                ) from None
            raise EvidenceError(
                "the manifest's signature is not valid: the manifest was changed after signing"
            ) from None
        manifest = verified.manifest
        signer_key = _signer_key(manifest, verified.signer)
        listed = manifest.get("files")
        if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
            raise EvidenceError("the manifest lists no files")
        expected = {str(entry.get("path")): entry for entry in listed}
        if len(expected) != len(listed):
            # Two entries for one member: which size and hash would hold?  An exporter never
            # writes this; whoever signed it did so on purpose.
            raise EvidenceError("the manifest lists a file twice")
        present = set(names) - {MANIFEST}
        missing = sorted(set(expected) - present)
        extra = sorted(present - set(expected))
        if missing:
            raise EvidenceError(f"a file listed in the manifest is missing: {missing[0]}")
        if extra:
            raise EvidenceError(f"the archive holds a file the manifest does not list: {extra[0]}")
        for member, entry in expected.items():
            _check_member(archive, member, entry)
    return Verified(manifest, signer_key, len(expected))


def _check_member_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts)
        or ":" in parts[0]
        or info.is_dir()
        or (info.external_attr >> 16) & 0o170000 not in (0, 0o100000)
    ):
        raise EvidenceError(f"the archive holds a member with an unsafe name or type: {name!r}")


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise EvidenceError(f"{name} is damaged in the archive ({error})") from None


def _bundle_manifest(path: Path) -> bytes | None:
    """The first member of ``path`` if it is a bundle (blagh/bundles.py), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        first = TarScanner(fd, os.fstat(fd).st_size).next_member()
        if first is None or first.name != MANIFEST_MEMBER or first.size > 1024 * 1024:
            return None
        data: bytes = os.pread(fd, first.size, first.offset)
        return data
    except (TarRefused, OSError):
        return None
    finally:
        os.close(fd)


def _signer(signed: bytes) -> bytes:
    if len(signed) < HEADER_BYTES or not signed.startswith(MAGIC):
        raise EvidenceError(f"{MANIFEST} is not a signed Blagh manifest")
    start = len(MAGIC) + 1
    return signed[start : start + KEY_BYTES]


def _signer_key(manifest: dict[str, Any], signer: bytes) -> AnalystPublicKey:
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise EvidenceError("the manifest is not a Blagh evidence manifest of a known version")
    try:
        key = AnalystPublicKey.from_line(str(manifest.get("signer", "")))
    except ValueError:
        raise EvidenceError("the manifest does not name its signer's key") from None
    if key.verify != signer:
        raise EvidenceError("the manifest names another signer than the key that signed it")
    return key


def _check_member(archive: zipfile.ZipFile, name: str, entry: dict[str, Any]) -> None:
    digest, size = Sha256(), 0
    try:
        with archive.open(name) as member:
            while chunk := member.read(_COPY):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise EvidenceError(f"{name} is damaged in the archive ({error})") from None
    if size != entry.get("size") or digest.hexdigest() != entry.get("sha256"):
        raise EvidenceError(f"{name} does not match its SHA-256 in the manifest: it was changed")


# --- for the app -------------------------------------------------------------------------------


@contextlib.contextmanager
def temporary_export(
    vault: Vault, report_id: str, name: str, *, analyst: str | None = None
) -> Iterator[Exported]:
    """An export in a private temporary folder (memory-backed /dev/shm when there is one),
    removed on leaving: for the app, which sends it and keeps nothing."""
    folder = Path(tempfile.mkdtemp(prefix="blagh-export-", dir=memory_folder()))
    try:
        yield export_case(vault, report_id, folder / name, analyst=analyst)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
