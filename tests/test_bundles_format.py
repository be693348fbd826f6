"""blagh/bundles.py writes tar members itself: byte for byte what tarfile writes, so a bundle
of a given content is the same file whichever writer made it, and any tar reader reads it."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blagh.bundles import (
    ITEM_PREFIX,
    MANIFEST_MEMBER,
    ItemSource,
    _member_header,
    write_bundle,
)
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
def test_a_bundle_is_what_tarfile_would_write(contents: list[bytes]) -> None:
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
