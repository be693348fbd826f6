"""The envelope round-trips at every size and refuses every kind of tampering alike."""

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import envelope
from crypto.errors import CryptoError, DecryptionError, InvalidPublicKey, InvalidRecipients
from crypto.padding import MIN_PADDED, padded_length, padme

C = envelope.CHUNK_SIZE
SEALED = envelope.SEALED_CHUNK_SIZE
BOUNDARY_SIZES = [0, 1, 511, 512, C - 1, C, C + 1, 2 * C, 3 * C - 7, 5 * 1024 * 1024 + 3]


@pytest.fixture(scope="module")
def keys() -> list[tuple[bytes, bytes]]:
    return [envelope.generate_keypair() for _ in range(envelope.MAX_RECIPIENTS)]


def _payload(size: int) -> bytes:
    return os.urandom(size)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_round_trip_at_chunk_boundaries(keys, size):
    data = _payload(size)
    sealed = envelope.seal(data, [keys[0][1], keys[1][1]])
    assert len(sealed) == envelope.sealed_size(size, 2)
    assert envelope.open_envelope(sealed, [keys[1][0]]) == data
    assert envelope.open_envelope(sealed, [keys[0][0]]) == data


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from(BOUNDARY_SIZES[:-1]) | st.integers(0, 4 * C),
    recipients=st.integers(1, envelope.MAX_RECIPIENTS),
    write_piece=st.integers(1, 3 * C),
    read_piece=st.integers(1, 3 * C),
    data=st.data(),
)
def test_streaming_round_trip_any_split(keys, size, recipients, write_piece, read_piece, data):
    plaintext = _payload(size)
    chosen = data.draw(st.integers(0, recipients - 1))
    out: list[bytes] = []
    writer = envelope.EnvelopeWriter([pk for _, pk in keys[:recipients]], out.append)
    for i in range(0, size, write_piece):
        writer.update(plaintext[i : i + write_piece])
    writer.finish()
    sealed = b"".join(out)
    assert len(sealed) == envelope.sealed_size(size, recipients)
    pieces = [sealed[i : i + read_piece] for i in range(0, len(sealed), read_piece)]
    assert b"".join(envelope.open_stream(pieces, [keys[chosen][0]])) == plaintext


def test_opening_tries_every_identity(keys):
    sealed = envelope.seal(b"report", [keys[5][1]])
    old_and_new = [keys[0][0], keys[5][0]]
    assert envelope.open_envelope(sealed, old_and_new) == b"report"


def test_ciphertext_size_depends_only_on_padded_length(keys):
    pk = [keys[0][1]]
    assert len(envelope.seal(b"", pk)) == len(envelope.seal(b"x" * 511, pk))
    assert len(envelope.seal(b"x" * 1000, pk)) == len(envelope.seal(b"x" * 1020, pk))
    assert len(envelope.seal(b"x" * 1000, pk)) != len(envelope.seal(b"x" * 1030, pk))


def test_padme_overhead_is_bounded():
    for n in [1, 2, 7, 9, 100, 1000, 4097, 10**6, 2**28 + 1, 2 * 10**9]:
        p = padme(n)
        assert n <= p <= n * 1.12 + 1
    assert padded_length(0) == MIN_PADDED
    assert padded_length(MIN_PADDED) == padme(MIN_PADDED + 1)


def test_two_envelopes_of_the_same_data_differ(keys):
    pk = [keys[0][1]]
    assert envelope.seal(b"same", pk) != envelope.seal(b"same", pk)


@pytest.mark.parametrize(
    "recipients",
    [[], [b"\x01" * 32] * 2, [b"short"], [bytes([i]) * 32 for i in range(33)]],
    ids=["none", "duplicate", "short-key", "too-many"],
)
def test_bad_recipient_lists_are_refused(recipients):
    with pytest.raises(InvalidRecipients):
        envelope.seal(b"x", recipients)


_P = 2**255 - 19
LOW_ORDER = {
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order 8 (a)": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
    ),
    "order 8 (b)": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "p - 1": (_P - 1).to_bytes(32, "little"),
    "p": _P.to_bytes(32, "little"),
    "p + 1": (_P + 1).to_bytes(32, "little"),
}


@pytest.mark.parametrize("point", list(LOW_ORDER))
def test_sealing_to_a_low_order_key_is_the_packages_own_error(keys, point):
    """libsodium refuses these; PyNaCl said so with its RuntimeError, which nothing above
    the crypto package expects."""
    with pytest.raises(InvalidRecipients):
        envelope.seal(b"x", [keys[0][1], LOW_ORDER[point]])
    with pytest.raises(InvalidPublicKey):
        envelope.check_public_key(LOW_ORDER[point])


@pytest.mark.parametrize(
    "key",
    [b"", bytes(31), bytes(33), "0" * 32, (2**255 - 1).to_bytes(32, "little")],
    ids=["empty", "short", "long", "not bytes", "not canonical"],
)
def test_malformed_public_keys_are_refused(key):
    with pytest.raises(InvalidPublicKey):
        envelope.check_public_key(key)


def test_generated_public_keys_pass_the_check(keys):
    for _secret, public in keys:
        envelope.check_public_key(public)  # raises nothing


# --- Tampering: every case raises the same opaque DecryptionError. ---------------------------


@pytest.fixture(scope="module")
def multi_chunk(keys):
    """An envelope of 5 data chunks and a final boundary chunk, for two recipients."""
    data = _payload(5 * C + 100)
    sealed = envelope.seal(data, [keys[0][1], keys[1][1]])
    return data, sealed, envelope.header_size(2)


def _chunks(sealed: bytes, header: int) -> tuple[bytes, list[bytes]]:
    body = sealed[header:]
    return sealed[:header], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _assert_refused(sealed: bytes, identity: bytes) -> None:
    with pytest.raises(DecryptionError) as caught:
        envelope.open_envelope(sealed, [identity])
    assert str(caught.value) == "the envelope could not be opened"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


def test_wrong_key(keys, multi_chunk):
    _, sealed, _ = multi_chunk
    _assert_refused(sealed, keys[2][0])


def test_every_header_byte_flip_is_refused(keys, multi_chunk):
    _, sealed, header = multi_chunk
    for i in range(header):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        _assert_refused(bytes(tampered), keys[0][0])


def test_chunk_byte_flips_are_refused(keys, multi_chunk):
    _, sealed, header = multi_chunk
    for i in [*range(header, len(sealed), 997), len(sealed) - 1]:
        tampered = bytearray(sealed)
        tampered[i] ^= 0x80
        _assert_refused(bytes(tampered), keys[0][0])


def test_every_truncation_point_is_refused(keys, multi_chunk):
    _, sealed, header = multi_chunk
    cuts = [0, 5, 9, header - 1, header, header + 1]
    cuts += [header + k * SEALED + d for k in range(1, 5) for d in (-1, 0, 1)]
    cuts += [len(sealed) - 1]
    for cut in cuts:
        if cut < len(sealed):
            _assert_refused(sealed[:cut], keys[0][0])


def test_reordered_repeated_and_dropped_chunks_are_refused(keys, multi_chunk):
    _, sealed, header = multi_chunk
    head, chunks = _chunks(sealed, header)
    assert len(chunks) >= 5
    variants = {
        "swap": [chunks[1], chunks[0], *chunks[2:]],
        "repeat": [chunks[0], chunks[0], *chunks[1:]],
        "drop": [chunks[0], *chunks[2:]],
        "drop-final": chunks[:-1],
    }
    for tampered in variants.values():
        _assert_refused(head + b"".join(tampered), keys[0][0])


def test_padding_chunks_cannot_be_dropped_swapped_or_altered(keys):
    """Padding spans whole chunks only above 4 MiB: check those chunks are authenticated too."""
    data = _payload(4 * 2**20 + 100)
    sealed = envelope.seal(data, [keys[0][1]])
    head, chunks = _chunks(sealed, envelope.header_size(1))
    boundary = (len(data)) // C
    assert len(chunks) == boundary + 2, "expected a boundary chunk then one padding chunk"
    assert envelope.open_envelope(sealed, [keys[0][0]]) == data
    flipped = bytearray(chunks[-1])
    flipped[3] ^= 1
    for tampered in (
        chunks[:-1],
        [*chunks[:boundary], chunks[-1], chunks[boundary]],
        [*chunks[:-1], bytes(flipped)],
        [*chunks, chunks[-1]],
    ):
        _assert_refused(head + b"".join(tampered), keys[0][0])


def test_bytes_after_final_are_refused(keys, multi_chunk):
    _, sealed, _ = multi_chunk
    _assert_refused(sealed + b"\x00", keys[0][0])
    _assert_refused(sealed + sealed, keys[0][0])


def test_unknown_version_and_recipient_counts_are_refused(keys):
    sealed = envelope.seal(b"x", [keys[0][1]])
    for offset, value in [(8, 2), (8, 0), (9, 0), (9, 33)]:
        tampered = bytearray(sealed)
        tampered[offset] = value
        tampered += bytes(40 * 80)
        _assert_refused(bytes(tampered), keys[0][0])


def test_header_from_another_envelope_is_refused(keys):
    a = envelope.seal(b"a" * 10, [keys[0][1]])
    b = envelope.seal(b"b" * 10, [keys[0][1]])
    header = envelope.header_size(1)
    _assert_refused(a[:header] + b[header:], keys[0][0])


def test_a_failed_reader_stays_failed(keys):
    sealed = envelope.seal(b"x" * (2 * C), [keys[0][1]])
    reader = envelope.EnvelopeReader([keys[1][0]])
    with pytest.raises(DecryptionError):
        reader.update(sealed)
    with pytest.raises(DecryptionError):
        reader.update(b"")
    with pytest.raises(DecryptionError):
        reader.finish()


def test_decryption_error_is_a_crypto_error():
    assert issubclass(DecryptionError, CryptoError)


@pytest.mark.slow
def test_memory_stays_flat_for_a_200_mb_envelope(tmp_path):
    """Seal 200 MB from a generator to a file, then open it from the file, in a child process.

    The child's peak resident memory must stay far below the payload size: neither direction
    may hold the whole payload, plaintext or ciphertext.
    """
    script = textwrap.dedent(
        """
        import hashlib, os, sys
        from crypto import envelope
        path = sys.argv[1]
        sk, pk = envelope.generate_keypair()
        piece = os.urandom(1 << 20)
        sent = hashlib.sha256()
        with open(path, "wb") as f:
            writer = envelope.EnvelopeWriter([pk], f.write)
            for i in range(200):
                block = piece[i:] + piece[:i]
                sent.update(block)
                writer.update(block)
            writer.finish()
        got = hashlib.sha256()
        reader = envelope.EnvelopeReader([sk])
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                got.update(reader.update(block))
        got.update(reader.finish())
        assert got.digest() == sent.digest()
        # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        print(int(hwm.split()[1]) // 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big.env")],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mib = int(result.stdout.strip())
    assert os.path.getsize(tmp_path / "big.env") > 200 * 2**20
    assert peak_mib < 80, f"peak RSS {peak_mib} MiB while streaming a 200 MB envelope"
