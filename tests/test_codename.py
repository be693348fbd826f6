"""Codenames: generation, normalisation, derivation and login verifiers, with real argon2id."""

from __future__ import annotations

import hashlib
import importlib.resources
import time
from collections.abc import Callable

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import codename
from crypto.errors import CryptoError, InvalidCodename

SALT = bytes(range(16))
OTHER_SALT = bytes(range(16, 32))
WORDS = "abacus abdomen abide abiding ability ablaze able"


@pytest.fixture(scope="module")
def wordlist() -> list[str]:
    text = (importlib.resources.files("xkcdpass") / "static" / "eff-long").read_text("utf-8")
    words = text.split()
    assert len(words) == 7776
    assert len(set(words)) == 7776
    return words


@pytest.fixture(scope="module")
def derived() -> codename.SourceKeys:
    return codename.derive(WORDS, SALT)


# generate


def test_generate_draws_seven_list_words(wordlist: list[str]) -> None:
    phrase = codename.generate(wordlist)
    words = phrase.split(" ")
    assert len(words) == codename.WORD_COUNT == 7
    assert all(word in wordlist for word in words)
    assert codename.normalise(phrase) == phrase
    assert codename.check_words(phrase, wordlist) == []


def test_generate_is_random(wordlist: list[str]) -> None:
    assert len({codename.generate(wordlist) for _ in range(20)}) == 20


def test_generate_keeps_hyphenated_words_whole(wordlist: list[str]) -> None:
    assert "t-shirt" in wordlist
    assert codename.normalise("T-Shirt yo-yo drop-down felt-tip a b c").split()[:4] == [
        "t-shirt",
        "yo-yo",
        "drop-down",
        "felt-tip",
    ]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda words: words[: codename.MIN_WORDLIST_SIZE - 1],
        lambda words: [*words[:-1], words[0]],
        lambda words: [*words[:-1], "two words"],
        lambda words: [*words[:-1], "Capital"],
        lambda words: [*words[:-1], ""],
    ],
    ids=["too-few", "repeated", "space", "not-normalised", "empty"],
)
def test_generate_rejects_a_bad_wordlist(
    wordlist: list[str], mangle: Callable[[list[str]], list[str]]
) -> None:
    with pytest.raises(ValueError):
        codename.generate(mangle(list(wordlist)))


# normalise


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) - 0x20 + 0xFF00) if "!" <= ch <= "~" else ch for ch in text)


@pytest.mark.parametrize(
    "typed",
    [
        WORDS,
        WORDS.upper(),
        "Abacus Abdomen Abide Abiding Ability Ablaze Able",
        "  abacus   abdomen abide\tabiding\nability\r\nablaze able  ",
        "abacus\u00a0abdomen\u3000abide\u2003abiding ability ablaze able",
        _fullwidth("abacus ABDOMEN") + " abide abiding ability ablaze able",
        "\u1d2c\u1d2e\u1d2c\u1d9c\u1d41\u02e2 abdomen abide abiding ability ablaze able",
    ],
    ids=["plain", "upper", "title", "spacing", "unicode-spaces", "full-width", "modifier-letters"],
)
def test_normalise_absorbs_how_it_was_typed(typed: str) -> None:
    assert codename.normalise(typed) == WORDS


def test_normalise_applies_compatibility_forms() -> None:
    assert codename.normalise("\ufb01sh \ufb02ag \u2460 b c d e") == "fish flag 1 b c d e"


@pytest.mark.parametrize(
    "typed",
    ["", "   \n", "abacus abdomen abide abiding ability ablaze", WORDS + " able", "abacus-abdomen"],
    ids=["empty", "blank", "six", "eight", "one"],
)
def test_normalise_wants_exactly_seven_words(typed: str) -> None:
    with pytest.raises(InvalidCodename):
        codename.normalise(typed)


def test_length_is_capped_on_the_raw_input() -> None:
    at_cap = WORDS + " " * (codename.MAX_INPUT_CHARS - len(WORDS))
    assert len(at_cap) == codename.MAX_INPUT_CHARS == 256
    assert codename.normalise(at_cap) == WORDS
    # One more whitespace character would normalise away, but the cap comes first.
    with pytest.raises(InvalidCodename):
        codename.normalise(at_cap + " ")


_SEPARATORS = st.text(alphabet=" \t\n\r\u00a0\u2002\u3000", min_size=1, max_size=3)


@given(data=st.data())
def test_normalise_property(wordlist: list[str], data: st.DataObject) -> None:
    words = data.draw(st.lists(st.sampled_from(wordlist), min_size=7, max_size=7))
    typed = data.draw(_SEPARATORS | st.just(""))
    for word in words:
        style = data.draw(st.sampled_from([str.upper, str.title, str.lower, _fullwidth]))
        typed += style(word) + data.draw(_SEPARATORS)
    expected = " ".join(words)
    assert codename.normalise(typed) == expected
    assert codename.normalise(expected) == expected
    assert codename.check_words(typed, wordlist) == []


@given(text=st.text(max_size=300))
def test_normalise_fails_only_with_invalid_codename(text: str) -> None:
    try:
        result = codename.normalise(text)
    except InvalidCodename:
        return
    assert len(result.split(" ")) == 7


# check_words


def test_check_words_lists_unknown_words_in_order(wordlist: list[str]) -> None:
    assert codename.check_words(
        "Abacuss abdomen abide xylophonez ability ablaze able", wordlist
    ) == [
        "abacuss",
        "xylophonez",
    ]


def test_check_words_does_not_count_but_does_cap(wordlist: list[str]) -> None:
    assert codename.check_words("abacus nope", wordlist) == ["nope"]
    assert codename.check_words("", wordlist) == []
    with pytest.raises(InvalidCodename):
        codename.check_words("a" * 257, wordlist)


# derive


def test_derive_gives_a_working_x25519_pair_and_login_secret(derived: codename.SourceKeys) -> None:
    assert len(derived.secret_key) == len(derived.public_key) == 32
    assert len(derived.login_secret) == 32
    assert nacl.bindings.crypto_scalarmult_base(derived.secret_key) == derived.public_key
    assert derived.login_secret not in (derived.secret_key, derived.public_key)


def test_derive_matches_argon2id_split_as_specified(derived: codename.SourceKeys) -> None:
    output = nacl.bindings.crypto_pwhash_alg(
        64,
        WORDS.encode(),
        SALT,
        3,
        64 * 1024 * 1024,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    public, secret = nacl.bindings.crypto_box_seed_keypair(output[:32])
    assert (derived.public_key, derived.secret_key) == (public, secret)
    assert derived.login_secret == output[32:]


def test_derive_known_answer(derived: codename.SourceKeys) -> None:
    # Pinned (and published in docs/keys.md) so a change to normalisation or parameters cannot
    # pass unnoticed, and so the browser's libsodium.js derivation can be checked against it.
    assert derived.secret_key.hex() == KAT_SECRET
    assert derived.public_key.hex() == KAT_PUBLIC
    assert derived.login_secret.hex() == KAT_LOGIN_SECRET
    verifier = codename.login_verifier(derived.login_secret, bytes(range(100, 132)))
    assert verifier.hex() == KAT_VERIFIER


def test_same_codename_written_differently_gives_identical_keys(
    derived: codename.SourceKeys,
) -> None:
    for typed in (
        "ABACUS abdomen\tabide  abiding\nability ablaze " + _fullwidth("ABLE"),
        f"  {WORDS.title()}  ",
    ):
        assert codename.derive(typed, SALT) == derived


def test_different_salt_gives_different_keys(derived: codename.SourceKeys) -> None:
    other = codename.derive(WORDS, OTHER_SALT)
    assert other.public_key != derived.public_key
    assert other.secret_key != derived.secret_key
    assert other.login_secret != derived.login_secret


def test_different_codename_gives_different_keys(derived: codename.SourceKeys) -> None:
    other = codename.derive(WORDS.replace("able", "ablaze"), SALT)
    assert other.public_key != derived.public_key
    assert other.login_secret != derived.login_secret


def test_over_long_input_is_refused_before_any_derivation() -> None:
    start = time.perf_counter()
    codename.derive(WORDS, SALT)
    one_derivation = time.perf_counter() - start

    # Seven valid words buried in whitespace: only the cap can reject this.
    huge = WORDS + " " * 10_000
    start = time.perf_counter()
    with pytest.raises(InvalidCodename):
        codename.derive(huge, SALT)
    assert time.perf_counter() - start < one_derivation / 10


@pytest.mark.parametrize("salt", [b"", bytes(15), bytes(17), bytes(32)])
def test_derive_wants_a_16_byte_salt(salt: bytes) -> None:
    with pytest.raises(ValueError):
        codename.derive(WORDS, salt)


def test_source_keys_repr_hides_secrets(derived: codename.SourceKeys) -> None:
    text = repr(derived)
    assert "public_key" in text
    assert "secret_key" not in text
    assert "login_secret" not in text
    assert repr(derived.secret_key) not in text
    assert repr(derived.login_secret) not in text


def test_invalid_codename_is_a_crypto_error() -> None:
    assert issubclass(InvalidCodename, CryptoError)


# login verifier


def test_login_verifier_is_keyed_personalised_blake2b(derived: codename.SourceKeys) -> None:
    hash_key = bytes(range(100, 132))
    verifier = codename.login_verifier(derived.login_secret, hash_key)
    assert len(verifier) == 32
    # hashlib pads a short personalisation with zeros, as the spec's 16 bytes spell out.
    expected = hashlib.blake2b(
        derived.login_secret, digest_size=32, key=hash_key, person=b"blagh-login-v1"
    ).digest()
    assert verifier == expected
    assert codename.login_verifier(derived.login_secret, hash_key) == verifier
    assert codename.login_verifier(derived.login_secret, bytes(32)) != verifier
    assert verifier != hashlib.blake2b(derived.login_secret, digest_size=32, key=hash_key).digest()


@pytest.mark.parametrize(
    ("secret", "key"), [(bytes(31), bytes(32)), (bytes(32), bytes(16)), (bytes(33), bytes(32))]
)
def test_login_verifier_checks_lengths(secret: bytes, key: bytes) -> None:
    with pytest.raises(ValueError):
        codename.login_verifier(secret, key)


def test_verifiers_equal() -> None:
    a = bytes(range(32))
    assert codename.verifiers_equal(a, bytes(range(32)))
    assert not codename.verifiers_equal(a, bytes(32))
    assert not codename.verifiers_equal(a, a[:31])


# Computed with PyNaCl and, independently, with libsodium.js 0.8.4 (crypto_pwhash, then
# crypto_box_seed_keypair on the first 32 bytes): both agree.
KAT_SECRET = "f021fba8be1854dbfc366f6b036e1f0c84e46431c56cbf46e69d9f039b26f308"  # noqa: S105
KAT_PUBLIC = "4c1ff7069b69a9ce0d7ed811b38b7c6a67681a39a0dd2e704ed4a78cce713c54"
KAT_LOGIN_SECRET = "f471a1188f9fb28781b0d17e571ae89485b8e0aa2a13754bce154fe61c6cbc11"  # noqa: S105
KAT_VERIFIER = "b9e5dd4b9253ede004ae9a11d800fcb89e46745d79478a9f724c2f20b3b36424"
