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
