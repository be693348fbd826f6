"""Codenames: the only thing a source keeps, and everything the source's keys come from.

A codename is seven words drawn uniformly from the EFF large list less the words distressing to
read in this setting (7,516 words, about 90.1 bits; docs/keys.md).  The
server never stores it: ``argon2id(codename, instance salt)`` gives the source an X25519 key pair
(replies are sealed to its public half) and a login secret, of which the server keeps only a
keyed hash.  The browser (libsodium.js) and the server (PyNaCl) must reach the same bytes from the
same words, so normalisation and derivation are fixed here and specified in docs/keys.md.

The word list is passed in rather than loaded: reading it is I/O, which this package never does.
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings

from crypto.errors import InvalidCodename

WORD_COUNT = 7
"""Words in a codename: 7 x log2(7516) is about 90.1 bits."""

WORDLIST_SIZE = 7776
"""Size of the EFF large word list (6^5, five dice per word)."""

MIN_WORDLIST_SIZE = 7000
"""Fewest words a codename may be drawn from: 7 x log2(7000) is about 89.4 bits.

The deployed list is the EFF list less a deny-list; this floor keeps a careless deny-list from
quietly weakening every codename."""

MAX_INPUT_CHARS = 256
"""Longest codename input accepted, in code points, checked before normalising or deriving.

NFKC can expand a string many times over and argon2id is costly: capping the raw input first
keeps a hostile form post from buying more work than an honest login.  Seven of the longest EFF
words with single spaces take 69 characters, so the cap leaves ample room for stray whitespace.
"""

OPSLIMIT = 3
"""argon2id passes for codename derivation."""

MEMLIMIT = 64 * 1024 * 1024
"""argon2id memory for codename derivation: 64 MiB.

The no-JavaScript login runs this on the server for every attempt, so it must stay well under a
second and bounded in memory; the codename's 90 bits, not the cost, are what resist guessing.
Passed explicitly because PyNaCl's defaults are the 1 GiB "sensitive" limits.
"""

SALT_BYTES = 16
LOGIN_SECRET_BYTES = 32
HASH_KEY_BYTES = 32
VERIFIER_BYTES = 32

_SEED_BYTES = 32
_LOGIN_PERSON = b"blagh-login-v1\x00\x00"
"""BLAKE2b personalisation for login verifiers: domain separation, exactly 16 bytes."""


@dataclass(frozen=True)
class SourceKeys:
    """What a codename derives to: the source's X25519 pair and its login secret.

    The secret halves are left out of ``repr`` so a stray log line or traceback cannot leak them.
    """

    secret_key: bytes = field(repr=False)
    public_key: bytes
    login_secret: bytes = field(repr=False)


def generate(wordlist: Sequence[str]) -> str:
    """Return a fresh codename: ``WORD_COUNT`` words drawn uniformly, joined by single spaces.

    The list is checked because a short, repeated or badly formed list would silently weaken or
    break every codename; such a list is a programming error, hence ``ValueError``.
    """
    _check_wordlist(wordlist)
    return " ".join(wordlist[secrets.randbelow(len(wordlist))] for _ in range(WORD_COUNT))


def normalise(text: str) -> str:
    """Return a typed codename's canonical form, so any way of writing it derives the same keys.

    Sources retype codenames on phones, with autocapitalisation, doubled spaces and line breaks,
    or full-width keyboards: NFKC, case folding and whitespace collapsing absorb all of that.
    Raises :class:`InvalidCodename` if the input is too long or not exactly ``WORD_COUNT`` words.
    List membership is not checked here; see :func:`check_words`.
    """
    words = _words(text)
    if len(words) != WORD_COUNT:
        raise InvalidCodename(f"a codename is {WORD_COUNT} words separated by spaces")
    return " ".join(words)


def check_words(text: str, wordlist: Sequence[str]) -> list[str]:
    """Return the words of ``text`` (normalised) that are not in ``wordlist``, in order.

    For a friendly message ("'abacuss' is not a codename word") before spending a derivation.
    The word count is deliberately not checked, so a form can report both problems at once; the
    length cap is, and raises :class:`InvalidCodename`.
    """
    known = frozenset(wordlist)
    return [word for word in _words(text) if word not in known]


def derive(codename: str, instance_salt: bytes) -> SourceKeys:
    """Derive a source's keys from its codename and this instance's 16-byte salt.

    One argon2id output of 64 bytes: the first 32 seed the X25519 pair, the last 32 are the login
    secret.  The instance salt makes a precomputed table for one deployment useless for another.
    Raises :class:`InvalidCodename` for a malformed codename and ``ValueError`` for a bad salt.
    """
    if len(instance_salt) != SALT_BYTES:
        raise ValueError(f"the instance salt must be {SALT_BYTES} bytes")
    password = normalise(codename).encode("utf-8")
    output: bytes = nacl.bindings.crypto_pwhash_alg(
        _SEED_BYTES + LOGIN_SECRET_BYTES,
        password,
        instance_salt,
        OPSLIMIT,
        MEMLIMIT,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    public_key, secret_key = nacl.bindings.crypto_box_seed_keypair(output[:_SEED_BYTES])
    return SourceKeys(
        secret_key=bytes(secret_key),
        public_key=bytes(public_key),
        login_secret=output[_SEED_BYTES:],
    )


def login_verifier(login_secret: bytes, hash_key: bytes) -> bytes:
    """Return the 32-byte value the server stores in place of a login secret.

    Keyed BLAKE2b-256 (the key lives outside the database), so a stolen database alone does not
    even allow checking a guessed codename; the login secret is already argon2id output, so no
    further stretching is needed.
    """
    if len(login_secret) != LOGIN_SECRET_BYTES:
        raise ValueError(f"a login secret is {LOGIN_SECRET_BYTES} bytes")
    if len(hash_key) != HASH_KEY_BYTES:
        raise ValueError(f"the login hash key must be {HASH_KEY_BYTES} bytes")
    digest: bytes = nacl.bindings.crypto_generichash_blake2b_salt_personal(
        login_secret, digest_size=VERIFIER_BYTES, key=hash_key, person=_LOGIN_PERSON
    )
    return digest


def verifiers_equal(a: bytes, b: bytes) -> bool:
    """Compare two verifiers in constant time, so timing reveals nothing about the stored one."""
    return hmac.compare_digest(a, b)


def _words(text: str) -> list[str]:
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidCodename(f"a codename is at most {MAX_INPUT_CHARS} characters")
    return _fold(text).split()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _check_wordlist(wordlist: Sequence[str]) -> None:
    if len(wordlist) < MIN_WORDLIST_SIZE:
        raise ValueError(f"the codename word list must have at least {MIN_WORDLIST_SIZE} words")
    if len(set(wordlist)) != len(wordlist):
        raise ValueError("the codename word list has repeated words")
    for word in wordlist:
        if _fold(word).split() != [word]:
            raise ValueError("every codename word must be one normalised word")
