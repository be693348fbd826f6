"""What metadata an attachment carries, and a copy cleaned of it, with mat2 in the sandbox.

A photo's EXIF may hold the GPS position where it was taken and the phone that took it; an
office document its author's name.  That may matter to an investigation, and it may endanger
the reporter if the file leaves the workstation as it is.  So each attachment's page shows what
mat2 finds (:func:`inspect`), sorted into location, device, author, time and other, and a clean
copy (:func:`clean_copy`) is what goes into an evidence export beside the original.

mat2 (Debian's package, its Python library ``libmat2``) runs whole inside the sandbox
(:mod:`journalist_interface.sandbox`), with its own bubblewrap wrapping turned off since it is
already in one: it parses the file with GdkPixbuf, poppler, mutagen, exiftool or ffmpeg, any of
which may meet a hostile file.  It is told the file's kind by the suffix we give it, from the
sniffed bytes (:func:`journalist_interface.safeview.sniff`), never from the claimed name alone.

Failure is never a pass: mat2 refusing the file, crashing, not supporting its kind, or leaving
metadata in the cleaned copy (which is checked again, by a second run of mat2 on the copy) all
raise :class:`MetadataError`, and no "clean" copy is given.

Some formats cannot be played without a few fields: an MP4 or QuickTime file always says how
it is encoded (``HandlerType``, ``CompressorID``, track numbers, time scales...), and mat2
leaves them, or writes standard values in.  Refusing those would refuse every ordinary video.
So what mat2 leaves is judged against :data:`HARMLESS_TECHNICAL` (documented in
docs/evidence-and-audit.md, "Metadata"): a field on that list, whose value looks like a technical
value (:data:`_TECHNICAL_VALUE`), is accepted; anything else, and always anything that names a
place, a device, a person or a day (GPS, make, model, owner, author, dates, encoder names), is
still refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from journalist_interface import sandbox
from journalist_interface.safeview import FileKind, kind_of
from journalist_interface.sandbox import SandboxError
from journalist_interface.vault import Attachment, Vault

MAT2_TIMEOUT = 120.0
MAX_ITEMS = 500
MAX_VALUE = 500

CATEGORIES = ("location", "device", "author", "time", "software", "other")

# The program mat2's library runs inside the sandbox.  Its answer is one JSON object on
# standard output; what it says is still treated as untrusted (the sandbox may be compromised).
_PROGRAM = r"""
import json, sys
try:
    from libmat2 import parser_factory
except Exception as error:
    print(json.dumps({"ok": False, "error": "mat2 is not installed: %s" % error}))
    raise SystemExit(0)

def meta(path):
    parser, mime = parser_factory.get_parser(path)
    if parser is None:
        return None, mime
    parser.sandbox = False
    return parser, mime

mode, path = sys.argv[1], sys.argv[2]
try:
    parser, mime = meta(path)
    if parser is None:
        print(json.dumps({"ok": False, "unsupported": True, "mime": mime}))
    elif mode == "show":
        print(json.dumps({"ok": True, "mime": mime, "meta": parser.get_meta()}, default=str))
    else:
        if not parser.remove_all():
            print(json.dumps({"ok": False, "error": "mat2 could not clean the file"}))
            raise SystemExit(0)
        cleaned, _ = meta(parser.output_filename)
        left = cleaned.get_meta() if cleaned is not None else {"?": "unreadable"}
        print(json.dumps({"ok": True, "mime": mime, "output": parser.output_filename,
                          "left": left}, default=str))
except SystemExit:
    raise
except Exception as error:
    print(json.dumps({"ok": False, "error": "%s: %s" % (type(error).__name__, error)}))
"""


class MetadataError(SandboxError):
    """mat2 could not read or clean the file; no metadata shown, no clean copy made."""


class Unsupported(MetadataError):
    """mat2 does not know this kind of file: its metadata cannot be checked or removed."""


@dataclass(frozen=True)
class Field:
    """One piece of metadata: where it is (a member of an archive, or ""), its name, value and
    category."""

    member: str
    name: str
    value: str
    category: str


@dataclass(frozen=True)
class Findings:
    """What mat2 found in one attachment."""

    kind: FileKind
    fields: tuple[Field, ...]

    @property
    def clean(self) -> bool:
        return not self.fields

    def by_category(self) -> dict[str, list[Field]]:
        grouped: dict[str, list[Field]] = {category: [] for category in CATEGORIES}
        for found in self.fields:
            grouped[found.category].append(found)
        return {category: found for category, found in grouped.items() if found}

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The categories that may identify someone or somewhere (shown first, in red)."""
        return tuple(c for c in ("location", "device", "author") if c in self.by_category())


@dataclass(frozen=True)
class CleanCopy:
    """A copy mat2 cleaned: its bytes, the file name to give it, and its type."""

    data: bytes
    name: str
    mime: str


_RULES = (
    ("location", re.compile(r"gps|latitude|longitude|location|altitude|city|country|place", re.I)),
    (
        "device",
        re.compile(r"\bmake\b|model|serial|lens|camera|device|hostcomputer|owner ?name", re.I),
    ),
    (
        "author",
        re.compile(r"author|artist|creator|copyright|owner|lastmodifiedby|by-?line|initial", re.I),
    ),
    ("time", re.compile(r"date|time|created|modified", re.I)),
    ("software", re.compile(r"software|producer|application|generator|encoder|tool|lavc", re.I)),
)


_QUICKTIME = frozenset(
    {
        # the file's brand and the boxes' versions
        "MajorBrand", "MinorVersion", "CompatibleBrands", "MovieHeaderVersion",
        "TrackHeaderVersion", "MediaHeaderVersion", "MediaDataOffset", "MediaDataSize",
        # how each track is encoded and played
        "HandlerType", "HandlerDescription", "HandlerVendorID", "CompressorID", "GraphicsMode",
        "OpColor", "TrackID", "NextTrackID", "TrackLayer", "TrackVolume", "PreferredRate",
        "PreferredVolume", "Balance", "MatrixStructure", "Rotation", "PixelAspectRatio",
        "TimeScale", "MediaTimeScale", "Duration", "TrackDuration", "MediaDuration",
        "PreviewTime", "PreviewDuration", "PosterTime", "SelectionTime", "SelectionDuration",
        "CurrentTime", "MediaLanguageCode", "AverageBitrate", "MaxBitrate", "BufferSize",
        "AvgBitrate", "VideoFrameRate", "ImageWidth", "ImageHeight", "SourceImageWidth",
        "SourceImageHeight", "ImageSize", "Megapixels", "XResolution", "YResolution",
        "BitDepth", "ColorRepresentation", "ColorPrimaries", "TransferCharacteristics",
        "MatrixCoefficients", "VideoFullRangeFlag", "AudioFormat", "AudioChannels",
        "AudioBitsPerSample", "AudioSampleRate",
    }
)  # fmt: skip

HARMLESS_TECHNICAL: dict[str, frozenset[str]] = {
    "video/mp4": _QUICKTIME,
    "video/quicktime": _QUICKTIME,
    "audio/mp4": _QUICKTIME,
}
"""Per file type, the fields mat2 may leave in a clean copy: how the file is encoded and
played, never who, where, when or with what (docs/evidence-and-audit.md, "Metadata")."""

_TECHNICAL_VALUE = re.compile(r"[\w .:/,'\"\[\]()+-]{0,64}", re.ASCII)
"""What such a field's value looks like (numbers, ratios, brand lists, handler names); a value
that does not is refused, whatever the field's name."""


def identifying_leftovers(left: dict[str, Any], mime: str) -> list[str]:
    """The names of the fields left in a cleaned copy that keep it from being clean: every
    field but the technical ones of :data:`HARMLESS_TECHNICAL` for its type."""
    allowed = HARMLESS_TECHNICAL.get(mime, frozenset())
    return [
        found.name
        for found in _fields(left)
        if found.member
        or found.name not in allowed
        or category_of(found.name) in ("location", "device", "author")
        or _TECHNICAL_VALUE.fullmatch(found.value) is None
    ]


def category_of(name: str) -> str:
    for category, rule in _RULES:
        if rule.search(name):
            return category
    return "other"


def inspect(vault: Vault, attachment: Attachment) -> Findings:
    """What metadata mat2 finds in the attachment (in the sandbox)."""
    kind = kind_of(vault, attachment)
    answer = _mat2(vault, attachment, kind, "show")
    meta = answer.get("meta")
    if not isinstance(meta, dict):
        raise MetadataError("mat2 gave no readable answer for this file")
    return Findings(kind, tuple(_fields(meta)))


def clean_copy(vault: Vault, attachment: Attachment) -> CleanCopy:
    """A copy of the attachment with its metadata removed by mat2, checked clean by a second
    reading.  Raises :class:`MetadataError` (:class:`Unsupported` for unknown kinds)."""
    kind = kind_of(vault, attachment)
    with sandbox.workspace(vault.attachment_chunks(attachment), kind.suffix) as path:
        answer = _run_mat2(path, kind, "clean")
        output = answer.get("output")
        expected = f"{sandbox.INSIDE}/{path.stem}.cleaned{path.suffix}"
        if output != expected:
            raise MetadataError("mat2 did not write the cleaned copy where it should")
        left = answer.get("left")
        if not isinstance(left, dict):
            raise MetadataError("mat2 could not read back the cleaned copy")
        if identifying_leftovers(left, kind.mime):
            raise MetadataError(
                "mat2 could not remove all the metadata of this file: no clean copy was made"
            )
        cleaned = path.parent / PurePosixPath(expected).name
        if cleaned.is_symlink() or not cleaned.is_file():
            raise MetadataError("mat2 did not write the cleaned copy")
        data = cleaned.read_bytes()
    return CleanCopy(data, clean_name(attachment.name, kind), kind.mime)


def clean_name(name: str, kind: FileKind) -> str:
    """``photo.jpg`` → ``photo.cleaned.jpg`` (the sniffed suffix wins over the claimed one)."""
    base = PurePosixPath(name.replace("\\", "/")).name or "attachment"
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    return f"{stem}.cleaned{kind.suffix}"


def _mat2(vault: Vault, attachment: Attachment, kind: FileKind, mode: str) -> dict[str, Any]:
    with sandbox.workspace(vault.attachment_chunks(attachment), kind.suffix) as path:
        return _run_mat2(path, kind, mode)


def _run_mat2(path: Any, kind: FileKind, mode: str) -> dict[str, Any]:
    if not kind.suffix:
        raise Unsupported(
            "mat2 cannot read this kind of file: its metadata cannot be checked or removed"
        )
    command = ["/usr/bin/python3", "-I", "-c", _PROGRAM, mode, f"{sandbox.INSIDE}/{path.name}"]
    done = sandbox.run(command, path.parent, timeout=MAT2_TIMEOUT, max_output=4 * 1024 * 1024)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        answer = None
    if done.status != 0 or not isinstance(answer, dict):
        raise MetadataError("mat2 failed on this file: it may be damaged or hostile")
    if answer.get("unsupported"):
        raise Unsupported(
            "mat2 cannot read this kind of file: its metadata cannot be checked or removed"
        )
    if answer.get("ok") is not True:
        error = str(answer.get("error", ""))[:200]
        raise MetadataError(f"mat2 failed on this file ({error})" if error else "mat2 failed")
    return answer


def _fields(meta: dict[str, Any], member: str = "", depth: int = 0) -> Iterator[Field]:
    count = 0
    for name, value in meta.items():
        if count >= MAX_ITEMS:
            return
        count += 1
        if isinstance(value, dict) and depth < 3:
            inner = f"{member}/{name}" if member else str(name)
            yield from _fields(value, inner[:MAX_VALUE], depth + 1)
            continue
        key = str(name)[:MAX_VALUE]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        yield Field(member, key, text[:MAX_VALUE], category_of(key))
