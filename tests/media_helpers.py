"""Real media files made on the spot (no binary fixture): a JPEG with GPS, device and author in
its EXIF, a PNG, and broken ones.

ffmpeg draws the picture and exiftool writes the EXIF, both from Debian's packages (APT_PACKAGES
in the Makefile).  They run outside the sandbox here: these files are ours, not a reporter's.
"""

from __future__ import annotations

import json
import subprocess
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
