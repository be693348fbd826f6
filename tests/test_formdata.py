"""The multipart reader (source_interface/formdata.py) against Werkzeug's parser as the oracle.

Any CRLF body a browser or HTTP library could send, cut into any pieces, must give the fields
and files Werkzeug gives for it in one piece; hostile shapes must fail as errors, in bounded
memory.
"""

from __future__ import annotations

import io
import secrets
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from source_interface.formdata import MAX_HEADER_BYTES, Part, PartReader, StreamingFormDataParser


class ChunkedStream(io.RawIOBase):
    """A body that arrives in the given piece sizes (a slow client, a Tor cell at a time)."""

    def __init__(self, body: bytes, sizes: list[int]) -> None:
        self.body = body
        self.sizes = sizes or [len(body) or 1]
        self.position = 0
        self.turn = 0

    def read(self, size: int = -1) -> bytes:
        step = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        cut = self.body[self.position : self.position + min(step, size if size >= 0 else step)]
        self.position += len(cut)
        return cut


def files_to_memory(**_: Any) -> io.BytesIO:
    return io.BytesIO()


def parse(parser_class: type[FormDataParser], body: bytes, boundary: str, sizes: list[int]) -> Any:
    parser = parser_class(
        stream_factory=files_to_memory,
        max_form_memory_size=1 << 20,
        max_form_parts=100,
        silent=False,
    )
    _, form, files = parser.parse(
        ChunkedStream(body, sizes),  # type: ignore[arg-type]
        "multipart/form-data",
        len(body),
        {"boundary": boundary},
    )
    return (
        list(form.items(multi=True)),
        [
            (name, f.filename, f.content_type, f.stream.getvalue())
            for name, f in files.items(multi=True)
        ],
    )


def encode(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str) -> bytes:
    """As a browser writes it: every part's body after a blank line, CRLF before each
    delimiter, the closing delimiter and a final CRLF."""
    out = io.BytesIO()
    for name, filename, content_type, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if content_type is not None:
            out.write(f"Content-Type: {content_type}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'))
texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\'))
# Bodies made of the bytes a delimiter is made of, so near-misses of the boundary abound.
bodies = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b"-", b"--", b"\r\n--", b"b", b"x", b"\r\n"]), max_size=40
).map(b"".join)
parts = st.lists(
    st.tuples(
        names,
        st.none() | texts,
        st.none() | st.sampled_from(["image/jpeg", "text/plain; charset=iso-8859-1", "x/y"]),
        bodies,
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    parts=parts,
    boundary=st.sampled_from(["b", "bb-", "----WebKitFormBoundaryx7Yq", "-" * 40 + "9"]),
    sizes=st.lists(st.integers(1, 90), max_size=5),
    preamble=st.sampled_from([b"", b"ignored\r\n"]),
)
def test_same_fields_and_files_as_werkzeug(
    parts: list[tuple[str, str | None, str | None, bytes]],
    boundary: str,
    sizes: list[int],
    preamble: bytes,
) -> None:
    # A part holding its boundary cannot be encoded (a body that starts with it, or has it
    # after a line break, reads as a delimiter), so browsers pick one that occurs nowhere.
    dash = f"--{boundary}".encode()
    assume(not any(dash in data for *_, data in parts))
    body = preamble + encode(parts, boundary)
    ours = parse(StreamingFormDataParser, body, boundary, sizes)
    # Werkzeug in one piece: cut into pieces of a byte or two it can keep a stray CR.
    assert ours == parse(FormDataParser, body, boundary, [len(body)])
    assert len(ours[0]) + len(ours[1]) == len(parts)


def test_a_part_with_no_body_is_an_empty_part() -> None:
    """RFC 2046 lets a part end right after its headers (Werkzeug's test client writes that)."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n--b\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n--b--\r\n'
    )
    expected = ([("a", "")], [("files", "", "application/octet-stream", b"")])
    assert parse(StreamingFormDataParser, body, "b", [7]) == expected
    assert parse(FormDataParser, body, "b", [7]) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing at all
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',  # cut short
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue\r\n--b',  # no closing
        b"--b\r\nContent-Type: text/plain\r\n\r\nvalue\r\n--b--\r\n",  # no disposition
        b"--b\r\n\r\nvalue\r\n--b--\r\n",  # no headers
        b"--b\r\nno colon here\r\n\r\nvalue\r\n--b--\r\n",
        b"--bX\r\n",  # never the boundary
        b"--b junk\r\n",  # not padding
        b'--b\r\nContent-Disposition: form-data; name="\xff"\r\n\r\nv\r\n--b--\r\n',  # not UTF-8
    ],
)
def test_malformed_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse(StreamingFormDataParser, body, "b", [5])


def test_limits_are_413s() -> None:
    field = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + b"x" * (2 << 20)
    with pytest.raises(RequestEntityTooLarge):
        parse(StreamingFormDataParser, field + b"\r\n--b--\r\n", "b", [65536])
    many = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n' for _ in range(101)
    )
    with pytest.raises(RequestEntityTooLarge):
        parse(StreamingFormDataParser, many + b"--b--\r\n", "b", [4096])


def test_memory_stays_flat_whatever_the_body() -> None:
    """A header block that never ends, endless padding, a preamble with no boundary, a file of
    near-delimiters: the reader holds at most a header block or a delimiter's length."""
    boundary = secrets.token_hex(8).encode()
    endless_header = b"--" + boundary + b"\r\nX-Long: " + b"a" * (MAX_HEADER_BYTES + 10)
    with pytest.raises(ValueError):
        list(PartReader(boundary).feed(endless_header))
    with pytest.raises(ValueError):
        list(PartReader(boundary).feed(b"--" + boundary + b" " * (MAX_HEADER_BYTES + 10)))

    reader = PartReader(boundary)
    for _ in range(200):
        assert list(reader.feed(b"\r\n--" + boundary[:-1] + b"z" * 500)) == []
        assert len(reader._buffer) <= len(boundary) + 4

    reader = PartReader(boundary)
    head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n'
    received = 0
    for event in reader.feed(head):
        assert not isinstance(event, bytes)
    near_miss = (b"\r\n--" + boundary[:-1] + b"!") * 2000
    for _ in range(50):
        received += sum(len(e) for e in reader.feed(near_miss) if isinstance(e, bytes))
        assert len(reader._buffer) < len(boundary) + 4
    assert received > 49 * len(near_miss)


header_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=12
)
dispositions = st.one_of(
    st.builds(
        lambda name, filename: f'form-data; name="{name}"'
        + ("" if filename is None else f'; filename="{filename}"'),
        header_text,
        st.none() | header_text,
    ),
    st.lists(
        st.sampled_from(
            ["form-data", "Form-Data", ";", " ", "name=", "filename=", "filename*=", '"', "\\",
             "%22", "UTF-8''", "a", "é", "x;y", "name*0="]
        ),
        max_size=12,
    ).map("".join),
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(disposition=dispositions)
def test_a_part_reads_its_disposition_as_werkzeug_does(disposition: str) -> None:
    """The fast path for what browsers send, and the fallback for everything else, give what
    ``parse_options_header`` gives: quotes, escapes, percent signs and RFC 2231 included."""
    _, options = parse_options_header(disposition)
    part = Part(Headers([("Content-Disposition", disposition)]))
    assert (part.name, part.filename) == (options.get("name", ""), options.get("filename"))
