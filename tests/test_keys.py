"""Analyst keys, key files, public key lines and the server signing key.

Key files at the real parameters cost an argon2id of 256 MiB (most of a second) per seal or
open, so only a handful use them; the exhaustive damage tests seal at the smallest parameters a
key file may carry (8 MiB, one pass), which exercises the same code at a fraction of the cost.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import unicodedata
from collections.abc import Callable

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import pytest

from crypto import keys
from crypto.errors import CryptoError, InvalidPublicKey, KeyFileError

PASSPHRASE = "correct horse battery staple, but longer"  # noqa: S105
CHEAP = {"opslimit": 1, "memlimit": 8 * 1024 * 1024}
FINGERPRINT = re.compile(r"[0-9A-F]{4}(-[0-9A-F]{4}){4}")


@pytest.fixture(scope="module")
def analyst() -> keys.AnalystKey:
    return keys.generate_analyst_key()


@pytest.fixture(scope="module")
def sealed(analyst: keys.AnalystKey) -> bytes:
    return keys.seal_key_file(analyst, PASSPHRASE)


@pytest.fixture(scope="module")
def cheap_sealed(analyst: keys.AnalystKey) -> bytes:
    return keys.seal_key_file(analyst, PASSPHRASE, **CHEAP)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _open_fails(data: bytes, passphrase: str = PASSPHRASE) -> str:
    with pytest.raises(KeyFileError) as caught:
        keys.open_key_file(data, passphrase)
    return str(caught.value)


# analyst keys


def test_generated_keys_differ() -> None:
    a, b = keys.generate_analyst_key(), keys.generate_analyst_key()
    assert a.encryption_secret != b.encryption_secret
    assert a.signing_seed != b.signing_seed


def test_public_matches_libsodium(analyst: keys.AnalystKey) -> None:
    public = analyst.public()
    assert public.encryption == bytes(nacl.public.PrivateKey(analyst.encryption_secret).public_key)
    assert public.verify == bytes(nacl.signing.SigningKey(analyst.signing_seed).verify_key)


def test_analyst_signature_verifies(analyst: keys.AnalystKey) -> None:
    signature = analyst.sign(b"reply bundle")
    assert len(signature) == 64
    verify_key = nacl.signing.VerifyKey(analyst.public().verify)
    verify_key.verify(b"reply bundle", signature)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        verify_key.verify(b"reply bundlE", signature)


def test_analyst_repr_hides_secrets(analyst: keys.AnalystKey) -> None:
    text = repr(analyst)
    assert "encryption_secret" not in text
    assert "signing_seed" not in text
    assert analyst.encryption_secret.hex() not in text
    assert repr(analyst.signing_seed) not in text


@pytest.mark.parametrize("length", [0, 31, 33])
def test_keys_check_their_lengths(length: int) -> None:
    with pytest.raises(ValueError):
        keys.AnalystKey(encryption_secret=bytes(length), signing_seed=bytes(32))
    with pytest.raises(ValueError):
        keys.AnalystPublicKey(encryption=bytes(32), verify=bytes(length))
    with pytest.raises(ValueError):
        keys.ServerSigningKey(seed=bytes(length))
    with pytest.raises(ValueError):
        keys.ServerVerifyKey(verify=bytes(length))


# public key lines and fingerprints


def test_analyst_line_round_trip(analyst: keys.AnalystKey) -> None:
    public = analyst.public()
    line = public.to_line()
    assert line == "blagh-analyst-v1:" + _b32(public.encryption + public.verify)
    assert len(line) == len("blagh-analyst-v1:") + 103
    assert line == line.lower()
    assert "=" not in line
    assert keys.AnalystPublicKey.from_line(line) == public
    assert keys.AnalystPublicKey.from_line(f"  {line}\r\n") == public


def test_analyst_fingerprint(analyst: keys.AnalystKey) -> None:
    public = analyst.public()
    fingerprint = public.fingerprint()
    assert FINGERPRINT.fullmatch(fingerprint)
    digest = hashlib.sha256(b"blagh-analyst-v1:" + public.encryption + public.verify).digest()
    assert fingerprint == "-".join(digest[i : i + 2].hex().upper() for i in range(0, 10, 2))
    assert keys.generate_analyst_key().public().fingerprint() != fingerprint


def _valid_line() -> str:
    return keys.generate_analyst_key().public().to_line()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda line: "",
        lambda line: line.replace("blagh-analyst-v1:", "blagh-analyst-v2:"),
        lambda line: line.replace("blagh-analyst-v1:", "blagh-server-v1:"),
        lambda line: line.replace("blagh-analyst-v1:", "BLAGH-ANALYST-V1:"),
        lambda line: line.replace("blagh-analyst-v1:", ""),
        lambda line: line.upper(),
        lambda line: line[:-1],
        lambda line: line + "a",
        lambda line: line + "=",
        lambda line: line[:-1] + "1",
        lambda line: line[:-1] + "8",
        lambda line: line[:30] + " " + line[31:],
        lambda line: line[:30] + "\u0430" + line[31:],  # Cyrillic a
        lambda line: line + " " + line,
    ],
    ids=[
        "empty",
        "version",
        "server-prefix",
        "prefix-case",
        "no-prefix",
        "upper",
        "short",
        "long",
        "padding",
        "digit-1",
        "digit-8",
        "inner-space",
        "homoglyph",
        "two-keys",
    ],
)
def test_malformed_analyst_lines(mangle: Callable[[str], str]) -> None:
    with pytest.raises(InvalidPublicKey):
        keys.AnalystPublicKey.from_line(mangle(_valid_line()))


def test_non_canonical_trailing_bits_are_refused(analyst: keys.AnalystKey) -> None:
    line = analyst.public().to_line()
    # 64 bytes use 2 of the last character's 5 bits: setting a spare bit decodes the same bytes.
    last = "abcdefghijklmnopqrstuvwxyz234567".index(line[-1])
    twin = line[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last | 1]
    assert twin != line
    with pytest.raises(InvalidPublicKey):
        keys.AnalystPublicKey.from_line(twin)


@pytest.mark.parametrize(
    "encryption",
    [
        bytes(32),  # zero: low order
        bytes([1]) + bytes(31),  # one: low order
        (2**255 - 19).to_bytes(32, "little"),  # p, not canonical
        (2**255 - 1).to_bytes(32, "little"),  # top bit set
    ],
    ids=["zero", "one", "p", "top-bit"],
)
def test_unusable_encryption_keys_are_refused(analyst: keys.AnalystKey, encryption: bytes) -> None:
    line = "blagh-analyst-v1:" + _b32(encryption + analyst.public().verify)
    with pytest.raises(InvalidPublicKey):
        keys.AnalystPublicKey.from_line(line)


@pytest.mark.parametrize(
    "verify",
    [bytes(32), bytes([1]) + bytes(31), bytes([0xFF]) * 32],
    ids=["zero", "identity", "ff"],
)
def test_unusable_verify_keys_are_refused(analyst: keys.AnalystKey, verify: bytes) -> None:
    line = "blagh-analyst-v1:" + _b32(analyst.public().encryption + verify)
    with pytest.raises(InvalidPublicKey):
        keys.AnalystPublicKey.from_line(line)
    with pytest.raises(InvalidPublicKey):
        keys.ServerVerifyKey.from_line("blagh-server-v1:" + _b32(verify))


# key files


def test_key_file_round_trip_at_real_parameters(analyst: keys.AnalystKey, sealed: bytes) -> None:
    assert keys.open_key_file(sealed, PASSPHRASE) == analyst


def test_key_file_layout(sealed: bytes) -> None:
    assert len(sealed) == keys.KEY_FILE_BYTES == 201
    assert sealed[:8] == b"BLAGHKEY"
    assert sealed[8] == 2
    assert struct.unpack("<II", sealed[9:17]) == (3, 256 * 1024 * 1024)
    assert (keys.KEY_FILE_OPSLIMIT, keys.KEY_FILE_MEMLIMIT) == (3, 256 * 1024 * 1024)


def test_key_file_box_key_is_bound_to_the_header(analyst: keys.AnalystKey) -> None:
    # Recompute the documented construction independently and open the box with it.
    data = keys.seal_key_file(analyst, PASSPHRASE, **CHEAP)
    header, box = data[:57], data[57:137]
    salt, nonce = header[17:33], header[33:57]
    stretched = nacl.bindings.crypto_pwhash_alg(
        32,
        PASSPHRASE.encode(),
        salt,
        1,
        8 * 1024 * 1024,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    box_key = hashlib.blake2b(header, digest_size=32, key=stretched).digest()
    plain = nacl.bindings.crypto_secretbox_open_easy(box, nonce, box_key)
    assert plain == analyst.encryption_secret + analyst.signing_seed


def test_wrong_passphrase_at_real_parameters(sealed: bytes) -> None:
    _open_fails(sealed, PASSPHRASE + "!")


def test_seals_are_fresh(analyst: keys.AnalystKey, cheap_sealed: bytes) -> None:
    again = keys.seal_key_file(analyst, PASSPHRASE, **CHEAP)
    assert again[:17] == cheap_sealed[:17]
    assert again[17:33] != cheap_sealed[17:33]  # salt
    assert again[33:57] != cheap_sealed[33:57]  # nonce
    assert keys.open_key_file(again, PASSPHRASE) == keys.open_key_file(cheap_sealed, PASSPHRASE)


def test_passphrase_is_nfc_normalised(analyst: keys.AnalystKey) -> None:
    composed = "caf\u00e9 cr\u00e8me"
    data = keys.seal_key_file(analyst, composed, **CHEAP)
    assert keys.open_key_file(data, unicodedata.normalize("NFD", composed)) == analyst


def test_every_single_byte_flip_is_refused(cheap_sealed: bytes) -> None:
    messages = set()
    for position in range(len(cheap_sealed)):
        for mask in (0x01, 0x80):
            damaged = bytearray(cheap_sealed)
            damaged[position] ^= mask
            messages.add(_open_fails(bytes(damaged)))
    assert len(messages) == 1


def test_truncation_and_extension_are_refused(cheap_sealed: bytes) -> None:
    messages = {_open_fails(cheap_sealed[:length]) for length in range(len(cheap_sealed))}
    messages.add(_open_fails(cheap_sealed + b"\x00"))
    messages.add(_open_fails(b""))
    assert len(messages) == 1


def test_empty_passphrase(analyst: keys.AnalystKey, cheap_sealed: bytes) -> None:
    with pytest.raises(ValueError, match="empty"):
        keys.seal_key_file(analyst, "")
    _open_fails(cheap_sealed, "")


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [(0, 8 << 20), (11, 8 << 20), (1, (8 << 20) - 1), (1, (1 << 30) + 1), (1, 0xFFFFFFFF)],
)
def test_parameters_out_of_bounds(analyst: keys.AnalystKey, opslimit: int, memlimit: int) -> None:
    with pytest.raises(ValueError):
        keys.seal_key_file(analyst, PASSPHRASE, opslimit=opslimit, memlimit=memlimit)
    # A file claiming such parameters is refused before any argon2id runs.
    header = struct.pack("<8sBII", b"BLAGHKEY", 1, opslimit, memlimit)
    _open_fails(header + bytes(keys.KEY_FILE_BYTES - len(header)))


def test_foreign_magic_and_version(cheap_sealed: bytes) -> None:
    _open_fails(b"AGEKEY01" + cheap_sealed[8:])
    _open_fails(cheap_sealed[:8] + b"\x03" + cheap_sealed[9:])
    _open_fails(cheap_sealed[:8] + b"\x01" + cheap_sealed[9:])  # a version 1 file is shorter


def test_key_file_error_says_nothing_specific(cheap_sealed: bytes) -> None:
    message = _open_fails(cheap_sealed, "nope")
    assert "passphrase" in message
    assert issubclass(KeyFileError, CryptoError)


# server signing key


def test_server_key() -> None:
    key = keys.ServerSigningKey.generate()
    assert keys.ServerSigningKey.generate().seed != key.seed
    public = key.public()
    assert public.verify == bytes(nacl.signing.SigningKey(key.seed).verify_key)
    signature = key.sign(b"pickup bundle")
    nacl.signing.VerifyKey(public.verify).verify(b"pickup bundle", signature)
    assert "seed" not in repr(key)
    assert key.seed.hex() not in repr(key)


def test_server_line_round_trip() -> None:
    public = keys.ServerSigningKey.generate().public()
    line = public.to_line()
    assert line == "blagh-server-v1:" + _b32(public.verify)
    assert len(line) == len("blagh-server-v1:") + 52
    assert keys.ServerVerifyKey.from_line(f"\t{line}\n") == public
    assert FINGERPRINT.fullmatch(public.fingerprint())
    digest = hashlib.sha256(b"blagh-server-v1:" + public.verify).hexdigest().upper()
    assert public.fingerprint().replace("-", "") == digest[:20]


def test_server_and_analyst_lines_do_not_mix(analyst: keys.AnalystKey) -> None:
    server_line = keys.ServerSigningKey.generate().public().to_line()
    with pytest.raises(InvalidPublicKey):
        keys.AnalystPublicKey.from_line(server_line)
    with pytest.raises(InvalidPublicKey):
        keys.ServerVerifyKey.from_line(analyst.public().to_line())
    with pytest.raises(InvalidPublicKey):
        keys.ServerVerifyKey.from_line(server_line[:-1])


def test_documented_vectors() -> None:
    # The vectors in docs/keys.md.
    analyst = keys.AnalystKey(bytes(range(32)), bytes(range(32, 64)))
    public = analyst.public()
    assert public.to_line() == (
        "blagh-analyst-v1:r5amllnwr4swesxfwikou5t2n3eu3au5hv5v4gwrxjxt4ijyfbpstlf24fa3zsxqwixbvf"
        "gtjuf4onq6kjwqx7qszclzjpeteklg3vy"
    )
    assert public.fingerprint() == "4D55-1A43-67D1-EE57-D310"
    server = keys.ServerSigningKey(bytes(range(64, 96))).public()
    assert (
        server.to_line() == "blagh-server-v1:evb3sl7rbfkrcr3k3sbwtw3n3sjtmznbdf4n3ikaj3qqm3fjkwoq"
    )
    assert server.fingerprint() == "399B-0902-69B5-EEB4-7D07"
