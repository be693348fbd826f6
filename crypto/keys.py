"""Analyst keys, their passphrase-protected key file, and the server's signing key.

An analyst holds two key pairs: X25519 to open envelopes sealed to them, and Ed25519 to sign
reply bundles and evidence exports.  Their public halves travel as one text line pasted into the
server's configuration, and are checked by a short fingerprint read aloud.  The server has an
Ed25519 key of its own to sign pickup bundles, so the workstation can tell the real server's
bundles from anyone else's.  Formats are specified in docs/keys.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import unicodedata
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing
import nacl.utils

from crypto.envelope import check_public_key
from crypto.errors import InvalidPublicKey, KeyFileError

KEY_BYTES = 32
SIGNATURE_BYTES = 64

ANALYST_PREFIX = "blagh-analyst-v1:"
SERVER_PREFIX = "blagh-server-v1:"

KEY_FILE_MAGIC = b"BLAGHKEY"
KEY_FILE_VERSION = 2
"""Version 2 is version 1 followed by the public keys in clear (docs/keys.md): ``blagh key
show`` reads them without the passphrase.  Version 1 files still open."""
KEY_FILE_OPSLIMIT = 3
"""argon2id passes for the key file."""

KEY_FILE_MEMLIMIT = 256 * 1024 * 1024
"""argon2id memory for the key file: 256 MiB.

Opened once per session on a workstation that has nothing else to do, so it can afford four
times the codename's cost: a stolen key file is attacked offline with all the time in the world.
"""

KEY_FILE_OPSLIMIT_RANGE = (1, 10)
"""Accepted argon2id passes when opening a key file (inclusive)."""

KEY_FILE_MEMLIMIT_RANGE = (8 * 1024 * 1024, 1024 * 1024 * 1024)
"""Accepted argon2id memory when opening a key file (inclusive): 8 MiB to 1 GiB.

The header's parameters are read before anything is authenticated: the upper bounds stop a
crafted file from making the workstation spend minutes or gigabytes; the lower ones stop a file
from silently weakening the passphrase's protection when it is sealed again.
"""

_SALT_BYTES = 16
_NONCE_BYTES = nacl.bindings.crypto_secretbox_NONCEBYTES
_MAC_BYTES = nacl.bindings.crypto_secretbox_MACBYTES
_HEADER = struct.Struct("<8sBII16s24s")
KEY_FILE_V1_BYTES = _HEADER.size + _MAC_BYTES + 2 * KEY_BYTES
"""A version 1 key file is always exactly this long: 137 bytes."""
KEY_FILE_BYTES = KEY_FILE_V1_BYTES + 2 * KEY_BYTES
"""A version 2 key file is always exactly this long: 201 bytes."""

_KEY_FILE_ERROR = "the key file could not be opened: wrong passphrase, or a damaged file"

_BASE32_BODY = re.compile(r"[a-z2-7]+")


@dataclass(frozen=True)
class AnalystPublicKey:
    """An analyst's public keys: X25519 to seal envelopes to, Ed25519 to verify their bundles."""

    encryption: bytes
    verify: bytes

    def __post_init__(self) -> None:
        if len(self.encryption) != KEY_BYTES or len(self.verify) != KEY_BYTES:
            raise ValueError(f"analyst public keys are {KEY_BYTES} bytes each")

    def to_line(self) -> str:
        """Return the key as one line for a config file: the prefix, then unpadded base32."""
        return ANALYST_PREFIX + _b32encode(self.encryption + self.verify)

    @classmethod
    def from_line(cls, line: str) -> AnalystPublicKey:
        """Parse a line made by :meth:`to_line`; raise :class:`InvalidPublicKey` if malformed.

        Only the canonical spelling is accepted, so two lines are equal exactly when the keys
        are; keys that no honest generator produces (low-order points) are refused here rather
        than failing obscurely when a report is sealed to them.
        """
        raw = _parse_line(line, ANALYST_PREFIX, 2 * KEY_BYTES)
        encryption, verify = raw[:KEY_BYTES], raw[KEY_BYTES:]
        _check_x25519(encryption)
        _check_ed25519(verify)
        return cls(encryption=encryption, verify=verify)

    def fingerprint(self) -> str:
        """Return a short fingerprint such as ``A3F2-9C1B-77E0-44D1-0B8E``.

        Twenty hex digits are short enough to read aloud over the phone when an operator adds an
        analyst's key to the server, and 80 bits are far beyond forging a key to match one.
        """
        return _fingerprint(ANALYST_PREFIX.encode("ascii") + self.encryption + self.verify)


@dataclass(frozen=True)
class AnalystKey:
    """An analyst's secret keys: the X25519 secret and the Ed25519 seed, hidden from ``repr``."""

    encryption_secret: bytes = field(repr=False)
    signing_seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.encryption_secret) != KEY_BYTES or len(self.signing_seed) != KEY_BYTES:
            raise ValueError(f"analyst secret keys are {KEY_BYTES} bytes each")

    def public(self) -> AnalystPublicKey:
        """Return the matching public keys."""
        encryption = bytes(nacl.bindings.crypto_scalarmult_base(self.encryption_secret))
        verify = bytes(nacl.signing.SigningKey(self.signing_seed).verify_key)
        return AnalystPublicKey(encryption=encryption, verify=verify)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``message``."""
        return _sign(self.signing_seed, message)


def generate_analyst_key() -> AnalystKey:
    """Return a new analyst key from libsodium's CSPRNG."""
    return AnalystKey(
        encryption_secret=nacl.utils.random(KEY_BYTES),
        signing_seed=nacl.utils.random(KEY_BYTES),
    )


def seal_key_file(
    key: AnalystKey,
    passphrase: str,
    *,
    opslimit: int = KEY_FILE_OPSLIMIT,
    memlimit: int = KEY_FILE_MEMLIMIT,
) -> bytes:
    """Return ``key`` encrypted under ``passphrase``, in the key file format of docs/keys.md.

    The argon2id parameters are stored in the file, so they can be raised later without breaking
    old files; callers should keep the defaults, which the keyword arguments exist to override
    only for tests, within the bounds :func:`open_key_file` accepts.
    Raises ``ValueError`` for an empty passphrase or out-of-bounds parameters.
    """
    if not passphrase:
        raise ValueError("the key file passphrase must not be empty")
    if not _params_ok(opslimit, memlimit):
        raise ValueError("argon2id parameters are outside the bounds a key file may use")
    salt = nacl.utils.random(_SALT_BYTES)
    nonce = nacl.utils.random(_NONCE_BYTES)
    header = _HEADER.pack(KEY_FILE_MAGIC, KEY_FILE_VERSION, opslimit, memlimit, salt, nonce)
    box_key = _box_key(header, salt, passphrase, opslimit, memlimit)
    sealed: bytes = nacl.bindings.crypto_secretbox_easy(
        key.encryption_secret + key.signing_seed, nonce, box_key
    )
    public = key.public()
    return header + sealed + public.encryption + public.verify


def key_file_public(data: bytes) -> AnalystPublicKey | None:
    """The public keys a version 2 key file carries in clear, read without the passphrase;
    None for a version 1 file, which has none.

    Nothing authenticates them until the file is opened (:func:`open_key_file` refuses a file
    whose public part does not match its secret keys): they tell an analyst which key a file
    holds, not that nobody changed it.  Raises :class:`KeyFileError` for anything else.
    """
    if len(data) == KEY_FILE_V1_BYTES and data[:9] == KEY_FILE_MAGIC + b"\x01":
        return None
    if len(data) != KEY_FILE_BYTES or data[:9] != KEY_FILE_MAGIC + bytes([KEY_FILE_VERSION]):
        raise KeyFileError("this is not a blagh analyst key file, or it is damaged")
    try:
        return AnalystPublicKey(
            encryption=data[KEY_FILE_V1_BYTES : KEY_FILE_V1_BYTES + KEY_BYTES],
            verify=data[KEY_FILE_V1_BYTES + KEY_BYTES :],
        )
    except (ValueError, InvalidPublicKey):
        raise KeyFileError("this is not a blagh analyst key file, or it is damaged") from None


def open_key_file(data: bytes, passphrase: str) -> AnalystKey:
    """Decrypt a key file made by :func:`seal_key_file`.

    Every failure, whether a foreign, truncated or damaged file, unreasonable parameters or the
    wrong passphrase, raises :class:`KeyFileError` with one message: telling them apart would
    only help someone probing files or guessing passphrases.
    """
    if len(data) not in (KEY_FILE_V1_BYTES, KEY_FILE_BYTES) or not passphrase:
        raise KeyFileError(_KEY_FILE_ERROR)
    header = data[: _HEADER.size]
    magic, version, opslimit, memlimit, salt, nonce = _HEADER.unpack(header)
    expected_version = 1 if len(data) == KEY_FILE_V1_BYTES else KEY_FILE_VERSION
    if magic != KEY_FILE_MAGIC or version != expected_version:
        raise KeyFileError(_KEY_FILE_ERROR)
    if not _params_ok(opslimit, memlimit):
        raise KeyFileError(_KEY_FILE_ERROR)
    box_key = _box_key(header, salt, passphrase, opslimit, memlimit)
    try:
        plain: bytes = nacl.bindings.crypto_secretbox_open_easy(
            data[_HEADER.size : KEY_FILE_V1_BYTES], nonce, box_key
        )
    except nacl.exceptions.CryptoError:
        raise KeyFileError(_KEY_FILE_ERROR) from None
    key = AnalystKey(encryption_secret=plain[:KEY_BYTES], signing_seed=plain[KEY_BYTES:])
    public = key.public()
    if version != 1 and data[KEY_FILE_V1_BYTES:] != public.encryption + public.verify:
        raise KeyFileError(_KEY_FILE_ERROR)  # a public part that is not this key's
    return key


VAULT_SALT_BYTES = 16
"""The salt of a workstation vault's key: random, kept beside the vault (docs/keys.md)."""

_VAULT_PERSON = b"blagh-vault-v1"


def vault_key(key: AnalystKey, salt: bytes) -> bytes:
    """Return the 32-byte SQLCipher key of an analyst's vault: keyed BLAKE2b-256 of ``salt``.

    The analyst's X25519 secret keys the hash, so the passphrase that opens the key file (argon2id)
    is what opens the vault too, with no second stretching; the random per-vault salt gives two
    vaults of the same analyst different keys.  Raises ``ValueError`` for a salt of the wrong size.
    """
    if len(salt) != VAULT_SALT_BYTES:
        raise ValueError(f"a vault salt is {VAULT_SALT_BYTES} bytes")
    return hashlib.blake2b(
        salt, digest_size=KEY_BYTES, key=key.encryption_secret, person=_VAULT_PERSON
    ).digest()


@dataclass(frozen=True)
class ServerVerifyKey:
    """The server's Ed25519 public key, with which the workstation checks pickup bundles."""

    verify: bytes

    def __post_init__(self) -> None:
        if len(self.verify) != KEY_BYTES:
            raise ValueError(f"the server verify key is {KEY_BYTES} bytes")

    def to_line(self) -> str:
        """Return the key as one line for the workstation's config: prefix, unpadded base32."""
        return SERVER_PREFIX + _b32encode(self.verify)

    @classmethod
    def from_line(cls, line: str) -> ServerVerifyKey:
        """Parse a line made by :meth:`to_line`; raise :class:`InvalidPublicKey` if malformed."""
        verify = _parse_line(line, SERVER_PREFIX, KEY_BYTES)
        _check_ed25519(verify)
        return cls(verify=verify)

    def fingerprint(self) -> str:
        """Return a short fingerprint such as ``A3F2-9C1B-77E0-44D1-0B8E``, to read aloud."""
        return _fingerprint(SERVER_PREFIX.encode("ascii") + self.verify)


@dataclass(frozen=True)
class ServerSigningKey:
    """The server's Ed25519 seed, hidden from ``repr``; it signs pickup bundle manifests."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != KEY_BYTES:
            raise ValueError(f"the server signing seed is {KEY_BYTES} bytes")

    @staticmethod
    def generate() -> ServerSigningKey:
        """Return a new signing key from libsodium's CSPRNG."""
        return ServerSigningKey(seed=nacl.utils.random(KEY_BYTES))

    def public(self) -> ServerVerifyKey:
        """Return the matching verify key."""
        return ServerVerifyKey(verify=bytes(nacl.signing.SigningKey(self.seed).verify_key))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``message``."""
        return _sign(self.seed, message)


def _sign(seed: bytes, message: bytes) -> bytes:
    signature: bytes = nacl.signing.SigningKey(seed).sign(message).signature
    return signature


def _params_ok(opslimit: int, memlimit: int) -> bool:
    low_ops, high_ops = KEY_FILE_OPSLIMIT_RANGE
    low_mem, high_mem = KEY_FILE_MEMLIMIT_RANGE
    return low_ops <= opslimit <= high_ops and low_mem <= memlimit <= high_mem


def _box_key(header: bytes, salt: bytes, passphrase: str, opslimit: int, memlimit: int) -> bytes:
    # secretbox takes no associated data: keying it with a hash of the header binds the header.
    stretched: bytes = nacl.bindings.crypto_pwhash_alg(
        nacl.bindings.crypto_secretbox_KEYBYTES,
        unicodedata.normalize("NFC", passphrase).encode("utf-8"),
        salt,
        opslimit,
        memlimit,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    return hashlib.blake2b(header, digest_size=32, key=stretched).digest()


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _parse_line(line: str, prefix: str, length: int) -> bytes:
    line = line.strip()
    if not line.startswith(prefix):
        raise InvalidPublicKey(f"a public key line starts with {prefix!r}")
    body = line[len(prefix) :]
    if len(body) != -(-length * 8 // 5) or not _BASE32_BODY.fullmatch(body):
        raise InvalidPublicKey("the public key line is damaged: copy it again in full")
    padded = body.upper() + "=" * (-len(body) % 8)
    raw = base64.b32decode(padded)
    if _b32encode(raw) != body:
        raise InvalidPublicKey("the public key line is damaged: copy it again in full")
    return raw


def _check_x25519(public: bytes) -> None:
    try:
        check_public_key(public)
    except InvalidPublicKey:
        raise InvalidPublicKey("the public key line holds an invalid encryption key") from None


def _check_ed25519(public: bytes) -> None:
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(public):
        raise InvalidPublicKey("the public key line holds an invalid signing key")


def _fingerprint(material: bytes) -> str:
    digest = hashlib.sha256(material).hexdigest()[:20].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 20, 4))


_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
"""The DER prefix of an Ed25519 SubjectPublicKeyInfo (what ``openssl pkey -pubout`` writes)."""


def parse_ed25519_public(text: str) -> bytes:
    """A raw Ed25519 public key from 64 hex digits, base64 of its 32 bytes, or a PEM
    ``PUBLIC KEY`` block; raise :class:`InvalidPublicKey` otherwise."""
    text = text.strip()
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        body = text
        if "-----BEGIN PUBLIC KEY-----" in text:
            body = text.split("-----BEGIN PUBLIC KEY-----", 1)[1].split("-----END", 1)[0]
        try:
            decoded = base64.b64decode("".join(body.split()), validate=True)
        except ValueError:
            decoded = b""
        if len(decoded) == KEY_BYTES:
            raw = decoded
        elif len(decoded) == len(_ED25519_SPKI) + KEY_BYTES and decoded.startswith(_ED25519_SPKI):
            raw = decoded[len(_ED25519_SPKI) :]
    if raw is None:
        raise InvalidPublicKey("not an Ed25519 public key (hex, base64 or PEM)")
    _check_ed25519(raw)
    return raw


def verify_detached(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid detached Ed25519 signature of ``message`` by
    ``public`` (plain Ed25519 over the bytes, as ``openssl pkeyutl -sign -rawin`` makes)."""
    if len(public) != KEY_BYTES or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def ed25519_fingerprint(public: bytes) -> str:
    """A short fingerprint of a raw Ed25519 public key, to name who signed a hash list."""
    return _fingerprint(b"ed25519:" + public)
