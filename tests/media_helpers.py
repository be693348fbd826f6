"""Real media files made on the spot (no binary fixture): a JPEG with GPS, device and author in
its EXIF, a PNG, broken ones, and PNG bombs.

ffmpeg draws the picture and exiftool writes the EXIF, both from Debian's packages (APT_PACKAGES
in the Makefile).  They run outside the sandbox here: these files are ours, not a reporter's.
"""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

GPS_TAGS = {
    "GPSLatitude": "48.8566",
    "GPSLatitudeRef": "N",
    "GPSLongitude": "2.3522",
    "GPSLongitudeRef": "E",
    "Make": "Acme",
    "Model": "Phone 9",
    "Artist": "Jane Reporter",
}


def picture(path: Path, size: str = "320x240", pattern: str = "testsrc") -> bytes:
    """A colour test picture, in the format the suffix of ``path`` names."""
    source = f"{pattern}=size={size}"
    args = ["-f", "lavfi", "-i", source, "-frames:v", "1", str(path)]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)
    return path.read_bytes()


def gps_jpeg(folder: Path, name: str = "gps.jpg") -> bytes:
    """A JPEG whose EXIF says where it was taken (Paris), on what phone, and by whom."""
    path = folder / name
    picture(path)
    args = [f"-{tag}={value}" for tag, value in GPS_TAGS.items()]
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)
    return path.read_bytes()


def exif(folder: Path, data: bytes, suffix: str = ".jpg") -> dict[str, object]:
    """Every tag exiftool reads in ``data``."""
    path = folder / f"read-{len(list(folder.iterdir()))}{suffix}"
    path.write_bytes(data)
    out = subprocess.run(["exiftool", "-json", str(path)], check=True, capture_output=True)
    found: dict[str, object] = json.loads(out.stdout)[0]
    return found


def png_colour_type(data: bytes) -> int:
    """The colour type in a PNG's header: 0 greyscale, 2 RGB, 4 grey + alpha, 6 RGBA."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return data[25]


def png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int, depth: int = 8, colour: int = 6) -> bytes:
    """A valid PNG of ``width`` × ``height`` black pixels (colour type 6: RGBA; ``depth`` 8 or
    16 bits per channel), made in milliseconds: 16,000 × 16,000 RGBA is 1 MiB of file and
    1 GiB decoded (2 GiB at 16 bits).

    Deflate compresses a run of zeros about 1,000 to 1; one block of rows, flushed so that it
    depends on nothing before it, is repeated for the whole image; the zlib checksum of n zero
    bytes is computed directly (Adler-32: a stays 1, b is n).
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = 1 + width * channels * depth // 8  # a filter byte, then the pixels
    rows = max(1, min(height, (1 << 20) // row))
    while height % rows:
        rows -= 1
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes(row * rows)) + deflate.flush(zlib.Z_FULL_FLUSH)
    checksum = ((row * height) % 65521) << 16 | 1
    stream = b"\x78\xda" + block * (height // rows) + b"\x03\x00" + struct.pack(">I", checksum)
    return _png(width, height, depth, colour, stream)


def damaged_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG with a sound header and chunks but pixel data that is not deflate at all."""
    return _png(width, height, 8, 2, b"\x78\x9c" + b"\xde\xad\xbe\xef" * 64)


# --- photos as phones make them, and what is left after cleaning -----------------------------

PNG_TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"tIME")


def oriented_gps_jpeg(folder: Path) -> bytes:
    """:func:`gps_jpeg` turned on its side (EXIF orientation 6, "rotate 90 CW"), as phones
    store portrait photos."""
    path = folder / "oriented.jpg"
    path.write_bytes(gps_jpeg(folder))
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-Orientation#=6", str(path)], check=True
    )
    return path.read_bytes()


def png_with_text(folder: Path) -> bytes:
    """A PNG (drawn by ffmpeg) carrying a place, a device and an author in text chunks, an
    EXIF chunk and a time chunk, put in by hand after its header."""
    data = picture(folder / "text.png")
    gps = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x10\x00\x02\x00\x00\x00\x08\x00\x00\x00\x1a"
    extra = (
        _png_chunk(b"tEXt", b"Author\x00Jane Reporter")
        + _png_chunk(b"iTXt", b"Location\x00\x00\x00\x00\x0048.8566 N 2.3522 E")
        + _png_chunk(b"zTXt", b"Device\x00\x00" + zlib.compress(b"Acme Phone 9"))
        + _png_chunk(b"eXIf", gps + b"\x00\x00\x00\x00Phone 9\x00")
        + _png_chunk(b"tIME", struct.pack(">HBBBBB", 2026, 1, 15, 21, 30, 0))
    )
    end_of_header = 8 + 8 + 13 + 4
    return data[:end_of_header] + extra + data[end_of_header:]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk of a PNG, as (type, data), checking each CRC."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A JPEG's segments before its first scan, as (marker, payload), and the bytes from the
    first scan (SOS) to the end: the image data."""
    assert data.startswith(b"\xff\xd8")
    segments, at = [], 2
    while data[at + 1] != 0xDA:
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        segments.append((marker, data[at + 4 : at + 2 + length]))
        at += 2 + length
    return segments, data[at:]


def pixels(folder: Path, data: bytes, suffix: str) -> bytes:
    """The picture decoded by ffmpeg to raw RGB, orientation not applied."""
    path = folder / f"decode-{len(list(folder.iterdir()))}{suffix}"
    path.write_bytes(data)
    args = ["-noautorotate", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *args], check=True, capture_output=True
    )
    return out.stdout
