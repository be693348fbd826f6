"""Write the test vectors under tests/vectors/: envelope/ (docs/envelope.md), and codename/,
keyfile/ and manifest/ (docs/keys.md).

Run from anywhere as ``.venv/bin/python tests/vectors/make_vectors.py`` (or ``make vectors``)
and commit the result.  Sealing is randomised (``crypto_box_seal`` draws an ephemeral key and
``crypto_secretstream`` a random header), so every run writes different envelopes; what stays
fixed is what a reader needs to check them: the identities (derived from constant seeds), the
payloads (a SHA-256 counter-mode stream) and hence every ``plaintext_sha256``.

Success vectors are sealed by ``crypto.envelope``.  Failure vectors each break exactly one rule
of the spec's *Opening* section.  Those that must reach a particular check (the tag grammar,
the padding, the canonical length, the recipient count) are built here directly on PyNaCl's
``crypto_secretstream`` bindings, validly sealed, so that no earlier check can catch them.

Envelopes whose padding fills a whole chunk of its own need at least 4 MiB of data (Padmé
rounds to multiples of 64 KiB only above 2^22 bytes), too big to commit: tests/test_interop.py
builds and checks those on the fly instead.

The codename, key file and manifest vectors come from crypto.codename, crypto.keys and
crypto.manifest, and from hand-made blobs for what those refuse to make (out-of-bounds argon2id
parameters, validly signed but non-canonical JSON). Every vector is checked against the Python
implementation before it is written; tests/test_vectors.py and tests/test_interop.py (which runs
tests/interop/check.mjs on libsodium.js) check them again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nacl import bindings as sodium

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crypto import envelope  # noqa: E402
from crypto.errors import DecryptionError  # noqa: E402
from crypto.padding import padded_length  # noqa: E402

OUT = Path(__file__).resolve().parent / "envelope"

C = envelope.CHUNK_SIZE
MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
PUSH = sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH
REKEY = sodium.crypto_secretstream_xchacha20poly1305_TAG_REKEY
FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


# --- fixed inputs ---------------------------------------------------------------------------


def identity(n: int) -> tuple[bytes, bytes]:
    """Test identity ``n`` as ``(secret_key, public_key)``, from the seed SHA-256("… N")."""
    seed = hashlib.sha256(b"blagh test identity %d" % n).digest()
    public, secret = sodium.crypto_box_seed_keypair(seed)
    return secret, public


def sk(n: int) -> bytes:
    return identity(n)[0]


def pk(n: int) -> bytes:
    return identity(n)[1]


def payload(size: int, label: bytes = b"blagh test payload") -> bytes:
    """``size`` deterministic bytes: SHA-256(label || counter_be64) for counter = 0, 1, …"""
    blocks = (size + 31) // 32
    stream = b"".join(hashlib.sha256(label + i.to_bytes(8, "big")).digest() for i in range(blocks))
    return stream[:size]


# --- building blocks for hand-made envelopes ------------------------------------------------


def split(sealed: bytes, count: int) -> tuple[bytes, list[bytes]]:
    """Cut an envelope into its header and its sealed chunks."""
    size = envelope.header_size(count)
    header, body = sealed[:size], sealed[size:]
    step = C + envelope.CHUNK_OVERHEAD
    return header, [body[i : i + step] for i in range(0, len(body), step)]


def build(
    recipients: Sequence[bytes],
    chunks: Sequence[tuple[bytes, int]],
    *,
    version: int = envelope.VERSION,
    count: int | None = None,
) -> bytes:
    """Seal ``chunks`` (plaintext, tag) exactly as given, under a header made from the arguments.

    Nothing is checked: this is how a validly sealed but malformed envelope is made.  The first
    chunk's additional data is the header, as the spec requires, whatever the header says.
    """
    file_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, file_key)
    stanzas = b"".join(sodium.crypto_box_seal(file_key, r) for r in recipients)
    n = len(recipients) if count is None else count
    header = envelope.MAGIC + bytes((version, n)) + stanzas + stream_header
    out = [header]
    for i, (plaintext, tag) in enumerate(chunks):
        ad = header if i == 0 else None
        out.append(sodium.crypto_secretstream_xchacha20poly1305_push(state, plaintext, ad, tag))
    return b"".join(out)


def canonical_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """The (plaintext, tag) chunks the spec prescribes for ``data``: for cross-checking build()."""
    padded = data + b"\x80" + bytes(padded_length(len(data)) - len(data) - 1)
    pieces = [padded[i : i + C] for i in range(0, len(padded), C)]
    boundary = len(data) // C
    chunks = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if i < boundary:
            tag = MESSAGE
        elif i == boundary:
            tag = FINAL if last else PUSH
        else:
            tag = FINAL if last else MESSAGE
        chunks.append((piece, tag))
    return chunks


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


# --- the vectors ----------------------------------------------------------------------------


@dataclass
class Vector:
    name: str
    description: str
    expect: str
    identities: list[bytes]
    envelope: bytes
    plaintext: bytes | None = None

    def to_json(self) -> dict[str, object]:
        ok = self.expect == "success"
        assert ok == (self.plaintext is not None)
        return {
            "name": self.name,
            "description": self.description,
            "expect": self.expect,
            "identities": [k.hex() for k in self.identities],
            "plaintext_size": len(self.plaintext) if self.plaintext is not None else None,
            "plaintext_sha256": (
                hashlib.sha256(self.plaintext).hexdigest() if self.plaintext is not None else None
            ),
            "envelope": base64.b64encode(self.envelope).decode("ascii"),
        }


def success_vectors() -> list[Vector]:
    vectors = []
    for size, why in [
        (0, "empty data: one FINAL chunk of 512 bytes, 0x80 then zeros"),
        (1, "one byte"),
        (511, "511 bytes: the marker is the last byte of the 512-byte floor"),
        (65535, "65535 bytes: the marker is the last byte of the first and only chunk"),
        (65536, "65536 bytes: a full MESSAGE chunk, then a FINAL chunk starting with 0x80"),
        (65537, "65537 bytes: a MESSAGE chunk, then a FINAL chunk with one data byte"),
        (200_000, "200000 bytes: three MESSAGE chunks and a 4096-byte FINAL chunk"),
    ]:
        data = payload(size)
        vectors.append(
            Vector(
                f"success_size_{size}", why, "success", [sk(1)], envelope.seal(data, [pk(1)]), data
            )
        )
    data = payload(1000)
    vectors.append(
        Vector(
            "success_recipients_3",
            "three recipients (identities 1, 2, 3), opened with the third",
            "success",
            [sk(3)],
            envelope.seal(data, [pk(1), pk(2), pk(3)]),
            data,
        )
    )
    vectors.append(
        Vector(
            "success_recipients_3_two_identities",
            "three recipients (identities 1, 2, 3); the reader holds identity 9 (not a "
            "recipient) and identity 2",
            "success",
            [sk(9), sk(2)],
            envelope.seal(data, [pk(1), pk(2), pk(3)]),
            data,
        )
    )
    vectors.append(
        Vector(
            "success_recipients_32",
            "the most recipients allowed, 32 (identities 1 to 32), opened with the last",
            "success",
            [sk(32)],
            envelope.seal(data, [pk(i) for i in range(1, 33)]),
            data,
        )
    )
    # The hand builder must agree with crypto.envelope on a canonical envelope, or the failure
    # vectors below would not be breaking only the rule they claim to break.
    for size in (0, 700, 65535, 65536):
        data = payload(size)
        built = build([pk(1)], canonical_chunks(data))
        assert envelope.open_envelope(built, [sk(1)]) == data
        assert len(built) == envelope.sealed_size(size, 1)
    return vectors


def failure_vectors() -> list[Vector]:
    v: list[Vector] = []

    def fail(name: str, description: str, sealed: bytes, identities: Sequence[bytes] = ()) -> None:
        v.append(
            Vector(f"failure_{name}", description, "failure", list(identities or [sk(1)]), sealed)
        )

    small = payload(100)
    one = envelope.seal(small, [pk(1)])  # header 114 bytes, one chunk of 512 + 17
    two_data = payload(65536)
    two = envelope.seal(two_data, [pk(1)])  # chunks: 65536 MESSAGE, 2048 FINAL
    three_data = payload(131072)
    three = envelope.seal(three_data, [pk(1)])  # chunks: 65536, 65536 MESSAGE, 4096 FINAL
    h1, c1 = split(one, 1)
    h2, c2 = split(two, 1)
    h3, c3 = split(three, 1)
    assert len(c1) == 1 and len(c2) == 2 and len(c3) == 3

    # check 1: header
    fail("empty_input", "zero bytes", b"")
    fail("truncated_header", "the envelope cut inside the stanza", one[:50])
    fail(
        "truncated_stream_header",
        "the envelope cut inside the stream header",
        one[: len(h1) - 1],
    )
    fail("header_only", "a complete header and no chunk at all", h1)
    fail("magic_bitflip", "bit 0 of the first magic byte flipped ('B' -> 'C')", flip(one, 0))
    fail(
        "version_unknown",
        "version byte 0x02, the payload validly sealed under that header",
        build([pk(1)], canonical_chunks(small), version=2),
    )
    fail(
        "version_zero",
        "version byte 0x00, the payload validly sealed under that header",
        build([pk(1)], canonical_chunks(small), version=0),
    )
    fail(
        "version_bitflip",
        "version byte flipped to 0x02 in a sealed envelope (also breaks the header binding)",
        flip(one, 8, 1),
    )
    three_recipients = envelope.seal(small, [pk(1), pk(2), pk(3)])
    fail(
        "count_bitflip",
        "recipients 1, 2, 3; count byte flipped from 3 to 2; read with identity 1, whose "
        "stanza still opens: the header no longer matches the first chunk's additional data",
        flip(three_recipients, 9, 0),
    )
    fail(
        "count_zero",
        "count byte 0 and no stanza, the payload validly sealed under that header",
        build([], canonical_chunks(small), count=0),
    )
    fail(
        "count_33",
        "33 recipients (identities 1 to 33), 33 real stanzas and a payload validly sealed "
        "under that header: only the 1 <= count <= 32 rule rejects it; read with identity 1",
        build([pk(i) for i in range(1, 34)], canonical_chunks(small)),
    )

    # check 2: stanzas
    fail("wrong_identity", "sealed to identity 1, read with identity 2", one, [sk(2)])
    fail("stanza_bitflip", "a bit flipped inside the reader's only stanza", flip(one, 10 + 40))
    fail(
        "stanza_bitflip_other_recipient",
        "recipients 1 and 2; a bit flipped in stanza 2; read with identity 1, whose stanza "
        "opens: the first chunk's additional data (the header) no longer matches",
        flip(envelope.seal(small, [pk(1), pk(2)]), 10 + 80 + 40),
    )

    # check 3/4: stream header and chunks
    fail("stream_header_bitflip", "a bit flipped in the stream header", flip(one, len(h1) - 5))
    fail(
        "chunk_bitflip",
        "a bit flipped in the ciphertext of the only chunk",
        flip(one, len(h1) + 100),
    )
    fail(
        "chunk_mac_bitflip",
        "a bit flipped in the last byte (MAC) of the only chunk",
        flip(one, len(one) - 1),
    )
    fail("truncated_mid_chunk", "the only chunk cut short by 10 bytes", one[:-10])
    fail(
        "truncated_to_17",
        "the only chunk cut to 17 bytes, less than a sealed empty chunk plus one byte",
        one[: len(h1) + 17],
    )
    fail(
        "truncated_last_chunk",
        "65536 bytes of data (MESSAGE, FINAL); the FINAL chunk dropped: the input ends at a "
        "chunk boundary before FINAL",
        h2 + c2[0],
    )
    fail(
        "dropped_middle_chunk",
        "131072 bytes of data (MESSAGE, MESSAGE, FINAL); the second chunk dropped",
        h3 + c3[0] + c3[2],
    )
    fail(
        "repeated_chunk",
        "65536 bytes of data (MESSAGE, FINAL); the first chunk repeated: MESSAGE, MESSAGE, FINAL",
        h2 + c2[0] + c2[0] + c2[1],
    )
    fail(
        "swapped_chunks",
        "131072 bytes of data (MESSAGE, MESSAGE, FINAL); the two full chunks swapped",
        h3 + c3[1] + c3[0] + c3[2],
    )
    other = envelope.seal(small, [pk(1)])
    fail(
        "chunk_from_other_envelope",
        "the header of one envelope and the chunk of another sealed to the same identity",
        h1 + split(other, 1)[1][0],
    )

    # check 5: tags and padding (validly sealed)
    pad = bytes(padded_length(len(small)) - len(small) - 1)
    fail(
        "rekey_tag",
        "65536 bytes of data: the first chunk tagged REKEY (2) instead of MESSAGE, otherwise "
        "canonical",
        build([pk(1)], [(two_data, REKEY), (b"\x80" + bytes(2047), FINAL)]),
    )
    fail(
        "short_message_chunk",
        "300 bytes of data sealed as a 100-byte MESSAGE chunk then a 412-byte FINAL chunk "
        "(marker, zeros): a MESSAGE chunk before the boundary must hold exactly 65536 bytes",
        build(
            [pk(1)],
            [(payload(300)[:100], MESSAGE), (payload(300)[100:] + b"\x80" + bytes(211), FINAL)],
        ),
    )
    fail(
        "padding_nonzero_byte",
        "100 bytes of data, 0x80, then zeros but for the last padding byte, 0x01 (one chunk, "
        "FINAL, 512 bytes)",
        build([pk(1)], [(small + b"\x80" + pad[:-1] + b"\x01", FINAL)]),
    )
    assert small[-1] not in (0, 0x80)
    fail(
        "padding_missing_marker",
        f"100 bytes of data (ending in 0x{small[-1]:02x}) followed by 412 zeros, no 0x80 "
        "(one chunk, FINAL)",
        build([pk(1)], [(small + bytes(len(pad) + 1), FINAL)]),
    )
    fail(
        "padding_all_zero",
        "512 zero bytes, no marker at all (one chunk, FINAL)",
        build([pk(1)], [(bytes(512), FINAL)]),
    )

    # check 6: nothing after FINAL, FINAL present
    fail("trailing_byte", "one zero byte after the FINAL chunk", one + b"\x00")
    fail(
        "trailing_sealed_chunk",
        "a canonical envelope (one 512-byte FINAL chunk), then one more validly sealed chunk "
        "(12 zeros, FINAL). Below 4 MiB a chunk after FINAL also makes the padded length "
        "non-canonical, and after a short FINAL chunk the framing merges the two: "
        "tests/test_interop.py checks the isolated case on a 4 MiB envelope",
        build([pk(1)], [*canonical_chunks(small), (bytes(12), FINAL)]),
    )
    fail(
        "truncated_after_push",
        "65535 bytes of data: a 65536-byte PUSH chunk ending with the marker (the canonical "
        "padded length), and no FINAL chunk: the input ends before FINAL",
        build([pk(1)], [(payload(65535) + b"\x80", PUSH)]),
    )
    fail(
        "empty_final_chunk",
        "65535 bytes of data: one 65536-byte PUSH chunk ending with the marker, then an empty "
        "FINAL chunk (17 bytes sealed): the padded length is canonical but a sealed chunk must "
        "be at least 18 bytes",
        build([pk(1)], [(payload(65535) + b"\x80", PUSH), (b"", FINAL)]),
    )
    fail(
        "no_final_tag",
        "100 bytes of data canonically padded to 512 bytes, but tagged MESSAGE, not FINAL",
        build([pk(1)], [(small + b"\x80" + pad, MESSAGE)]),
    )

    # check 7: canonical padded length
    fail(
        "padding_noncanonical_length",
        "100 bytes of data, 0x80 and zeros up to 600 bytes instead of 512 (one chunk, FINAL)",
        build([pk(1)], [(small + b"\x80" + bytes(499), FINAL)]),
    )
    fail(
        "padding_extra_zero_chunk",
        "65535 bytes of data: a 65536-byte PUSH chunk ending with the marker, then a 2048-byte "
        "all-zero FINAL chunk; padded length 67584 where 65536 is canonical",
        build([pk(1)], [(payload(65535) + b"\x80", PUSH), (bytes(2048), FINAL)]),
    )
    return v


# --- codenames, key files, manifests (docs/keys.md) ------------------------------------------


def write_json_vectors(kind: str, vectors: Sequence[dict[str, object]]) -> None:
    folder = OUT.parent / kind
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    names = [str(v["name"]) for v in vectors]
    assert len(set(names)) == len(names)
    total = 0
    for v in vectors:
        text = json.dumps(v, indent=2, ensure_ascii=True) + "\n"
        (folder / f"{v['name']}.json").write_text(text, encoding="utf-8")
        total += len(text)
    print(f"wrote {len(vectors)} {kind} vectors to {folder.relative_to(ROOT)} ({total:,} bytes)")


CODENAME_SALT = bytes(range(16))  # docs/keys.md's test vector
CODENAME_HASH_KEY = bytes(range(0x64, 0x84))


def codename_vectors() -> list[dict[str, object]]:
    import xkcdpass  # its EFF list: every success vector's words must be list words

    from crypto import codename
    from crypto.errors import InvalidCodename

    wordlist = (Path(xkcdpass.__file__).parent / "static" / "eff-long").read_text("utf-8")
    words = wordlist.split()
    assert len(words) == codename.WORDLIST_SIZE

    plain = "abacus abdomen abide abiding ability ablaze able"
    other_salt = hashlib.sha256(b"blagh test instance salt").digest()[:16]
    spaced = "  Drop-Down\u00a0FELT-TIP\u3000t-shirt\u2003Yo-Yo\t\tunicorn \r\n wizard  ＺＯＯＭ"
    spaced += " " * (codename.MAX_INPUT_CHARS - len(spaced))
    cases = [
        ("success_plain", "docs/keys.md's test vector, already normalised", plain, CODENAME_SALT),
        (
            "success_odd_spacing_case",
            "docs/keys.md's test vector typed with capitals, a tab, two spaces, a line break "
            "and full-width letters",
            "ABACUS abdomen\tabide  abiding\nability ablaze ＡＢＬＥ",
            CODENAME_SALT,
        ),
        (
            "success_python_whitespace",
            "the same words separated by characters Python's str.isspace() accepts but "
            "JavaScript's \\s does not, or that NFKC leaves alone: U+0085, U+001F, U+2028, "
            "vertical tab, form feed, carriage return",
            "abacus\x85abdomen\x1fabide\u2028abiding\x0bability\x0cablaze\rable",
            CODENAME_SALT,
        ),
        (
            "success_hyphens_256_chars",
            "hyphenated list words, mixed case, no-break, ideographic and em spaces, full-width "
            "letters, padded with spaces to exactly 256 code points (the longest accepted), "
            "another instance salt",
            spaced,
            other_salt,
        ),
        (
            "failure_257_chars",
            "seven list words padded with spaces to 257 code points: refused before normalising",
            plain + " " * (257 - len(plain)),
            CODENAME_SALT,
        ),
        ("failure_six_words", "six words", plain.rsplit(" ", 1)[0], CODENAME_SALT),
        ("failure_eight_words", "eight words", plain + " zoom", CODENAME_SALT),
        ("failure_empty", "nothing but whitespace", " \t\n", CODENAME_SALT),
    ]
    out: list[dict[str, object]] = []
    for name, description, text, salt in cases:
        vector: dict[str, object] = {
            "name": name,
            "description": description,
            "expect": "success" if name.startswith("success") else "failure",
            "codename_input": text,
            "salt": salt.hex(),
        }
        try:
            normalised = codename.normalise(text)
        except InvalidCodename:
            assert vector["expect"] == "failure", name
            vector.update(
                normalised=None,
                public_key=None,
                secret_key=None,
                login_secret=None,
                hash_key=None,
                verifier=None,
            )
            out.append(vector)
            continue
        assert vector["expect"] == "success", name
        assert codename.check_words(text, words) == [], name
        keys = codename.derive(text, salt)
        vector.update(
            normalised=normalised,
            public_key=keys.public_key.hex(),
            secret_key=keys.secret_key.hex(),
            login_secret=keys.login_secret.hex(),
            hash_key=CODENAME_HASH_KEY.hex(),
            verifier=codename.login_verifier(keys.login_secret, CODENAME_HASH_KEY).hex(),
        )
        out.append(vector)
    # docs/keys.md's published values.
    assert (
        out[0]["public_key"] == "4c1ff7069b69a9ce0d7ed811b38b7c6a67681a39a0dd2e704ed4a78cce713c54"
    )
    assert out[0]["verifier"] == "b9e5dd4b9253ede004ae9a11d800fcb89e46745d79478a9f724c2f20b3b36424"
    assert out[1]["public_key"] == out[0]["public_key"] == out[2]["public_key"]
    return out


def key_file_raw(
    secret: bytes, passphrase: str, opslimit: int, memlimit: int, label: bytes
) -> bytes:
    """A key file sealed by hand (any parameters, salt and nonce from ``label``)."""
    salt = hashlib.sha256(b"salt " + label).digest()[:16]
    nonce = hashlib.sha256(b"nonce " + label).digest()[:24]
    header = struct.pack("<8sBII16s24s", b"BLAGHKEY", 1, opslimit, memlimit, salt, nonce)
    stretched = sodium.crypto_pwhash_alg(
        32,
        unicodedata.normalize("NFC", passphrase).encode("utf-8"),
        salt,
        opslimit,
        memlimit,
        sodium.crypto_pwhash_ALG_ARGON2ID13,
    )
    box_key = hashlib.blake2b(header, digest_size=32, key=stretched).digest()
    return header + sodium.crypto_secretbox_easy(secret, nonce, box_key)


MIB = 1024 * 1024


def key_file_vectors() -> list[dict[str, object]]:
    from crypto import keys

    esk = bytes(range(32))  # docs/keys.md's analyst test vector
    seed = bytes(range(0x20, 0x40))
    analyst = keys.AnalystKey(encryption_secret=esk, signing_seed=seed)
    public = analyst.public()
    assert public.fingerprint() == "4D55-1A43-67D1-EE57-D310"
    secret = esk + seed
    pw = "correct horse battery staple"
    nfc_pw = unicodedata.normalize("NFC", "Pässwörd — ✓ naïve")
    nfd_pw = unicodedata.normalize("NFD", nfc_pw)
    assert nfc_pw != nfd_pw

    good = keys.seal_key_file(analyst, pw, opslimit=1, memlimit=8 * MIB)
    unicode = keys.seal_key_file(analyst, nfc_pw, opslimit=2, memlimit=16 * MIB)

    def with_u32(data: bytes, offset: int, value: int) -> bytes:
        return data[:offset] + value.to_bytes(4, "little") + data[offset + 4 :]

    cases: list[tuple[str, str, bytes, str]] = [
        ("success_basic", "docs/keys.md's analyst keys; opslimit 1, memlimit 8 MiB", good, pw),
        (
            "success_nfc_passphrase",
            "sealed under an NFC passphrase, opened with the same passphrase in NFD; opslimit "
            "2, memlimit 16 MiB",
            unicode,
            nfd_pw,
        ),
        ("failure_wrong_passphrase", "a different passphrase", good, pw + "!"),
        ("failure_empty_passphrase", "an empty passphrase", good, ""),
        ("failure_truncated", "136 bytes", good[:-1], pw),
        ("failure_extended", "138 bytes", good + b"\x00", pw),
        ("failure_magic", "a bit flipped in the magic", flip(good, 0), pw),
        ("failure_version_2", "version byte 2", good[:8] + b"\x02" + good[9:], pw),
        (
            "failure_opslimit_changed",
            "opslimit changed from 1 to 2 (within bounds): the header is bound to the box key",
            with_u32(good, 9, 2),
            pw,
        ),
        ("failure_salt", "a bit flipped in the salt", flip(good, 20), pw),
        ("failure_nonce", "a bit flipped in the nonce", flip(good, 40), pw),
        ("failure_box", "a bit flipped in the secretbox", flip(good, 100), pw),
        (
            "failure_opslimit_11",
            "validly sealed with opslimit 11 (above the bound of 10)",
            key_file_raw(secret, pw, 11, 8 * MIB, b"ops11"),
            pw,
        ),
        (
            "failure_opslimit_0",
            "opslimit 0 in the header",
            with_u32(good, 9, 0),
            pw,
        ),
        (
            "failure_memlimit_4mib",
            "validly sealed with memlimit 4 MiB (below the bound of 8 MiB)",
            key_file_raw(secret, pw, 1, 4 * MIB, b"mem4"),
            pw,
        ),
        (
            "failure_memlimit_over_1gib",
            "memlimit 1 GiB + 1 KiB in the header: refused before argon2id runs",
            with_u32(good, 13, 1024 * MIB + 1024),
            pw,
        ),
    ]
    # The hand sealer agrees with crypto.keys when the parameters are in bounds.
    assert keys.open_key_file(key_file_raw(secret, pw, 1, 8 * MIB, b"x"), pw) == analyst
    out: list[dict[str, object]] = []
    for name, description, data, passphrase in cases:
        ok = name.startswith("success")
        try:
            opened: object = keys.open_key_file(data, passphrase)
        except keys.KeyFileError:
            opened = None
        assert (opened == analyst) == ok, name
        vector: dict[str, object] = {
            "name": name,
            "description": description,
            "expect": "success" if ok else "failure",
            "passphrase": passphrase,
            "key_file": data.hex(),
        }
        if ok:
            vector.update(
                encryption_sk=esk.hex(),
                signing_seed=seed.hex(),
                encryption_pk=public.encryption.hex(),
                verify_pk=public.verify.hex(),
                line=public.to_line(),
                fingerprint=public.fingerprint(),
            )
        else:
            vector.update(
                encryption_sk=None,
                signing_seed=None,
                encryption_pk=None,
                verify_pk=None,
                line=None,
                fingerprint=None,
            )
        out.append(vector)
    return out


def manifest_vectors() -> list[dict[str, object]]:
    from nacl.signing import SigningKey

    from crypto import manifest

    server_seed = bytes(range(0x40, 0x60))  # docs/keys.md's server key
    analyst_seed = bytes(range(0x20, 0x40))
    stranger_seed = hashlib.sha256(b"blagh test stranger").digest()
    server = SigningKey(server_seed)
    analyst = SigningKey(analyst_seed)
    stranger = SigningKey(stranger_seed)
    server_pk = bytes(server.verify_key)
    analyst_pk = bytes(analyst.verify_key)

    def signed(key: SigningKey, body: bytes, *, signer: bytes | None = None) -> bytes:
        public = bytes(key.verify_key) if signer is None else signer
        signature = key.sign(manifest.DOMAIN + bytes(key.verify_key) + body).signature
        return manifest.MAGIC + bytes([manifest.VERSION]) + public + signature + body

    def nest(levels: int) -> dict[str, object]:
        value: dict[str, object] = {}
        for _ in range(levels):
            value = {"n": value}
        return value

    simple = {
        "bundle": "pickup",
        "created": "2025-01-01",
        "sequence": 1,
        "items": [
            {"name": "0001.env", "sha256": manifest.sha256_hex(b"one"), "size": 3},
            {"name": "0002.env", "sha256": manifest.sha256_hex(b"two"), "size": 3},
        ],
    }
    tricky = {
        "strings": [
            "é",
            "😀",
            "\u0000\u0001\u001f",
            "\n\r\t\b\f",
            '"\\/',
            "\u007f",
            "\u2028\u2029",
            "\ufeff",
            "\u00a0",
        ],
        "\uffff": "U+FFFF sorts before U+1F600 by code point, after it by UTF-16 unit",
        "😀": 1,
        "\ue000": 2,
        "B": 3,
        "a": 4,
        "": "the empty key sorts first",
        "ints": [0, -1, 2**53 - 1, -(2**53 - 1)],
        "others": [True, False, None, {}, []],
    }
    body_simple = manifest.canonical_json(simple)
    good = signed(server, body_simple)
    cases: list[tuple[str, str, bytes, list[bytes], object]] = [
        (
            "success_simple",
            "a pickup manifest signed by docs/keys.md's server key",
            good,
            [server_pk],
            simple,
        ),
        (
            "success_tricky_strings_and_keys",
            "escapes, non-ASCII, code point key order (U+E000 < U+FFFF < U+1F600), safe-integer "
            "bounds, literals, empty containers; signed by the analyst key, two keys trusted",
            signed(analyst, manifest.canonical_json(tricky)),
            [server_pk, analyst_pk],
            tricky,
        ),
        ("success_empty_object", "the manifest {}", signed(server, b"{}"), [server_pk], {}),
        (
            "success_nested_max",
            "the deepest nesting crypto/manifest.py accepts: the top object "
            "and 64 nested objects inside it",
            signed(server, manifest.canonical_json(nest(64))),
            [server_pk],
            nest(64),
        ),
    ]

    def bad(name: str, description: str, blob: bytes, trusted: list[bytes] | None = None) -> None:
        cases.append((f"failure_{name}", description, blob, trusted or [server_pk], None))

    bad(
        "untrusted_signer",
        "validly signed by a key not in the trusted set",
        signed(stranger, body_simple),
    )
    bad(
        "signer_swapped",
        "signer_pk replaced by another trusted key",
        signed(server, body_simple, signer=analyst_pk),
        [server_pk, analyst_pk],
    )
    bad("signature_bitflip", "a bit flipped in the signature", flip(good, 60))
    bad("body_bitflip", "a bit flipped in the body", flip(good, 120))
    bad("magic", "a bit flipped in the magic", flip(good, 0))
    bad("version_2", "version byte 2", good[:8] + b"\x02" + good[9:])
    bad("too_short", "104 bytes", good[:104])
    bad("empty_body", "a valid signature over an empty body", signed(server, b""))
    for name, description, body in [
        ("whitespace", "a space after a colon", b'{"a": 1}'),
        ("unsorted_keys", "keys out of order", b'{"b":1,"a":2}'),
        ("duplicate_key", "the same key twice", b'{"a":1,"a":1}'),
        ("float", "a float, 1.0", b'{"a":1.0}'),
        ("exponent", "an integer written 1e2", b'{"a":1e2}'),
        ("big_int", "2**53, one past the safe range", b'{"a":9007199254740992}'),
        ("negative_zero", "-0", b'{"a":-0}'),
        ("escaped_ascii", "\\u0041 for A", b'{"a":"\\u0041"}'),
        ("escaped_non_ascii", "\\u00e9 for é", b'{"a":"\\u00e9"}'),
        ("escaped_slash", "\\/ for /", b'{"a":"\\/"}'),
        ("uppercase_hex_escape", "\\u001F instead of \\u001f", b'{"a":"\\u001F"}'),
        ("long_escape_for_newline", "\\u000a instead of \\n", b'{"a":"\\u000a"}'),
        ("lone_surrogate", "a lone surrogate, \\ud800", b'{"a":"\\ud800"}'),
        ("invalid_utf8", "a 0xff byte in a string", b'{"a":"\xff"}'),
        ("bom", "a UTF-8 byte order mark before the object", b"\xef\xbb\xbf{}"),
        ("top_level_array", "an array, not an object", b"[]"),
        ("top_level_string", "a string, not an object", b'"a"'),
        ("trailing_newline", "a newline after the object", b"{}\n"),
        ("trailing_garbage", "a second object after the first", b"{}{}"),
        (
            "nested_too_deep",
            "one level deeper than success_nested_max",
            json.dumps(nest(65), separators=(",", ":")).encode(),
        ),
        ("raw_control", "a raw tab inside a string", b'{"a":"\t"}'),
    ]:
        bad(
            f"noncanonical_{name}",
            f"validly signed, not canonical: {description}",
            signed(server, body),
        )
    out: list[dict[str, object]] = []
    for name, description, blob, trusted, content in cases:
        ok = name.startswith("success")
        try:
            verified: manifest.VerifiedManifest | None = manifest.verify_manifest(blob, trusted)
        except manifest.BadSignature:
            verified = None
        assert (verified is not None) == ok, name
        if verified is not None:
            assert verified.manifest == content, name
        out.append(
            {
                "name": name,
                "description": description,
                "expect": "success" if ok else "failure",
                "trusted": [k.hex() for k in trusted],
                "signed": base64.b64encode(blob).decode("ascii"),
                "manifest": content if ok else None,
                "signer": verified.signer.hex() if verified is not None else None,
            }
        )
    return out


def write_key_vectors() -> None:
    write_json_vectors("codename", codename_vectors())
    write_json_vectors("keyfile", key_file_vectors())
    write_json_vectors("manifest", manifest_vectors())


def main() -> None:
    vectors = success_vectors() + failure_vectors()
    names = [x.name for x in vectors]
    assert len(set(names)) == len(names)
    # Every vector must do what it says with the reference implementation before it is written.
    for x in vectors:
        try:
            opened: bytes | None = envelope.open_envelope(x.envelope, x.identities)
        except DecryptionError:
            opened = None
        assert opened == x.plaintext, x.name
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.json"):
        stale.unlink()
    total = 0
    for x in vectors:
        text = json.dumps(x.to_json(), indent=2) + "\n"
        (OUT / f"{x.name}.json").write_text(text, encoding="utf-8")
        total += len(text)
    print(f"wrote {len(vectors)} envelope vectors to {OUT.relative_to(ROOT)} ({total:,} bytes)")
    write_key_vectors()


if __name__ == "__main__":
    main()
