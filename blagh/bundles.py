"""Bundles: one file that carries envelopes between the server and the workstation.

A bundle is an uncompressed POSIX tar archive whose first member is ``manifest.signed`` (a
manifest signed as in docs/keys.md) and whose other members are ``items/<id>``, one envelope
each, exactly the items the manifest lists, with the sizes and SHA-256 it states.  Format:
docs/bundles.md.

Reading is strict and happens before anything is trusted: :class:`BundleReader` reads the first
header and the manifest, checks the signature, and only then reads the other headers (names,
types, sizes), then every hash, and only then lets the caller read items.  Headers are parsed
by :mod:`blagh.strict_tar`, which refuses every tar feature a bundle does not use, never by
:mod:`tarfile` (which loops for ever on a negative size).  Members are never extracted by
name, so a hostile name (``../x``, ``/etc``, a link) cannot write anywhere: it simply is not an
expected member, and the bundle is refused.
"""

import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from blagh.errors import BlaghError
from blagh.strict_tar import MAX_MEMBER_BYTES, Member, TarRefused, TarScanner
from crypto.errors import BadSignature
from crypto.manifest import (
    HEADER_BYTES,
    KEY_BYTES,
    MAGIC,
    Sha256,
    canonical_json,
    sign_manifest,
    verify_manifest,
)

MANIFEST_MEMBER = "manifest.signed"
ITEM_PREFIX = "items/"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_ITEMS = 1_000_000
"""More items than a 64 MiB manifest can list: a bound stated, not one that binds in practice."""
ITEM_ID = re.compile(r"[0-9a-f]{32}")
_READ_SIZE = 1024 * 1024


KINDS = {
    "blagh-pickup": (
        "a pickup bundle",
        "it goes from the server to the workstation: import it there with "
        "`blagh workstation import`",
    ),
    "blagh-replies": (
        "a reply bundle",
        "it goes from the workstation to the server: apply it there with "
        "`blagh import-replies` (or `blagh deliver` from the transfer station)",
    ),
    "blagh-evidence": (
        "an evidence export",
        "check it with `blagh verify-evidence`",
    ),
}
"""Every kind of file a manifest signs, by its ``format``: what to call it and where it goes,
so that a file given to the wrong command is named for what it is."""

ZIP_MAGIC = b"PK\x03\x04"


def kind_name(fmt: str) -> str:
    return KINDS.get(fmt, (f"a {fmt} file", ""))[0]


def wrong_kind(path: Path, found: str, expected: str) -> "BundleError":
    """The error for ``path`` being a ``found`` file given where an ``expected`` one goes."""
    name, advice = KINDS.get(found, (f"a {found} file", ""))
    message = f"{path} is {name}, not {kind_name(expected)}"
    return BundleError(message + (f": {advice}" if advice else ""))


def unverified_format(signed: bytes) -> str | None:
    """The ``format`` a signed manifest claims, read without checking the signature: only to
    name a refused file for what it is, never to trust anything in it."""
    try:
        manifest = json.loads(signed[HEADER_BYTES:].decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    return found if isinstance(found, str) and found in KINDS else None


class BundleError(BlaghError):
    """A bundle failed a check; the message says which one. Nothing from it was used."""


@dataclass(frozen=True)
class ItemSource:
    """An item to put in a bundle: its id, size and hash as the manifest states, and its bytes."""

    id: str
    size: int
    sha256: str
    open: Callable[[], BinaryIO]


def write_bundle(
    out: BinaryIO,
    manifest: Mapping[str, Any],
    sign: Callable[[bytes], bytes],
    signer_public: bytes,
    items: Iterable[ItemSource],
) -> None:
    """Write a bundle: the signed manifest, then each item, streamed from its source.

    ``manifest["items"]`` must list the same items (``id``, ``size``, ``sha256``) in the same
    order; this is checked, so a caller cannot sign one thing and ship another.
    """
    listed = [(i["id"], i["size"], i["sha256"]) for i in manifest["items"]]
    items = list(items)
    if listed != [(i.id, i.size, i.sha256) for i in items]:
        raise ValueError("the manifest's items and the items given differ")
    signed = sign_manifest(dict(manifest), sign, signer_public)
    offset = _write_member(out, MANIFEST_MEMBER, len(signed), io.BytesIO(signed))
    for item in items:
        with item.open() as data:
            offset += _write_member(out, ITEM_PREFIX + item.id, item.size, data)
    # the end as tarfile writes it: two zero blocks, then zeros to a whole record
    offset += 2 * tarfile.BLOCKSIZE
    out.write(bytes(2 * tarfile.BLOCKSIZE + -offset % tarfile.RECORDSIZE))


def _write_member(out: BinaryIO, name: str, size: int, data: IO[bytes]) -> int:
    """Write one regular member, its header then exactly ``size`` bytes of ``data`` padded to
    a whole block; return how many bytes were written.  Raises OSError when ``data`` ends
    early (as tarfile does)."""
    header = _member_header(name, size)
    out.write(header)
    left = size
    while left:
        chunk = data.read(min(left, _READ_SIZE))
        if not chunk:
            raise OSError("unexpected end of data")
        out.write(chunk)
        left -= len(chunk)
    padding = -size % tarfile.BLOCKSIZE
    out.write(bytes(padding))
    return len(header) + size + padding


_USTAR_NAME = 100
_USTAR_SIZE = 8**11
_USTAR_FIELDS = (
    b"0000600\0"  # mode
    + b"0000000\0"  # uid
    + b"0000000\0"  # gid
)


def _member_header(name: str, size: int) -> bytes:
    """The header :mod:`tarfile` writes in PAX format for a regular file ``name`` of ``size``
    bytes, mode 0600, owner 0, time 0 (what :class:`tarfile.TarInfo` defaults to).

    Made directly when it fits a plain ustar header (an ASCII name of at most 100 characters,
    a size under 8 GiB: every member of a bundle): tarfile's generic code took half the time
    of writing a pickup bundle of small items.  Otherwise tarfile makes it, with the pax
    extended header it needs.  tests/test_bundles_format.py checks both give the same bytes.
    """
    encoded = name.encode("ascii", "replace")
    if not name.isascii() or len(encoded) > _USTAR_NAME or not 0 <= size < _USTAR_SIZE:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    header = bytearray(tarfile.BLOCKSIZE)
    header[: len(encoded)] = encoded
    header[100:124] = _USTAR_FIELDS
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"00000000000\0"  # mtime
    header[148:156] = b"        "  # the checksum counts its own field as spaces
    header[156:157] = tarfile.REGTYPE
    header[257:265] = tarfile.POSIX_MAGIC
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


class BundleReader:
    """A verified bundle: construction runs every check; items can then be read by id.

    The order matters (docs/bundles.md, "Reading"): the first member's header and the manifest
    are read and the signature checked before any other header is parsed, and headers are
    parsed by :mod:`blagh.strict_tar`, never by :mod:`tarfile`: an unsigned file cannot make
    the reader do more than read one header and one bounded manifest.
    """

    def __init__(
        self,
        path: Path,
        trusted: Iterable[bytes],
        expected_format: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self._path = path
        self._progress = progress
        self._fd, length = _open(path)
        try:
            self._verify(path, TarScanner(self._fd, length), list(trusted), expected_format)
        except TarRefused as refused:
            zipped = os.pread(self._fd, len(ZIP_MAGIC), 0) == ZIP_MAGIC
            self.close()
            if zipped:
                raise BundleError(
                    f"{path} is a zip archive, not {kind_name(expected_format)}: an evidence "
                    "export is checked with `blagh verify-evidence`"
                ) from None
            raise BundleError(f"{path} is not a bundle, or is damaged: {refused}") from None
        except OSError as error:
            self.close()
            raise BundleError(f"{path} cannot be read ({error.strerror})") from None
        except BaseException:
            self.close()
            raise

    def _verify(
        self, path: Path, scanner: TarScanner, trusted: list[bytes], expected_format: str
    ) -> None:
        self._scanner = scanner
        signed = _first_member(path, scanner)
        try:
            verified = verify_manifest(signed, trusted)
        except BadSignature:
            found = unverified_format(signed)
            if found is not None and found != expected_format:
                raise wrong_kind(path, found, expected_format) from None
            raise BundleError(
                f"{path}: the manifest's signature does not verify with a trusted key "
                "(wrong signer, or the manifest was changed)"
            ) from None
        manifest = verified.manifest
        claimed = manifest.get("format")
        if claimed != expected_format and isinstance(claimed, str) and claimed in KINDS:
            raise wrong_kind(path, claimed, expected_format)
        if claimed != expected_format or manifest.get("version") != 1:
            raise BundleError(f"{path} is not a {expected_format} bundle of version 1")
        listed = manifest.get("items")
        if not isinstance(listed, list) or not all(_is_item(i) for i in listed):
            raise BundleError(f"{path}: the manifest's item list is malformed")
        if len(listed) > MAX_ITEMS:
            raise BundleError(f"{path}: the manifest lists more than {MAX_ITEMS} items")
        expected = {ITEM_PREFIX + i["id"]: i for i in listed}
        if len(expected) != len(listed):
            raise BundleError(f"{path}: the manifest lists an item twice")
        # Only now, the signature good, are the other headers read.
        seen: dict[str, Member] = {}
        while (member := scanner.next_member()) is not None:
            if member.name not in expected or member.name in seen:
                raise BundleError(
                    f"{path} holds a member the manifest does not list, or holds it twice: "
                    f"{member.name!r}"
                )
            if member.size != expected[member.name]["size"]:
                raise BundleError(f"{path}: item {member.name!r} has the wrong size")
            seen[member.name] = member
        missing = sorted(set(expected) - set(seen))
        if missing:
            raise BundleError(f"{path} lacks {len(missing)} item(s) its manifest lists")
        total, done = sum(member.size for member in seen.values()), 0
        for name, member in seen.items():
            digest = Sha256()
            for chunk in self._chunks(member):
                digest.update(chunk)
                done += len(chunk)
                if self._progress is not None:  # the long part: every byte hashed
                    self._progress(done, total)
            if digest.hexdigest() != expected[name]["sha256"]:
                raise BundleError(f"{path}: item {name!r} does not match its SHA-256")
        self.manifest: dict[str, Any] = manifest
        self.signer: bytes = verified.signer
        self._members = seen

    def _chunks(self, member: Member) -> Iterable[bytes]:
        offset, left = member.offset, member.size
        while left:
            try:
                chunk = self._scanner.read(offset, min(left, _READ_SIZE))
            except (TarRefused, OSError):
                raise BundleError(f"{self._path} changed while it was being read") from None
            offset += len(chunk)
            left -= len(chunk)
            yield chunk

    def item_chunks(self, item_id: str) -> Iterable[bytes]:
        """The bytes of a listed item, streamed (already checked against its hash)."""
        return self._chunks(self._members[ITEM_PREFIX + item_id])

    def read_item(self, item_id: str) -> bytes:
        return b"".join(self.item_chunks(item_id))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "BundleReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: Path) -> tuple[int, int]:
    """A descriptor of the regular file at ``path``, and its length."""
    try:
        # O_NONBLOCK: a FIFO put in a bundle's place must not hang the reader at open.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise BundleError(f"{path} cannot be read ({error.strerror})") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise BundleError(f"{path} is not a bundle: not a regular file")
    return fd, status.st_size


def _first_member(path: Path, scanner: TarScanner) -> bytes:
    """The first member's bytes, which must be the signed manifest: the only header read
    before the signature is checked."""
    first = scanner.next_member()
    if first is None or first.name != MANIFEST_MEMBER:
        raise BundleError(f"{path} has no manifest as its first member")
    if first.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: the manifest is too large")
    return scanner.read(first.offset, first.size)


def manifest_signer(path: Path) -> bytes:
    """The public key a bundle's manifest names as its signer, not yet verified: for a
    transfer station that checks a bundle is whole without the key that should have signed
    it.  Reads the first member only, as strictly as :class:`BundleReader`."""
    fd, length = _open(path)
    try:
        signed = _first_member(path, TarScanner(fd, length))
    except TarRefused as refused:
        raise BundleError(f"{path} is not a bundle, or is damaged: {refused}") from None
    except OSError as error:
        raise BundleError(f"{path} cannot be read ({error.strerror})") from None
    finally:
        os.close(fd)
    if len(signed) < HEADER_BYTES or not signed.startswith(MAGIC):
        raise BundleError(f"{path} has no manifest as its first member")
    start = len(MAGIC) + 1
    return signed[start : start + KEY_BYTES]


def _is_item(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("id"), str)
        and ITEM_ID.fullmatch(item["id"]) is not None
        and isinstance(item.get("size"), int)
        and not isinstance(item["size"], bool)
        and 0 <= item["size"] <= MAX_MEMBER_BYTES
        and isinstance(item.get("sha256"), str)
        and re.fullmatch(r"[0-9a-f]{64}", item["sha256"]) is not None
    )


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a manifest, e.g. to fingerprint a bundle."""
    return canonical_json(dict(manifest))
