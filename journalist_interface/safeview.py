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

Hostile images are also built to exhaust the workstation: a 1 MiB PNG can announce 16,000 ×
16,000 pixels and take 1 GiB to decode (2 GiB at 16 bits per channel).  So (:class:`Previews`):

- the size each image announces is read from its header first, in the sandbox
  (:mod:`journalist_interface.imagesize`), and an image past the pixel budget
  (``WorkstationConfig.preview_megapixels``, 40 by default; 16 bits per channel count twice) is
  refused as too large to preview, without ever being decoded;
- ffmpeg decodes with ``-max_pixels`` (should the header lie) under an address-space cap sized
  for the budget (:func:`decoder_memory`: 740 MiB for 40 megapixels, against 4 GiB before);
- one image is decoded at a time per process; a few requests may wait their turn, briefly, and
  the others are told at once that previews are busy: a report full of images never takes every
  thread of the server, and other pages answer meanwhile.

Re-encoded previews, sizes and refusals are kept in this process's memory only (small LRUs),
never on disk.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from journalist_interface import imagesize, sandbox
from journalist_interface.imagesize import Size
from journalist_interface.sandbox import SandboxError, SandboxUnavailable
from journalist_interface.vault import Attachment, Vault

BLURRED = "blurred"
REVEALED = "revealed"
MODES = (BLURRED, REVEALED)

SNIFF_BYTES = 512
MAX_PREVIEW_OUTPUT = 32 * 1024 * 1024
PREVIEW_TIMEOUT = 60.0

PREVIEW_MEGAPIXELS = 40
"""The default pixel budget (``WorkstationConfig.preview_megapixels``)."""
DECODER_BASE = 320 * 1024 * 1024
DECODER_BYTES_PER_PIXEL = 11
PROBE_MEMORY = 64 * 1024 * 1024
PROBE_TIMEOUT = 20.0
QUEUE = 3
"""Preview requests that may wait for the decoder, beside the one decoding (views/files.py;
the server runs 8 threads: at least 4 stay free for other pages)."""
WAIT = 20.0
"""The longest a preview request waits for its turn before it is answered "busy"."""

# Each image is scaled down to fit a box (never up), then, by default, made grey and blurred
# hard enough that shapes remain and details do not.
_FILTERS = {
    BLURRED: "scale='min(640,iw)':'min(640,ih)':force_original_aspect_ratio=decrease,"
    "format=gray,gblur=sigma=18",
    REVEALED: "scale='min(1600,iw)':'min(1600,ih)':force_original_aspect_ratio=decrease,"
    "format=rgb24",
}

_CACHE_ENTRIES = 48
_CACHE_BYTES = 64 * 1024 * 1024
_KNOWN_ENTRIES = 4096


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
    """No preview of this file: it is not an image we preview, or it cannot be made now."""


class Undecodable(PreviewError):
    """The image could not be decoded: damaged, hostile, or more than the decoder may take."""


class TooLarge(PreviewError):
    """The image's header announces more pixels than the budget: it is never decoded."""

    def __init__(self, size: Size, max_pixels: int) -> None:
        super().__init__("this image is too large to preview")
        self.size = size
        self.max_pixels = max_pixels


class Busy(PreviewError):
    """Another preview is being made and the queue is full, or the wait was too long."""


def decoder_memory(max_pixels: int) -> int:
    """The address space ffmpeg may use to preview images of up to ``max_pixels``.

    ffmpeg maps about 280 MiB of libraries before it reads anything (measured on Debian 12's
    5.1); each pixel then costs up to 4 bytes decoded (8 at 16 bits per channel, counted
    twice against the budget), the compressed file is held whole, and a progressive JPEG keeps
    6 bytes of coefficients per pixel: 11 bytes per pixel of the budget covers the worst of
    these (measured at 40 megapixels: 450 MiB for a PNG or JPEG, 580 MiB for an uncompressed
    TIFF or BMP; a progressive 4:4:4 JPEG needs about 650 MiB by the decoder's arithmetic).
    """
    return DECODER_BASE + DECODER_BYTES_PER_PIXEL * max_pixels


def pixels_counted(size: Size) -> int:
    """What an image counts against the budget: its pixels, twice at 16 bits per channel."""
    return size.width * size.height * (2 if size.deep else 1)


@dataclass(frozen=True)
class _Refused:
    """What is remembered of an image without a preview: its size when it is too large, None
    when it could not be decoded.  (Not the exception itself: raised again and again, one
    object would gather tracebacks, and keep their frames alive.)"""

    size: Size | None


class Previews:
    """Re-encoded images of one app: one decode at a time, and what is known, in memory only.

    Making a preview takes a queue ticket (:meth:`turn`): one image is decoded at a time and
    at most ``queue`` requests wait, each for ``wait`` seconds at most; past that the answer
    is :class:`Busy` at once.  So previews hold at most ``1 + queue`` of the server's threads
    and other pages always find one free.  Sizes are read from headers first, outside the
    queue (a few milliseconds in the sandbox), so a bomb is refused at once, busy or not.

    PNGs, sizes and refusals are cached in this process's memory only (never on disk), the
    PNGs within ``entries`` images and ``max_bytes`` bytes.
    """

    def __init__(
        self,
        max_pixels: int = PREVIEW_MEGAPIXELS * 1_000_000,
        *,
        queue: int = QUEUE,
        wait: float = WAIT,
        entries: int = _CACHE_ENTRIES,
        max_bytes: int = _CACHE_BYTES,
    ) -> None:
        self.max_pixels = max_pixels
        self._queue = queue
        self._wait = wait
        self._entries = entries
        self._max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cached_bytes = 0
        self._known: OrderedDict[str, Size | _Refused] = OrderedDict()
        self._lock = threading.Lock()
        self._decoder = threading.Lock()
        self._admitted = 0

    def image(self, vault: Vault, attachment: Attachment, mode: str = BLURRED) -> bytes:
        """A PNG of the attachment: blurred and greyscale, or (``REVEALED``) sharp in colour.

        Raises :class:`TooLarge` past the pixel budget, :class:`Undecodable` if the image
        cannot be decoded, :class:`Busy` when it must wait too long for its turn,
        :class:`PreviewError` if the file is not an image we preview, and
        :class:`sandbox.SandboxUnavailable` when no sandbox can be made.
        """
        if mode not in MODES:
            raise ValueError("unknown preview mode")
        key = (attachment.blob, mode)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        self.size(vault, attachment)
        with self.turn():
            with self._lock:
                if key in self._cache:  # made while this request waited
                    return self._cache[key]
            known = self.refusal(attachment.blob)  # or found undecodable meanwhile
            if known is not None:
                raise known
            try:
                png = render(vault, attachment, mode, self.max_pixels)
            except Undecodable:
                self._remember(attachment.blob, _Refused(None))
                raise
        self._store(key, png)
        return png

    def size(self, vault: Vault, attachment: Attachment) -> Size:
        """The size the image's header announces, read in the sandbox (once, then from
        memory); :class:`TooLarge` past the budget, :class:`Undecodable` if unreadable."""
        known = self.refusal(attachment.blob)
        if known is not None:
            raise known
        with self._lock:
            found = self._known.get(attachment.blob)
        if isinstance(found, Size):
            return found
        kind = kind_of(vault, attachment)
        if kind.demuxer is None:
            raise PreviewError("this file is not an image that can be previewed")
        try:
            found = read_size(vault.attachment_chunks(attachment), kind)
        except Undecodable:
            self._remember(attachment.blob, _Refused(None))
            raise
        if pixels_counted(found) > self.max_pixels:
            self._remember(attachment.blob, _Refused(found))
            raise TooLarge(found, self.max_pixels)
        self._remember(attachment.blob, found)
        return found

    def refusal(self, blob: str) -> PreviewError | None:
        """Why this image has no preview, if that is already known (from memory only: never
        reads the file, so a page can ask for every file it lists)."""
        with self._lock:
            found = self._known.get(blob)
        if not isinstance(found, _Refused):
            return None
        if found.size is None:
            return Undecodable("this image could not be decoded: it may be damaged or hostile")
        return TooLarge(found.size, self.max_pixels)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the one decoder: wait at most ``wait`` seconds behind at most ``queue``
        others, else :class:`Busy` (at once when the queue is full)."""
        with self._lock:
            if self._admitted > self._queue:
                raise Busy("another preview is being made")
            self._admitted += 1
        try:
            if not self._decoder.acquire(timeout=self._wait):
                raise Busy("another preview is being made")
            try:
                yield
            finally:
                self._decoder.release()
        finally:
            with self._lock:
                self._admitted -= 1

    def forget(self, blobs: set[str] | None = None) -> None:
        """Drop cached previews and sizes (of ``blobs``, or all): after a purge, at log-out."""
        with self._lock:
            for key in list(self._cache):
                if blobs is None or key[0] in blobs:
                    self._cached_bytes -= len(self._cache.pop(key))
            for blob in list(self._known):
                if blobs is None or blob in blobs:
                    del self._known[blob]

    def _store(self, key: tuple[str, str], png: bytes) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = png
            self._cached_bytes += len(png)
            while self._cache and (
                len(self._cache) > self._entries or self._cached_bytes > self._max_bytes
            ):
                self._cached_bytes -= len(self._cache.popitem(last=False)[1])

    def _remember(self, blob: str, found: Size | _Refused) -> None:
        with self._lock:
            self._known[blob] = found
            self._known.move_to_end(blob)
            while len(self._known) > _KNOWN_ENTRIES:
                self._known.popitem(last=False)


@functools.cache
def _size_program() -> str:
    return Path(imagesize.__file__).read_text(encoding="utf-8")


def read_size(chunks: Iterable[bytes], kind: FileKind) -> Size:
    """The size in the header of an image of ``kind`` (whose bytes are ``chunks``), read by
    :mod:`journalist_interface.imagesize` in the sandbox (64 MiB, a few milliseconds); what it
    prints is checked like any untrusted text.  :class:`Undecodable` if it cannot be read."""
    image_format = kind.mime.partition("/")[2]
    with sandbox.workspace(chunks, kind.suffix) as path:
        inside = f"{sandbox.INSIDE}/{path.name}"
        command = ["/usr/bin/python3", "-I", "-S", "-c", _size_program(), image_format, inside]
        done = sandbox.run(
            command, path.parent, timeout=PROBE_TIMEOUT, max_output=4096, memory=PROBE_MEMORY
        )
    try:
        answer = json.loads(done.stdout)
        width, height, deep = answer["width"], answer["height"], answer["deep"]
    except (ValueError, TypeError, KeyError):
        raise Undecodable("this image could not be decoded: its header is damaged") from None
    if not (
        type(width) is int and type(height) is int and type(deep) is bool and width > 0 < height
    ):
        raise Undecodable("this image could not be decoded: its header is damaged")
    return Size(width, height, deep)


def render(vault: Vault, attachment: Attachment, mode: str, max_pixels: int) -> bytes:
    """Re-encode an attachment to PNG in the sandbox (no cache, no size check: see
    :meth:`Previews.image`), with the decoder held to ``max_pixels`` and its memory cap."""
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
            "-filter_threads",
            "1",
            "-protocol_whitelist",
            "file",
            # Should the header have lied, the decoder refuses a frame past the budget (with
            # room for the padding it adds to each row) before allocating it.
            "-max_pixels",
            str(max_pixels + max_pixels // 4),
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
        try:
            done = sandbox.run(
                command,
                path.parent,
                timeout=PREVIEW_TIMEOUT,
                max_output=MAX_PREVIEW_OUTPUT,
                memory=decoder_memory(max_pixels),
            )
        except SandboxUnavailable:
            raise
        except SandboxError:  # too slow, or an absurd output
            raise Undecodable("this image could not be decoded in time") from None
    if done.status != 0 or not done.stdout.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Undecodable("this image could not be decoded: it may be damaged or hostile")
    return done.stdout
