"""Bare libsodium, with no format around it: the limit ``make bench`` measures the envelope against.

Nothing in Blagh seals or derives with these; they exist so that the benchmark, like every other
caller, reaches libsodium through this package only.
"""

from collections.abc import Callable, Iterable

from nacl import bindings as sodium

STREAM_OVERHEAD: int = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
ARGON2_SALT_BYTES: int = sodium.crypto_pwhash_SALTBYTES
SENSITIVE_OPSLIMIT: int = sodium.crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE
SENSITIVE_MEMLIMIT: int = sodium.crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE
"""PyNaCl's default argon2id limits (1 GiB), the reference point for our own costs."""

_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def stream_key() -> bytes:
    key: bytes = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    return key


def stream_seal(key: bytes, chunks: Iterable[bytes], sink: Callable[[bytes], object]) -> bytes:
    """Push every chunk (the last one tagged FINAL) to ``sink``; return the stream header."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    push = sodium.crypto_secretstream_xchacha20poly1305_push
    previous: bytes | None = None
    for chunk in chunks:
        if previous is not None:
            sink(push(state, previous, None, _TAG_MESSAGE))
        previous = chunk
    sink(push(state, previous or b"", None, _TAG_FINAL))
    return header


def stream_open(key: bytes, header: bytes, sealed_chunks: Iterable[bytes]) -> None:
    """Pull every sealed chunk; raise ValueError unless the stream ends with its FINAL chunk."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    pull = sodium.crypto_secretstream_xchacha20poly1305_pull
    tag = None
    for chunk in sealed_chunks:
        _, tag = pull(state, chunk, None)
    if tag != _TAG_FINAL:
        raise ValueError("the raw stream did not end with its FINAL chunk")


def argon2id(size: int, password: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    """One bare argon2id derivation with explicit limits."""
    output: bytes = sodium.crypto_pwhash_alg(
        size, password, salt, opslimit, memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13
    )
    return output
