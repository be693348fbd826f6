"""Signed manifests: canonical JSON, signing, and every way verification must fail."""

from __future__ import annotations

import hashlib
import json

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import keys, manifest
from crypto.errors import BadSignature, CryptoError

MANIFEST: dict[str, object] = {
    "kind": "pickup",
    "created": "2025-01-02",
    "items": [
        {"name": "a.env", "size": 65_600, "sha256": "00" * 32},
        {"name": "b.env", "size": 0, "sha256": "ff" * 32, "note": "résumé ✓"},
    ],
    "complete": True,
    "previous": None,
}


@pytest.fixture(scope="module")
def server() -> keys.ServerSigningKey:
    return keys.ServerSigningKey.generate()


@pytest.fixture(scope="module")
def signed(server: keys.ServerSigningKey) -> bytes:
    return manifest.sign_manifest(MANIFEST, server.sign, server.public().verify)


def _rejected(blob: bytes, trusted: list[bytes]) -> str:
    with pytest.raises(BadSignature) as caught:
        manifest.verify_manifest(blob, trusted)
    return str(caught.value)


def _sign_raw(key: keys.ServerSigningKey, body: bytes) -> bytes:
    """Sign an arbitrary body with a valid signature, bypassing canonical_json."""
    public = key.public().verify
    signature = key.sign(b"blagh-manifest-v1\x00" + public + body)
    return b"BLAGHMAN\x01" + public + signature + body


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


# canonical JSON


def test_canonical_json_form() -> None:
    obj = {"b": [1, True, False, None], "a": {"z": "é", "y": -3}, "": "\n"}
    assert manifest.canonical_json(obj) == (
        '{"":"\\n","a":{"y":-3,"z":"é"},"b":[1,true,false,null]}'.encode()
    )


def test_canonical_json_sorts_by_code_point() -> None:
    assert manifest.canonical_json({"é": 1, "z": 2, "Z": 3}) == '{"Z":3,"z":2,"é":1}'.encode()


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        {"size": 1.5},
        [0.0],
        float("nan"),
        b"bytes",
        (1, 2),
        {1: "int key"},
        {"set": {1}},
        2**53,
        -(2**53),
        "\ud800",
        _nested(70),
    ],
    ids=[
        "float",
        "nested-float",
        "float-in-list",
        "nan",
        "bytes",
        "tuple",
        "int-key",
        "set",
        "too-big",
        "too-small",
        "lone-surrogate",
        "too-deep",
    ],
)
def test_canonical_json_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        manifest.canonical_json(value)


def test_canonical_json_allows_the_safe_integer_range() -> None:
    encoded = manifest.canonical_json([2**53 - 1, -(2**53 - 1)])
    assert encoded == b"[9007199254740991,-9007199254740991]"
    assert manifest.canonical_json(_nested(60))


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(value=_JSON)
def test_canonical_json_round_trips(value: object) -> None:
    encoded = manifest.canonical_json(value)
    assert json.loads(encoded) == value
    assert manifest.canonical_json(json.loads(encoded)) == encoded


# signing and verifying


def test_round_trip(server: keys.ServerSigningKey, signed: bytes) -> None:
    public = server.public().verify
    verified = manifest.verify_manifest(signed, [bytes(32), public])
    assert verified.manifest == MANIFEST
    assert verified.signer == public


def test_signed_layout(server: keys.ServerSigningKey, signed: bytes) -> None:
    public = server.public().verify
    body = manifest.canonical_json(MANIFEST)
    assert signed[:9] == b"BLAGHMAN\x01"
    assert signed[9:41] == public
    assert signed[105:] == body
    # The signature covers the domain string, the signer's key and the body.
    nacl.signing.VerifyKey(public).verify(b"blagh-manifest-v1\x00" + public + body, signed[41:105])


def test_analyst_signed_manifest() -> None:
    analyst = keys.generate_analyst_key()
    verify = analyst.public().verify
    blob = manifest.sign_manifest({"kind": "reply"}, analyst.sign, verify)
    assert manifest.verify_manifest(blob, iter([verify])).manifest == {"kind": "reply"}


def test_untrusted_signer(server: keys.ServerSigningKey, signed: bytes) -> None:
    _rejected(signed, [])
    _rejected(signed, [keys.ServerSigningKey.generate().public().verify])


def test_signer_swapped_for_a_trusted_key(server: keys.ServerSigningKey) -> None:
    # Someone signs with their own key but names a trusted one as the signer.
    mallory = keys.ServerSigningKey.generate()
    trusted = server.public().verify
    body = manifest.canonical_json({"kind": "pickup"})
    signature = mallory.sign(b"blagh-manifest-v1\x00" + trusted + body)
    _rejected(b"BLAGHMAN\x01" + trusted + signature + body, [trusted])


def test_every_single_byte_flip_is_refused(server: keys.ServerSigningKey, signed: bytes) -> None:
    trusted = [server.public().verify]
    messages = set()
    for position in range(len(signed)):
        for mask in (0x01, 0x80):
            damaged = bytearray(signed)
            damaged[position] ^= mask
            messages.add(_rejected(bytes(damaged), trusted))
    assert len(messages) == 1


def test_truncation_and_extension_are_refused(server: keys.ServerSigningKey, signed: bytes) -> None:
    trusted = [server.public().verify]
    messages = {_rejected(signed[:length], trusted) for length in range(len(signed))}
    messages.add(_rejected(signed + b" ", trusted))
    messages.add(_rejected(signed + b"\n", trusted))
    assert len(messages) == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a": 2}',  # whitespace
        b'{"a":2}\n',  # trailing newline
        b'{"a":"\\u00e9"}',  # escaped non-ASCII
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":1.0}',  # float
        b'{"a":NaN}',  # not even JSON
        b'{"a":9007199254740992}',  # beyond the safe range
        b'{"a":"\\ud800"}',  # lone surrogate
        b"\xef\xbb\xbf{}",  # byte order mark
        b'{"a":"\xff"}',  # not UTF-8
        b"[1,2]",  # canonical, but not an object
        b'"text"',
        b"",
    ],
)
def test_validly_signed_but_not_canonical(server: keys.ServerSigningKey, body: bytes) -> None:
    _rejected(_sign_raw(server, body), [server.public().verify])


def test_canonical_body_signed_raw_is_accepted(server: keys.ServerSigningKey) -> None:
    # The control for the test above: the same construction with a canonical body passes.
    blob = _sign_raw(server, b'{"a":2,"b":1}')
    assert manifest.verify_manifest(blob, [server.public().verify]).manifest == {"a": 2, "b": 1}


def test_signature_without_domain_is_refused(server: keys.ServerSigningKey) -> None:
    public = server.public().verify
    body = manifest.canonical_json({"kind": "pickup"})
    for message in (body, public + body, b"blagh-manifest-v2\x00" + public + body):
        _rejected(b"BLAGHMAN\x01" + public + server.sign(message) + body, [public])


def test_sign_refuses_a_mismatched_public_key(server: keys.ServerSigningKey) -> None:
    other = keys.ServerSigningKey.generate().public().verify
    with pytest.raises(ValueError):
        manifest.sign_manifest({"kind": "pickup"}, server.sign, other)
    with pytest.raises(ValueError):
        manifest.sign_manifest({"kind": "pickup"}, server.sign, other[:31])
    with pytest.raises(ValueError):
        manifest.sign_manifest({"size": 1.5}, server.sign, server.public().verify)


def test_trusted_keys_must_be_keys(signed: bytes) -> None:
    with pytest.raises(ValueError):
        manifest.verify_manifest(signed, [b"short"])


def test_bad_signature_is_a_crypto_error() -> None:
    assert issubclass(BadSignature, CryptoError)


# item digests


def test_sha256_helpers() -> None:
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert manifest.sha256_hex(b"abc") == expected
    streaming = manifest.Sha256()
    for piece in (b"a", b"", b"bc"):
        streaming.update(piece)
    assert streaming.hexdigest() == expected == hashlib.sha256(b"abc").hexdigest()
