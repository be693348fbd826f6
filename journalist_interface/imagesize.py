"""An image's size, read from its header alone: this program runs inside the sandbox.

A PNG of 16,000 × 16,000 zero pixels compresses to 1 MiB; decoding it takes 1 GiB (2 GiB at
16 bits per channel).  So before a preview is made (:mod:`journalist_interface.safeview`), the
size the file announces is read here, and an image past the pixel budget is never decoded.

Only what each format puts first is read: PNG's IHDR, JPEG's first start-of-frame segment,
GIF's screen and first image descriptor, WebP's VP8/VP8L/VP8X header, BMP's DIB header, and
TIFF's first directory (with its sub-images: a DNG keeps the full picture there).  Nothing is
decompressed.  The header may lie, so the decoder is held to the budget and a memory cap
anyway; this only makes the usual refusal quick and clear.

It is hostile input all the same, so this runs in the sandbox, as
``/usr/bin/python3 -I -S -c SOURCE FORMAT FILE``: this module's own source, with the standard
library only (the workstation's code is not visible in there).  It prints one JSON object:
``{"width": W, "height": H, "deep": true}`` (``deep``: more than 8 bits per channel, which
doubles the memory a decoder needs), or ``{"error": "…"}``.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import BinaryIO, NamedTuple

FORMATS = ("jpeg", "png", "gif", "webp", "bmp", "tiff")
_MAX_SIDE = 1 << 31
_MAX_SEGMENTS = 100_000
_MAX_TIFF_ENTRIES = 4096
_MAX_SUBIMAGES = 16
_SCAN = 64 * 1024
# Start-of-frame markers: every one but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class Unreadable(ValueError):
    """The header is missing, truncated or impossible: the image cannot be decoded."""


class Size(NamedTuple):
    width: int
    height: int
    deep: bool


def size_of(file: BinaryIO, kind: str) -> Size:
    """The size ``file`` announces, read as ``kind`` (one of :data:`FORMATS`)."""
    readers = {
        "jpeg": _jpeg,
        "png": _png,
        "gif": _gif,
        "webp": _webp,
        "bmp": _bmp,
        "tiff": _tiff,
    }
    if kind not in readers:
        raise Unreadable("not a format whose size is read here")
    found = readers[kind](file)
    if not (0 < found.width < _MAX_SIDE and 0 < found.height < _MAX_SIDE):
        raise Unreadable("the header gives an impossible size")
    return found


def _exactly(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise Unreadable("the file ends inside its header")
    return data


def _png(file: BinaryIO) -> Size:
    head = _exactly(file, 8 + 8 + 13)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise Unreadable("a PNG starts with its IHDR chunk")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
        raise Unreadable("unknown PNG bit depth or colour type")
    return Size(width, height, depth > 8)


def _jpeg(file: BinaryIO) -> Size:
    if _exactly(file, 2) != b"\xff\xd8":
        raise Unreadable("a JPEG starts with SOI")
    for _ in range(_MAX_SEGMENTS):
        marker = _next_marker(file)
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):
            raise Unreadable("the image data starts before any frame header")
        (length,) = struct.unpack(">H", _exactly(file, 2))
        if length < 2:
            raise Unreadable("a JPEG segment shorter than its own length")
        if marker in _JPEG_FRAMES:
            precision, height, width = struct.unpack(">BHH", _exactly(file, 5))
            return Size(width, height, precision > 8)
        file.seek(length - 2, 1)
    raise Unreadable("too many JPEG segments")


def _next_marker(file: BinaryIO) -> int:
    """The next marker's code, skipping fill bytes (and stray bytes, as decoders do)."""
    while True:
        chunk = file.read(_SCAN)
        if not chunk:
            raise Unreadable("the file ends before a frame header")
        start = chunk.find(b"\xff")
        if start < 0:
            continue
        file.seek(start - len(chunk) + 1, 1)
        while True:
            code = _exactly(file, 1)[0]
            if code != 0xFF:
                break
        if code != 0x00:  # FF 00 is an escaped byte in scan data, not a marker
            return code


def _gif(file: BinaryIO) -> Size:
    head = _exactly(file, 13)
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        raise Unreadable("not a GIF")
    width, height, flags = struct.unpack("<HHB", head[6:11])
    if flags & 0x80:
        file.seek(3 << ((flags & 7) + 1), 1)
    for _ in range(_MAX_SEGMENTS):
        block = _exactly(file, 1)[0]
        if block == 0x2C:  # the first image: its frame must fit the decoder's canvas too
            left, top, frame_width, frame_height = struct.unpack("<HHHH", _exactly(file, 8))
            return Size(max(width, left + frame_width), max(height, top + frame_height), False)
        if block != 0x21:
            raise Unreadable("no image in this GIF")
        _exactly(file, 1)  # the extension's label, then its sub-blocks
        while (count := _exactly(file, 1)[0]) != 0:
            file.seek(count, 1)
    raise Unreadable("too many GIF extensions")


def _webp(file: BinaryIO) -> Size:
    head = _exactly(file, 12 + 8 + 10)
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise Unreadable("not a WebP")
    chunk, data = head[12:16], head[20:30]
    if chunk == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise Unreadable("a VP8 frame without its start code")
        width, height = struct.unpack("<HH", data[6:10])
        return Size(width & 0x3FFF, height & 0x3FFF, False)
    if chunk == b"VP8L":
        if data[0] != 0x2F:
            raise Unreadable("a lossless WebP without its signature")
        (bits,) = struct.unpack("<I", data[1:5])
        return Size((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, False)
    if chunk == b"VP8X":
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return Size(width, height, False)
    raise Unreadable("unknown WebP chunk")


def _bmp(file: BinaryIO) -> Size:
    head = _exactly(file, 14 + 4)
    if head[:2] != b"BM":
        raise Unreadable("not a BMP")
    (header,) = struct.unpack("<I", head[14:18])
    if header == 12:  # OS/2 1.x: 16-bit sides
        width, height, _planes, bits = struct.unpack("<HHHH", _exactly(file, 8))
    elif 16 <= header <= 1024:
        width, height, _planes, bits = struct.unpack("<iiHH", _exactly(file, 12))
    else:
        raise Unreadable("unknown BMP header")
    return Size(width, abs(height), bits > 32)


def _tiff(file: BinaryIO) -> Size:
    head = _exactly(file, 8)
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(head[:4])
    if order is None:
        raise Unreadable("not a TIFF")
    (first,) = struct.unpack(order + "I", head[4:8])
    main, subimages = _tiff_directory(file, order, first)
    found = [main]
    for offset in subimages[:_MAX_SUBIMAGES]:
        found.append(_tiff_directory(file, order, offset)[0])
    return Size(
        max(s.width for s in found), max(s.height for s in found), any(s.deep for s in found)
    )


def _tiff_directory(file: BinaryIO, order: str, offset: int) -> tuple[Size, list[int]]:
    """The size one image file directory gives, and the offsets of its sub-images."""
    file.seek(offset)
    (count,) = struct.unpack(order + "H", _exactly(file, 2))
    if count > _MAX_TIFF_ENTRIES:
        raise Unreadable("a TIFF directory with too many entries")
    entries = _exactly(file, 12 * count)
    values: dict[int, list[int]] = {}
    for start in range(0, len(entries), 12):
        tag, kind, number = struct.unpack(order + "HHI", entries[start : start + 8])
        if tag not in (256, 257, 258, 330) or kind not in (3, 4, 13) or number == 0:
            continue
        width = 2 if kind == 3 else 4
        wanted = min(number, _MAX_SUBIMAGES if tag == 330 else 1)
        field = entries[start + 8 : start + 12]
        if width * number > 4:  # the values are elsewhere; the field holds their offset
            (where,) = struct.unpack(order + "I", field)
            back = file.tell()
            file.seek(where)
            field = _exactly(file, width * wanted)
            file.seek(back)
        code = order + ("H" if width == 2 else "I") * wanted
        values[tag] = list(struct.unpack(code, field[: width * wanted]))
    if 256 not in values or 257 not in values:
        raise Unreadable("a TIFF directory without the image's size")
    bits = values.get(258, [1])[0]
    return Size(values[256][0], values[257][0], bits > 8), values.get(330, [])


def main(argv: list[str]) -> int:
    """``FORMAT FILE``: print the JSON answer (see the module's documentation)."""
    try:
        with open(argv[2], "rb") as file:
            found = size_of(file, argv[1])
    except (Unreadable, OSError, struct.error, OverflowError, ValueError) as error:
        print(json.dumps({"error": str(error)[:200]}))
        return 0
    print(json.dumps({"width": found.width, "height": found.height, "deep": found.deep}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
