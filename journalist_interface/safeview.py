"""Safe viewing: what an attachment really is, and images re-encoded before an analyst sees them.

Analysts look at what reporters send all day, and some of it is traumatic; all of it is hostile.
So:

- the kind of a file is read from its first bytes here (:func:`sniff`, plain byte comparisons),
  never taken from the name or type the reporter's browser claimed;
- only raster images (JPEG, PNG, GIF, WebP, BMP, TIFF) are ever shown, and never as sent: ffmpeg
  decodes them **inside the sandbox** (:mod:`journalist_interface.sandbox`: no network, only
  that file visible) with the demuxer of the sniffed format forced and every protocol but
  ``file`` refused, and writes a fresh PNG (no metadata, no script, nothing but pixels);
- the PNG is blurred and greyscale by default (:data:`BLURRED`); the sharp, coloured version
  (:data:`REVEALED`) is made only when the analyst asks, for one image at a time (the views keep
  which one);
- videos, documents, SVG, HTML and everything else are never rendered: they are downloaded as
  ``application/octet-stream``, ``Content-Disposition: attachment``.

ffmpeg (Debian's package) was chosen over ImageMagick for the re-encoding: it is maintained by
Debian's security team, mat2 needs it for video anyway (one decoder stack, not two), and its
image demuxers can be named exactly, so a file cannot talk it into another format (playlists,
concat lists) that would reach for other files.

Re-encoded previews are kept in this process's memory only (a small LRU), never on disk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath

from journalist_interface import sandbox
from journalist_interface.sandbox import SandboxError
from journalist_interface.vault import Attachment, Vault

BLURRED = "blurred"
REVEALED = "revealed"
MODES = (BLURRED, REVEALED)

SNIFF_BYTES = 512
MAX_PREVIEW_OUTPUT = 32 * 1024 * 1024
PREVIEW_TIMEOUT = 60.0

# Each image is scaled down to fit a box (never up), then, by default, made grey and blurred
# hard enough that shapes remain and details do not.
_FILTERS = {
    BLURRED: "scale='min(640,iw)':'min(640,ih)':force_original_aspect_ratio=decrease,"
    "format=gray,gblur=sigma=18",
    REVEALED: "scale='min(1600,iw)':'min(1600,ih)':force_original_aspect_ratio=decrease,"
    "format=rgb24",
}

_CACHE_ENTRIES = 48


@dataclass(frozen=True)
class FileKind:
    """What a file is, from its first bytes: a MIME type, the suffix tools expect, a family
    (image, video, audio, document, archive, text, other), and the ffmpeg demuxer that reads it
    when it is an image we preview."""

    mime: str
    suffix: str
    family: str
    demuxer: str | None = None

    @property
    def previewable(self) -> bool:
        return self.demuxer is not None


UNKNOWN = FileKind("application/octet-stream", "", "other")

# Zip containers tell what they hold only inside: the claimed suffix picks among these.
_ZIP_KINDS = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".odg": "application/vnd.oasis.opendocument.graphics",
    ".epub": "application/epub+zip",
}
# Formats with no magic number: only their claimed suffix says what mat2 should try.
_TEXT_KINDS = {
    ".txt": ("text/plain", "text"),
    ".html": ("text/html", "text"),
    ".htm": ("text/html", "text"),
    ".xhtml": ("application/xhtml+xml", "text"),
    ".css": ("text/css", "text"),
    ".svg": ("image/svg+xml", "document"),
    ".torrent": ("application/x-bittorrent", "other"),
}


def sniff(head: bytes, claimed_name: str = "") -> FileKind:
    """The kind of a file from its first :data:`SNIFF_BYTES` bytes (and, for containers and
    text, the suffix of the name the reporter claimed).  Never runs a parser."""
    claimed = PurePosixPath(claimed_name.replace("\\", "/")).suffix.lower()
    if head.startswith(b"\xff\xd8\xff"):
        return FileKind("image/jpeg", ".jpg", "image", "jpeg_pipe")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FileKind("image/png", ".png", "image", "png_pipe")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return FileKind("image/gif", ".gif", "image", "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FileKind("image/webp", ".webp", "image", "webp_pipe")
    if head[:2] == b"BM" and len(head) >= 26 and head[6:10] == b"\0\0\0\0":
        return FileKind("image/bmp", ".bmp", "image", "bmp_pipe")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return FileKind("image/tiff", ".tiff", "image", "tiff_pipe")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
            return FileKind("image/heic", ".heic", "image")
        if brand in (b"avif", b"avis"):
            return FileKind("image/avif", ".avif", "image")
        if brand == b"qt  ":
            return FileKind("video/quicktime", ".mov", "video")
        if brand.startswith(b"M4A"):
            return FileKind("audio/mp4", ".m4a", "audio")
        return FileKind("video/mp4", ".mp4", "video")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return FileKind("video/x-msvideo", ".avi", "video")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return FileKind("audio/x-wav", ".wav", "audio")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return FileKind("video/webm", ".webm", "video")
    if head[:16] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c":
        return FileKind("video/x-ms-wmv", ".wmv", "video")
    if head[:4] == b"OggS":
        return FileKind("audio/ogg", ".ogg", "audio")
    if head[:4] == b"fLaC":
        return FileKind("audio/flac", ".flac", "audio")
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return FileKind("audio/mpeg", ".mp3", "audio")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return FileKind("audio/x-aiff", ".aiff", "audio")
    if head.startswith(b"%PDF-"):
        return FileKind("application/pdf", ".pdf", "document")
    if head[:4] == b"PK\x03\x04":
        if claimed in _ZIP_KINDS:
            return FileKind(_ZIP_KINDS[claimed], claimed, "document")
        return FileKind("application/zip", ".zip", "archive")
    if head[257:262] == b"ustar":
        return FileKind("application/x-tar", ".tar", "archive")
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return FileKind("application/x-ole-storage", "", "document")
    if claimed in _TEXT_KINDS and _looks_like_text(head):
        mime, family = _TEXT_KINDS[claimed]
        return FileKind(mime, claimed, family)
    return UNKNOWN


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3  # a character cut at the end of the sample
    return True


def head_of(vault: Vault, attachment: Attachment) -> bytes:
    """The first :data:`SNIFF_BYTES` bytes of an attachment (decrypting only what it needs)."""
    head = b""
    chunks = vault.attachment_chunks(attachment)
    try:
        for chunk in chunks:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return head[:SNIFF_BYTES]


def kind_of(vault: Vault, attachment: Attachment) -> FileKind:
    return sniff(head_of(vault, attachment), attachment.name)


class PreviewError(SandboxError):
    """The image could not be re-encoded: damaged, hostile, or a kind ffmpeg cannot decode."""


class Previews:
    """Re-encoded images of one app, with a small in-memory cache."""

    def __init__(self, entries: int = _CACHE_ENTRIES) -> None:
        self._entries = entries
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def image(self, vault: Vault, attachment: Attachment, mode: str = BLURRED) -> bytes:
        """A PNG of the attachment: blurred and greyscale, or (``REVEALED``) sharp in colour.

        Raises :class:`PreviewError` if the file is not an image we preview, or cannot be
        decoded; :class:`sandbox.SandboxUnavailable` when no sandbox can be made.
        """
        if mode not in MODES:
            raise ValueError("unknown preview mode")
        key = (attachment.blob, mode)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        png = render(vault, attachment, mode)
        with self._lock:
            self._cache[key] = png
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return png

    def forget(self, blobs: set[str] | None = None) -> None:
        """Drop cached previews (of ``blobs``, or all): after a purge, at log-out."""
        with self._lock:
            for key in list(self._cache):
                if blobs is None or key[0] in blobs:
                    del self._cache[key]


def render(vault: Vault, attachment: Attachment, mode: str) -> bytes:
    """Re-encode an attachment to PNG in the sandbox (no cache)."""
    kind = kind_of(vault, attachment)
    if kind.demuxer is None:
        raise PreviewError("this file is not an image that can be previewed")
    with sandbox.workspace(vault.attachment_chunks(attachment), kind.suffix) as path:
        inside = f"{sandbox.INSIDE}/{path.name}"
        command = [
            "/usr/bin/ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-threads",
            "1",
            "-protocol_whitelist",
            "file",
            "-f",
            kind.demuxer,
            "-i",
            inside,
            "-map_metadata",
            "-1",
            "-frames:v",
            "1",
            "-vf",
            _FILTERS[mode],
            "-c:v",
            "png",
            "-f",
            "image2pipe",
            "-",
        ]
        done = sandbox.run(
            command, path.parent, timeout=PREVIEW_TIMEOUT, max_output=MAX_PREVIEW_OUTPUT
        )
    if done.status != 0 or not done.stdout.startswith(b"\x89PNG\r\n\x1a\n"):
        raise PreviewError("this image could not be decoded: it may be damaged or hostile")
    return done.stdout
