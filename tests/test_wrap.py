"""Split secrets: wrapping round-trips, and any wrong key or altered byte is refused."""

import pytest

from crypto import wrap
from crypto.errors import DecryptionError


def test_round_trip_and_refusals():
    key, secret = wrap.new_key(), b"s" * 32
    wrapped = wrap.wrap(key, secret)
    assert wrap.unwrap(key, wrapped) == secret
    assert secret not in wrapped
    with pytest.raises(DecryptionError):
        wrap.unwrap(wrap.new_key(), wrapped)
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 1
        with pytest.raises(DecryptionError):
            wrap.unwrap(key, bytes(tampered))
    with pytest.raises(DecryptionError):
        wrap.unwrap(key, wrapped[:20])
