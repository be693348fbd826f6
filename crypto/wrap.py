"""Wrapping a small secret under a random key: the server-side half of a split secret.

The source interface keeps a logged-in source's secret key split in two: the browser's cookie
holds a random wrapping key, the store holds the secret wrapped under it.  Neither half alone
reveals the secret, and the store's half is useless once the cookie is gone.
"""

from nacl import bindings as sodium
from nacl.utils import random as random_bytes

from crypto.errors import DecryptionError

KEY_SIZE = sodium.crypto_secretbox_KEYBYTES
NONCE_SIZE = sodium.crypto_secretbox_NONCEBYTES


def new_key() -> bytes:
    """A fresh 32-byte wrapping key."""
    key: bytes = random_bytes(KEY_SIZE)
    return key


def wrap(key: bytes, secret: bytes) -> bytes:
    """``nonce || crypto_secretbox(secret)`` under ``key``."""
    if len(key) != KEY_SIZE:
        raise ValueError("a wrapping key is 32 bytes")
    nonce: bytes = random_bytes(NONCE_SIZE)
    boxed: bytes = sodium.crypto_secretbox(secret, nonce, key)
    return nonce + boxed


def unwrap(key: bytes, wrapped: bytes) -> bytes:
    """The secret inside ``wrapped``; :class:`DecryptionError` for a wrong key or damage."""
    if len(key) != KEY_SIZE or len(wrapped) < NONCE_SIZE + sodium.crypto_secretbox_MACBYTES:
        raise DecryptionError()
    try:
        secret: bytes = sodium.crypto_secretbox_open(
            wrapped[NONCE_SIZE:], wrapped[:NONCE_SIZE], key
        )
    except Exception:
        raise DecryptionError() from None
    return secret
