"""What an attachment is, as hash lists know it: SHA-256, MD5 and PDQ, computed in the sandbox.

Hash lists (of known abuse or terrorist material) name files by SHA-256 or MD5, and images by
PDQ, which survives re-encoding, resizing and light cropping.  All three are computed for every
attachment when it is imported (:func:`fingerprint`), in one sandboxed run
(:mod:`journalist_interface.sandbox`): a small program run by the system's Python reads the
file, hashes its bytes, and for images and videos starts ffmpeg (in the same sandbox) to decode
it to uncompressed RGB frames (PPM: a one-line header and the pixels), at their own size up to
:data:`pdq.FRAME_SIDE` pixels a side (larger ones scaled down to fit, keeping their shape; PDQ
reduces every image to 64 × 64 anyway, so a hash of an image of up to that size is the one
Meta's reference gives for the file): one for an image, one every :data:`VIDEO_STEP` seconds
for a video, :data:`MAX_FRAMES` at most.  Only those frames leave the sandbox, their headers
checked strictly; the PDQ arithmetic is done on them here (:func:`pdq.hash_rgb`): a frame of
numbers cannot exploit anything.

The decoder is held like a preview's (``-max_pixels`` and the memory cap of the preview
budget, :func:`safeview.decoder_memory`), with a time limit; a file that cannot be decoded
still has its SHA-256 and MD5, and no PDQ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from journalist_interface import pdq, sandbox
from journalist_interface.safeview import (
    PREVIEW_MEGAPIXELS,
    FileKind,
    decoder_memory,
    kind_of,
)
from journalist_interface.sandbox import SandboxError
from journalist_interface.vault import Attachment, Vault

MAX_FRAMES = 16
VIDEO_STEP = 2
"""A video is sampled one frame every VIDEO_STEP seconds, MAX_FRAMES frames at most."""
TIMEOUT = 60.0
_FRAME_BYTES = pdq.FRAME_SIDE * pdq.FRAME_SIDE * 3
_PPM = re.compile(rb"P6\n([1-9][0-9]{0,4}) ([1-9][0-9]{0,4})\n255\n")

# Run by /usr/bin/python3 -I -S inside the sandbox: stdlib only.  Prints one JSON line (the
# hashes and ffmpeg's exit status) and then ffmpeg's raw frames.
_PROGRAM = r"""
import hashlib, json, subprocess, sys
path, ffmpeg = sys.argv[1], json.loads(sys.argv[2])
sha, md5 = hashlib.sha256(), hashlib.md5()
with open(path, "rb") as file:
    while chunk := file.read(1 << 20):
        sha.update(chunk)
        md5.update(chunk)
frames, status = b"", None
if ffmpeg:
    done = subprocess.run(ffmpeg, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    frames, status = done.stdout, done.returncode
out = {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "status": status}
sys.stdout.buffer.write(json.dumps(out).encode() + b"\n" + frames)
"""


@dataclass(frozen=True)
class Fingerprint:
    """An attachment's hashes; ``pdq`` empty for what is not an image or video, or could not
    be decoded (``decoded`` False then)."""

    sha256: str
    md5: str
    pdq: tuple[pdq.PdqHash, ...]
    family: str
    decoded: bool


def _ffmpeg(family: str, demuxer: str | None, inside: str, max_pixels: int) -> list[str]:
    if family == "image" and demuxer is not None:
        source, sampling, frames = ["-f", demuxer, "-i", inside], "", "1"
    elif family == "video":
        source, sampling, frames = ["-i", inside], f"fps=1/{VIDEO_STEP},", str(MAX_FRAMES)
    else:
        return []
    side = pdq.FRAME_SIDE
    return [
        "/usr/bin/ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-threads", "1", "-filter_threads", "1", "-protocol_whitelist", "file",
        "-max_pixels", str(max_pixels + max_pixels // 4),
        *source,
        "-map", "0:v:0", "-map_metadata", "-1", "-an", "-sn", "-dn",
        "-frames:v", frames,
        "-vf", f"{sampling}scale='min({side},iw)':'min({side},ih)'"
        ":force_original_aspect_ratio=decrease:flags=area,format=rgb24",
        "-c:v", "ppm", "-f", "image2pipe", "-",
    ]  # fmt: skip


def fingerprint(
    vault: Vault, attachment: Attachment, max_pixels: int = PREVIEW_MEGAPIXELS * 1_000_000
) -> Fingerprint:
    """Hash ``attachment`` in the sandbox.  Raises ``SandboxUnavailable`` when no sandbox
    can be made and :class:`SandboxError` when the run fails or its answer is malformed."""
    kind = kind_of(vault, attachment)
    return fingerprint_chunks(vault.attachment_chunks(attachment), kind, max_pixels)


def fingerprint_chunks(
    chunks: Iterable[bytes], kind: FileKind, max_pixels: int = PREVIEW_MEGAPIXELS * 1_000_000
) -> Fingerprint:
    """:func:`fingerprint` of a file given as ``chunks``, of the sniffed ``kind``."""
    with sandbox.workspace(chunks, kind.suffix) as path:
        inside = f"{sandbox.INSIDE}/{path.name}"
        ffmpeg = _ffmpeg(kind.family, kind.demuxer, inside, max_pixels)
        command = ["/usr/bin/python3", "-I", "-S", "-c", _PROGRAM, inside, json.dumps(ffmpeg)]
        done = sandbox.run(
            command,
            path.parent,
            timeout=TIMEOUT,
            max_output=4096 + MAX_FRAMES * (_FRAME_BYTES + 64),
            memory=decoder_memory(max_pixels),
        )
    line, _, frames = done.stdout.partition(b"\n")
    try:
        answer = json.loads(line)
        sha256, md5, status = answer["sha256"], answer["md5"], answer["status"]
    except (ValueError, TypeError, KeyError):
        raise SandboxError("the file could not be hashed") from None
    if not (isinstance(sha256, str) and pdq.is_pdq(sha256)):
        raise SandboxError("the file could not be hashed")
    if not (isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5)):
        raise SandboxError("the file could not be hashed")
    hashes = tuple(pdq.hash_rgb(*frame) for frame in _frames(frames)) if status == 0 else ()
    return Fingerprint(sha256, md5, hashes, kind.family, bool(hashes))


def _frames(data: bytes) -> list[tuple[bytes, int, int]]:
    """The PPM frames ffmpeg wrote (pixels, width, height); none at all if any is malformed."""
    found: list[tuple[bytes, int, int]] = []
    at = 0
    while at < len(data) and len(found) < MAX_FRAMES:
        header = _PPM.match(data, at)
        if header is None:
            return []
        width, height = int(header[1]), int(header[2])
        if width > pdq.FRAME_SIDE or height > pdq.FRAME_SIDE:
            return []
        start = header.end()
        end = start + width * height * 3
        if end > len(data):
            return []
        found.append((data[start:end], width, height))
        at = end
    return found
