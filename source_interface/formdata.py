"""Multipart form parsing with the boundary found by ``bytes.find``, not a regex per request.

Werkzeug's parser compiles two regular expressions for every boundary it meets, and browsers
pick a fresh random boundary for every form they send: about 0.3 ms of CPU per report, a tenth
of what a whole report costs.  :class:`PartReader` reads the same bodies with plain byte
searches, and :class:`StreamingFormDataParser` plugs it into Werkzeug's ``FormDataParser``, so
the rest (stream factory, ``MultiDict`` results, limits as HTTP errors) behaves as before:

* line breaks are CRLF, as RFC 7578 requires and every browser and HTTP library sends;
* a part with no body at all (its headers straight before the next delimiter: RFC 2046 allows
  it, Werkzeug's own test client writes it for an empty file) is an empty part;
* a part with a ``filename`` parameter, even empty, goes to the stream factory, as in Werkzeug;
* a field longer than ``max_form_memory_size``, or more than ``max_form_parts`` parts, is a
  413; a header block over :data:`MAX_HEADER_BYTES`, a malformed or a truncated body raises
  :class:`ValueError` (the request class makes it a 400 and discards what was sealed).

Memory stays flat whatever the client sends: the reader keeps at most one read, the header
block being read, or a delimiter's length of body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

READ_SIZE = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
"""A part's header block: a name, a file name and a type fit many times over."""
MAX_BOUNDARY_CHARS = 200
"""RFC 2046 allows 70; some clients send longer ones."""
FIELD_CHARSETS = {"ascii", "us-ascii", "utf-8", "iso-8859-1"}
"""What Werkzeug accepts as a field's declared charset; anything else is read as UTF-8."""

CRLF = b"\r\n"
PADDING = b" \t"
"""Transport padding allowed after a delimiter (RFC 2046 §5.1.1)."""


class Part:
    """A part's headers: the first event of every part."""

    def __init__(self, headers: Headers) -> None:
        self.headers = headers
        disposition = headers.get("Content-Disposition")
        if disposition is None:
            raise ValueError("a form part without Content-Disposition")
        simple = _SIMPLE_DISPOSITION.fullmatch(disposition)
        if simple:
            self.name: str = simple.group(1)
            self.filename: str | None = simple.group(2)
            return
        _, options = parse_options_header(disposition)
        self.name = options.get("name", "")
        self.filename = options.get("filename")


_SIMPLE_DISPOSITION = re.compile(r'form-data; name="([^"\\%]*)"(?:; filename="([^"\\%]*)")?')
"""What browsers send for almost every part, read without Werkzeug's general parser (a tenth of
a report's CPU): no escapes, no percent-encoding, no RFC 2231 parameters. Anything else, however
unusual, still goes through ``parse_options_header``, so both give the same result."""


END_OF_PART = None
"""The event after a part's last bytes."""

Event = Part | bytes | None


class PartReader:
    """A push parser of ``multipart/form-data``: :meth:`feed` bytes, get events.

    Every part gives a :class:`Part`, then its body as non-empty ``bytes`` pieces, then
    :data:`END_OF_PART`.  :meth:`close` says whether the body ended properly.
    """

    def __init__(self, boundary: bytes, max_parts: int | None = None) -> None:
        if not 0 < len(boundary) <= MAX_BOUNDARY_CHARS or any(c in boundary for c in b"\r\n"):
            raise ValueError("a multipart boundary must be 1 to 200 characters on one line")
        self._dash = b"--" + boundary
        self._delimiter = CRLF + self._dash
        self._max_parts = max_parts
        self._parts = 0
        self._buffer = bytearray()
        self._state = self._preamble
        self._skip = 0
        """Bytes at the buffer's start that are not body: the blank line after the headers."""
        self.done = False

    def feed(self, data: bytes) -> Iterator[Event]:
        """The events that ``data`` completes (consume them before feeding more)."""
        if self.done:
            return
        self._buffer += data
        while not self.done:
            events = self._state()
            if events is None:
                return
            yield from events

    def close(self) -> None:
        """The body has ended: it must have ended with the closing delimiter."""
        if not self.done:
            raise ValueError("the form data ended before its closing boundary")

    # Each state returns the events it found (maybe none) once it has moved on, or None when
    # it needs more data.

    def _preamble(self) -> list[Event] | None:
        buffer = self._buffer
        start = 0
        while True:
            found = buffer.find(self._dash, start)
            if found < 0:
                keep = len(self._delimiter)
                if len(buffer) > keep:
                    del buffer[: len(buffer) - keep]
                return None
            if found == 0 or buffer[found - 2 : found] == CRLF:
                del buffer[: found + len(self._dash)]
                self._state = self._after_delimiter
                return []
            start = found + 1

    def _after_delimiter(self) -> list[Event] | None:
        buffer = self._buffer
        if buffer[:2] == b"--":
            self.done = True
            del buffer[:]
            return []
        if len(buffer) < 2:
            return None
        padding = 0
        while padding < len(buffer) and buffer[padding] in PADDING:
            padding += 1
            if padding > MAX_HEADER_BYTES:
                raise ValueError("a boundary line too long")
        if padding == len(buffer):
            return None
        if buffer[padding : padding + 2] != CRLF:
            if len(buffer) - padding < 2:
                return None
            raise ValueError("a boundary line that does not end")
        del buffer[: padding + 2]
        self._state = self._headers
        return []

    def _headers(self) -> list[Event] | None:
        buffer = self._buffer
        if buffer[:2] == CRLF:
            end = 0  # a part with no headers at all: refused below, Content-Disposition missing
        else:
            end = buffer.find(CRLF + CRLF, 0, MAX_HEADER_BYTES + 4)
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES + 4:
                    raise ValueError("a form part's headers are too long")
                return None
            end += 2
        headers = Headers()
        for line in bytes(buffer[:end]).split(CRLF):
            if line:
                name, colon, value = line.decode("utf-8").partition(":")
                if not colon:
                    raise ValueError("a malformed header line in a form part")
                headers.add(name.strip(" \t"), value.strip(" \t"))
        self._parts += 1
        if self._max_parts is not None and self._parts > self._max_parts:
            raise RequestEntityTooLarge()
        part = Part(headers)
        # Keep the blank line's CRLF: if the delimiter follows at once, it is the delimiter's
        # own CRLF (a part with no body); otherwise _body skips it.
        del buffer[:end]
        self._skip = 2
        self._state = self._body
        return [part]

    def _body(self) -> list[Event] | None:
        buffer = self._buffer
        delimiter = self._delimiter
        found = buffer.find(delimiter)
        if found >= 0:
            events: list[Event] = []
            if found > self._skip:
                events.append(bytes(buffer[self._skip : found]))
            del buffer[: found + len(delimiter)]
            self._skip = 0
            self._state = self._after_delimiter
            events.append(END_OF_PART)
            return events
        safe = len(buffer) - len(delimiter) + 1
        if safe <= self._skip:
            return None
        piece = bytes(buffer[self._skip : safe])
        del buffer[:safe]
        self._skip = 0
        return [piece]


class StreamingFormDataParser(FormDataParser):
    """``FormDataParser`` whose multipart bodies are read by :class:`PartReader`."""

    def _parse_multipart(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
        try:
            boundary = options.get("boundary", "").encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("a multipart boundary must be ASCII") from None
        reader = PartReader(boundary, self.max_form_parts)
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        part: Part | None = None
        sink: IO[bytes] | None = None
        pieces: list[bytes] = []
        size = 0
        while chunk := stream.read(READ_SIZE):
            for event in reader.feed(chunk):
                if isinstance(event, Part):
                    part, pieces, size = event, [], 0
                    sink = self._file_stream(event, content_length)
                elif isinstance(event, bytes):
                    if sink is not None:
                        sink.write(event)
                        continue
                    size += len(event)
                    if self.max_form_memory_size is not None and size > self.max_form_memory_size:
                        raise RequestEntityTooLarge()
                    pieces.append(event)
                else:
                    assert part is not None
                    if sink is None:
                        fields.append((part.name, _field_text(part, pieces)))
                    else:
                        sink.seek(0)
                        storage = FileStorage(sink, part.filename, part.name, headers=part.headers)
                        files.append((part.name, storage))
                    part, sink = None, None
        reader.close()
        return stream, self.cls(fields), self.cls(files)

    def _file_stream(self, part: Part, total: int | None) -> IO[bytes] | None:
        """Where a file part's bytes go (the stream factory); None for a plain field."""
        if part.filename is None:
            return None
        try:
            length = int(part.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return self.stream_factory(
            total_content_length=total,
            content_type=part.headers.get("Content-Type"),
            filename=part.filename,
            content_length=length,
        )


def _field_text(part: Part, pieces: list[bytes]) -> str:
    """A field's value, in the charset its part declares if Werkzeug would accept that one."""
    charset = "utf-8"
    content_type = part.headers.get("Content-Type")
    if content_type is not None:
        declared = parse_options_header(content_type)[1].get("charset", "").lower()
        charset = declared if declared in FIELD_CHARSETS else charset
    return b"".join(pieces).decode(charset, "replace")
