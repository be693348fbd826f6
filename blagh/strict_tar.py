"""A strict reader of the only tar archives bundles may be: ustar headers, a few pax records.

Python's :mod:`tarfile` believes every header it reads.  A size written in GNU's base-256 form
may be negative, and then tarfile goes back to a header it has already read and loops for ever,
its member list growing until the process is killed (CVE-2025-8194, in the Pythons we run);
it also follows GNU long names, sparse maps and global headers, and reads on after a lone zero
block.  A bundle comes from across the air gap and its headers are read before anything in it
is known to be genuine, so they are parsed here instead, one member at a time, only when the
caller asks for the next one: :mod:`blagh.bundles` asks for the first (the signed manifest),
checks the signature, and only then asks for the others.

What is accepted (docs/bundles.md, "Container"), and nothing else:

- 512-byte POSIX ustar headers (magic ``ustar\\0``, version ``00``) with a correct checksum,
  an empty name prefix, and a size written as octal digits;
- type ``0``, NUL or ``7``: a regular file, whose bytes follow, padded to a whole block;
- type ``x``: a pax header of at most :data:`MAX_PAX_BYTES` for the very next member, whose
  records use only the keywords of :data:`PAX_KEYWORDS` (``size`` and ``path`` take effect,
  the others are metadata and are ignored), each at most once;
- then two zero blocks, then zeros at most up to the end of the 10 KiB record: the end.

Every offset is checked against the file's length before anything is read there, every read
is of a bounded size, and nothing is kept but the current member: memory stays flat whatever
the file claims.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from blagh.errors import BlaghError

BLOCK = 512
RECORD = 20 * BLOCK
"""The end-of-archive zeros may run to the end of a 20-block record, as tar writers pad."""

MAX_PAX_BYTES = 4096
"""A pax header of a bundle holds a size or a path: a few dozen bytes."""

MAX_MEMBER_BYTES = 2**40
"""No member of a bundle comes near 1 TiB; a larger size is refused before any arithmetic."""

PAX_KEYWORDS = frozenset(
    {"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
)
"""Pax keywords accepted: ``path`` and ``size`` replace the header's; the rest is ignored."""

REGULAR_TYPES = (b"0", b"\0", b"7")
PAX_TYPE = b"x"

_ZERO_BLOCK = bytes(BLOCK)
_USTAR = b"ustar\x0000"
_OCTAL = re.compile(rb" *([0-7]{1,11})[ \0]*")
_CHECKSUM = re.compile(rb" *([0-7]{1,7})[ \0]*")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_REFUSED_TYPES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a FIFO",
    b"g": "a global pax header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
    b"S": "a GNU sparse file",
    b"D": "a GNU directory dump",
    b"M": "a GNU multi-volume continuation",
    b"V": "a GNU volume label",
}


class TarRefused(BlaghError):
    """The archive holds something a bundle may not; the message says what (no path)."""


@dataclass(frozen=True)
class Member:
    """A regular member: its name, and where its ``size`` bytes are in the file."""

    name: str
    offset: int
    size: int


class TarScanner:
    """Walks the members of the archive open as ``fd``, ``length`` bytes long, one per
    :meth:`next_member` call; reads with ``os.pread`` (the file position is never used)."""

    def __init__(self, fd: int, length: int) -> None:
        self._fd = fd
        self._length = length
        self._position = 0
        self._ended = False

    def next_member(self) -> Member | None:
        """The next regular member, or None at a proper end of the archive."""
        if self._ended:
            return None
        pax: dict[str, str] | None = None
        while True:
            block = self._block(self._position, "a member's header")
            if block == _ZERO_BLOCK:
                if pax is not None:
                    raise TarRefused("a pax header is followed by no member")
                self._check_end()
                self._ended = True
                return None
            header = _parse_header(block)
            data = self._position + BLOCK
            end = data + _padded(header.size)
            if end > self._length:
                raise TarRefused("the archive is truncated: a member's bytes are missing")
            self._position = end
            if header.type == PAX_TYPE:
                if pax is not None:
                    raise TarRefused("two pax headers follow each other")
                if header.size > MAX_PAX_BYTES:
                    raise TarRefused("a pax header is too large")
                pax = parse_pax(self.read(data, header.size))
                continue
            name, size = header.name, header.size
            if pax is not None:
                name = pax.get("path", name)
                if "size" in pax:
                    size = _pax_size(pax["size"])
                    end = data + _padded(size)
                    if end > self._length:
                        raise TarRefused("the archive is truncated: a member's bytes are missing")
                    self._position = end
            return Member(name, data, size)

    def read(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``offset`` (the caller bounds ``size``)."""
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise TarRefused("the archive is truncated, or changed while it was read")
        return data

    def _block(self, offset: int, what: str) -> bytes:
        if offset + BLOCK > self._length:
            raise TarRefused(f"the archive is truncated: it ends where {what} should be")
        return self.read(offset, BLOCK)

    def _check_end(self) -> None:
        """Two zero blocks, then only zeros, at most to the end of the record: tar readers
        disagree on what follows a zero block (some stop, some read on), so nothing may."""
        second = self._position + BLOCK
        if self._block(second, "the second end-of-archive block") != _ZERO_BLOCK:
            raise TarRefused("something follows a single zero block")
        end = second + BLOCK
        record_end = end + -end % RECORD
        if self._length > record_end:
            raise TarRefused("something follows the end of the archive")
        if self.read(end, self._length - end).strip(b"\0"):
            raise TarRefused("something follows the end of the archive")


@dataclass(frozen=True)
class Header:
    name: str
    size: int
    type: bytes


def _parse_header(block: bytes) -> Header:
    """One ustar header, or :class:`TarRefused` saying what is wrong with it."""
    if block[257:265] != _USTAR:
        if block[257:265] == b"ustar  \0":
            raise TarRefused("a member has a GNU tar header (only POSIX ustar is read)")
        raise TarRefused("a member's header is not a POSIX ustar header")
    checksum = _CHECKSUM.fullmatch(block[148:156])
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if checksum is None or int(checksum.group(1), 8) != unsigned:
        raise TarRefused("a member's header is damaged (wrong checksum)")
    name = _name(block[:100])
    kind = block[156:157]
    if kind not in REGULAR_TYPES and kind != PAX_TYPE:
        what = _REFUSED_TYPES.get(kind, f"of an unknown type ({kind!r})")
        raise TarRefused(f"member {name!r} is not a regular file: it is {what}")
    if block[345:500].strip(b"\0"):
        raise TarRefused(f"member {name!r} has a name prefix (bundle names fit the name field)")
    if block[124] & 0x80:
        raise TarRefused(f"member {name!r} has a size in GNU base-256 form")
    size = _OCTAL.fullmatch(block[124:136])
    if size is None:
        raise TarRefused(f"member {name!r} has a malformed size")
    return Header(name, int(size.group(1), 8), kind)


def _name(field: bytes) -> str:
    """The name field up to its first NUL; bytes that are not ASCII are kept visible, escaped
    (such a name never matches what a bundle expects)."""
    return field.split(b"\0", 1)[0].decode("ascii", "backslashreplace")


def parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax header (``"<length> <keyword>=<value>\\n"``), every byte
    accounted for, each keyword allowed and given once."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 21)
        digits = data[position:space].decode("ascii", "replace") if space > 0 else ""
        if not _DECIMAL.fullmatch(digits) or int(digits) <= len(digits) + 1:
            raise TarRefused("a pax header is malformed")
        end = position + int(digits)
        if end > len(data) or data[end - 1 : end] != b"\n":
            raise TarRefused("a pax header is malformed")
        keyword, equals, value = data[space + 1 : end - 1].partition(b"=")
        try:
            text_keyword, text_value = keyword.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError:
            raise TarRefused("a pax header is malformed (not UTF-8)") from None
        if not equals:
            raise TarRefused("a pax header is malformed")
        if text_keyword.startswith("GNU.sparse."):
            raise TarRefused("a member is a GNU sparse file (pax GNU.sparse records)")
        if text_keyword not in PAX_KEYWORDS:
            raise TarRefused(f"a pax header holds a keyword bundles do not use: {text_keyword!r}")
        if text_keyword in records:
            raise TarRefused(f"a pax header gives {text_keyword!r} twice")
        records[text_keyword] = text_value
        position = end
    return records


def _pax_size(text: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_MEMBER_BYTES:
        raise TarRefused("a pax header gives a malformed or impossible size")
    return int(text)


def _padded(size: int) -> int:
    return size + -size % BLOCK
