"""blagh/bundles.py writes tar members itself: byte for byte what tarfile writes, so a bundle
of a given content is the same file whichever writer made it, and any tar reader reads it; and
blagh/strict_tar.py reads back every header it writes, pax form included."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blagh.bundles import (
    ITEM_PREFIX,
    MANIFEST_MEMBER,
    BundleReader,
    ItemSource,
    _member_header,
    write_bundle,
)
from blagh.strict_tar import BLOCK, RECORD, Member, TarScanner
from crypto.keys import ServerSigningKey
from crypto.manifest import sha256_hex, sign_manifest


def tarfile_bundle(
    manifest: Mapping[str, Any], key: ServerSigningKey, items: list[tuple[str, bytes]]
) -> bytes:
    """The bundle as tarfile's own writer made it before (stream mode, PAX format)."""
    out = io.BytesIO()
    signed = sign_manifest(dict(manifest), key.sign, key.public().verify)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [(MANIFEST_MEMBER, signed)] + [(ITEM_PREFIX + i, d) for i, d in items]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=6))
def test_a_bundle_is_what_tarfile_would_write_and_reads_back(
    tmp_path_factory: pytest.TempPathFactory, contents: list[bytes]
) -> None:
    key = ServerSigningKey.generate()
    items = [(secrets.token_hex(16), data) for data in contents]
    manifest = {
        "format": "blagh-pickup",
        "version": 1,
        "items": [{"id": i, "size": len(d), "sha256": sha256_hex(d)} for i, d in items],
    }
    out = io.BytesIO()
    write_bundle(
        out,
        manifest,
        key.sign,
        key.public().verify,
        [ItemSource(i, len(d), sha256_hex(d), lambda d=d: io.BytesIO(d)) for i, d in items],  # type: ignore[misc]
    )
    assert out.getvalue() == tarfile_bundle(manifest, key, items)
    path = tmp_path_factory.mktemp("bundle") / "b"
    path.write_bytes(out.getvalue())
    with BundleReader(path, [key.public().verify], "blagh-pickup") as reader:
        assert [reader.read_item(i) for i, _ in items] == contents


@pytest.mark.parametrize(
    "name",
    [MANIFEST_MEMBER, ITEM_PREFIX + "0" * 32, "x" * 100, "x" * 101, "items/é", "a\udcff"],
)
@pytest.mark.parametrize("size", [0, 1, 511, 512, 10**9, 8**11 - 1, 8**11, 2**40])
def test_member_headers_are_tarfiles(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    assert _member_header(name, size) == info.tobuf(
        tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"
    )


def test_an_item_shorter_than_listed_is_an_error() -> None:
    key = ServerSigningKey.generate()
    item = ItemSource("0" * 32, 10, sha256_hex(b"x" * 10), lambda: io.BytesIO(b"short"))
    manifest = {"items": [{"id": item.id, "size": 10, "sha256": item.sha256}]}
    with pytest.raises(OSError, match="unexpected end of data"):
        write_bundle(io.BytesIO(), manifest, key.sign, key.public().verify, [item])


@pytest.mark.parametrize("size", [0, 1, 511, 512, 8**11 - 1, 8**11, 2**40])
def test_the_strict_reader_reads_every_header_the_writer_makes(tmp_path: Path, size: int) -> None:
    """Up to 8 GiB a plain ustar header; from 8 GiB on, tarfile's pax header with ``size``.
    The member's bytes are a hole in a sparse file: only headers are read."""
    name = ITEM_PREFIX + "0" * 32
    header = _member_header(name, size)
    end = len(header) + size + -size % BLOCK + 2 * BLOCK
    path = tmp_path / "sparse"
    with path.open("wb") as file:
        file.write(header)
        file.truncate(end + -end % RECORD)
    try:
        with path.open("rb") as file:
            scanner = TarScanner(file.fileno(), path.stat().st_size)
            assert scanner.next_member() == Member(name, len(header), size)
            assert scanner.next_member() is None
    finally:
        path.unlink()  # a 1 TiB hole is nothing another test should ever walk into
