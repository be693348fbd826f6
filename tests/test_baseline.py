"""The benchmark's raw-libsodium limit really seals and opens, and notices a missing end."""

import os

import pytest

from crypto import baseline


def test_raw_stream_round_trip_and_truncation():
    key = baseline.stream_key()
    sealed: list[bytes] = []
    header = baseline.stream_seal(key, [os.urandom(1000), os.urandom(10)], sealed.append)
    assert [len(c) for c in sealed] == [1000 + baseline.STREAM_OVERHEAD, 10 + 17]
    baseline.stream_open(key, header, sealed)
    with pytest.raises(ValueError):
        baseline.stream_open(key, header, sealed[:1])


def test_argon2id_is_deterministic_for_given_limits():
    salt = bytes(baseline.ARGON2_SALT_BYTES)
    first = baseline.argon2id(32, b"pw", salt, 1, 8 * 1024 * 1024)
    assert first == baseline.argon2id(32, b"pw", salt, 1, 8 * 1024 * 1024)
    assert first != baseline.argon2id(32, b"pw2", salt, 1, 8 * 1024 * 1024)
