"""Signed manifests: what a bundle holds, signed by who made it.

Bundles cross an untrusted transfer station: server to workstation (signed by the server's key)
and workstation to server (signed by an analyst's key).  The importer verifies the manifest
before it writes anything, then checks each item against the SHA-256 the manifest lists.  The
manifest is canonical JSON so that exactly one byte string carries a given content: what was
signed is what is read, with no second parser's opinion in between.  Format in docs/keys.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from crypto.errors import BadSignature

MAGIC = b"BLAGHMAN"
VERSION = 1
DOMAIN = b"blagh-manifest-v1\x00"
"""Prefix of every signed message, so a manifest signature can never pass for any other one."""

KEY_BYTES = 32
SIGNATURE_BYTES = 64
HEADER_BYTES = len(MAGIC) + 1 + KEY_BYTES + SIGNATURE_BYTES

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude allowed: beyond it JavaScript and many JSON parsers lose precision."""

_BAD_MANIFEST = "the manifest is not validly signed by a trusted key"


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature checked out, and the public key that signed it."""

    manifest: dict[str, object]
    signer: bytes


def canonical_json(obj: object) -> bytes:
    """Return the one canonical UTF-8 JSON encoding of ``obj``.

    Keys sorted by code point, no whitespace, non-ASCII written as itself.  Only dicts with str
    keys, lists, str, int (up to 2**53 - 1 in magnitude), bool and None are allowed: floats have
    several spellings and other types no obvious one, so they raise ``ValueError``.
    """
    _check_value(obj, depth=0)
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("manifest strings must be valid Unicode (no lone surrogates)") from None


def sign_manifest(
    manifest: Mapping[str, object],
    sign: Callable[[bytes], bytes],
    signer_public: bytes,
) -> bytes:
    """Return the signed blob for ``manifest``: header, signature, canonical JSON.

    ``sign`` is the signer's method (``AnalystKey.sign`` or ``ServerSigningKey.sign``) and
    ``signer_public`` its Ed25519 public key.  The signature is checked before returning, so a
    key mismatch is caught here rather than at the far end of a transfer.
    """
    if len(signer_public) != KEY_BYTES:
        raise ValueError(f"the signer's public key must be {KEY_BYTES} bytes")
    body = canonical_json(dict(manifest))
    signature = sign(DOMAIN + signer_public + body)
    if len(signature) != SIGNATURE_BYTES or not _valid(signer_public, signature, body):
        raise ValueError("the signature does not match the signer's public key")
    return MAGIC + bytes([VERSION]) + signer_public + signature + body


def verify_manifest(signed: bytes, trusted: Iterable[bytes]) -> VerifiedManifest:
    """Check a signed blob against the trusted Ed25519 keys and return its manifest.

    The signer must be one of ``trusted``, the signature valid, and the body a JSON object in
    canonical form.  Every failure raises :class:`BadSignature` with one message.
    """
    trusted_keys = frozenset(bytes(key) for key in trusted)
    if any(len(key) != KEY_BYTES for key in trusted_keys):
        raise ValueError(f"trusted keys must be {KEY_BYTES}-byte Ed25519 public keys")
    if len(signed) < HEADER_BYTES:
        raise BadSignature(_BAD_MANIFEST)
    if signed[: len(MAGIC)] != MAGIC or signed[len(MAGIC)] != VERSION:
        raise BadSignature(_BAD_MANIFEST)
    start = len(MAGIC) + 1
    signer = signed[start : start + KEY_BYTES]
    signature = signed[start + KEY_BYTES : HEADER_BYTES]
    body = signed[HEADER_BYTES:]
    if signer not in trusted_keys or not _valid(signer, signature, body):
        raise BadSignature(_BAD_MANIFEST)
    try:
        manifest = json.loads(body.decode("utf-8"))
        canonical = canonical_json(manifest)
    except (ValueError, RecursionError):
        raise BadSignature(_BAD_MANIFEST) from None
    if not isinstance(manifest, dict) or canonical != body:
        raise BadSignature(_BAD_MANIFEST)
    return VerifiedManifest(manifest=manifest, signer=signer)


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``, as manifests list items."""
    return hashlib.sha256(data).hexdigest()


class Sha256:
    """Streaming SHA-256 for items too large for memory; same output as :func:`sha256_hex`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        """Feed the next piece of the item."""
        self._hash.update(data)

    def hexdigest(self) -> str:
        """Return the lowercase hex digest of everything fed so far."""
        return self._hash.hexdigest()


_MAX_DEPTH = 64
_ALLOWED_TYPES = (bool, int, str, list, dict)


def _check_value(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"manifests nest at most {_MAX_DEPTH} levels deep")
    if value is None:
        return
    # Exact types: subclasses (IntEnum, StrEnum, OrderedDict...) could encode unexpectedly.
    if type(value) not in _ALLOWED_TYPES:
        kind = type(value).__name__
        raise ValueError(f"manifests hold no {kind} values (floats are not allowed)")
    if isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("manifest integers must be at most 2**53 - 1 in magnitude")
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError("manifest object keys must be strings")
            _check_value(item, depth + 1)


def _valid(public: bytes, signature: bytes, body: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public).verify(DOMAIN + public + body, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True
