"""The codename word list (issue 14): the EFF list less our deny-list of distressing words.

Checks the figures docs/keys.md states against the files, that no deny-listed word is ever
drawn, and that retired words still log in (codenames given out before keep working).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_helpers import Site, open_site, page_text, submit_for_codename

from crypto import codename
from source_interface.services import _eff_words, load_denylist, load_retired_words, load_wordlist

DOCS = Path(__file__).parent.parent / "docs" / "keys.md"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as site:
        yield site


def test_the_list_keeps_enough_words_and_no_denied_one() -> None:
    words = load_wordlist()
    denied = load_denylist()
    assert len(words) >= codename.MIN_WORDLIST_SIZE >= 7000
    assert len(set(words)) == len(words)
    assert not set(words) & set(denied)
    assert "extortion" in denied and "extortion" not in words
    # Our deny-list names only EFF words, once each: a typo would silently deny nothing.
    assert sorted(set(denied)) == sorted(denied)
    assert set(denied) <= set(_eff_words())
    assert sorted(words + load_retired_words()) == sorted(_eff_words())
    codename.generate(words)  # the generator accepts the filtered list


def test_the_docs_state_the_real_count_and_entropy() -> None:
    text = " ".join(DOCS.read_text("utf-8").split())
    figures = r"\*\*([\d,]+) words, so a codename carries 7 × log2\(([\d,]+)\) ≈ ([\d.]+) bits\*\*"
    stated = re.search(figures, text)
    assert stated is not None
    count = len(load_wordlist())
    assert int(stated.group(1).replace(",", "")) == count
    assert int(stated.group(2).replace(",", "")) == count
    assert stated.group(3) == f"{codename.WORD_COUNT * math.log2(count):.1f}"
    denied = re.search(r"codename-denylist\.txt` \(([\d,]+) words\)", text)
    assert denied is not None and int(denied.group(1)) == len(load_denylist())


def test_the_no_js_path_draws_from_the_filtered_list(site: Site) -> None:
    assert site.services.wordlist == load_wordlist()
    drawn = set(site.services.wordlist)
    for _ in range(3):
        words = submit_for_codename(site.client(), category="fraud", description="x" * 30)
        assert set(words.split()) <= drawn


ENGLISH_WORDS = {
    "en": "English words",
    "fr": "mots anglais",
    "ar": "كلمات إنجليزية",
    "es": "palabras en inglés",
}


@pytest.mark.parametrize("language", ["en", "fr", "ar", "es"])
def test_codename_pages_say_the_words_are_english(site: Site, language: str) -> None:
    """The Arabic page showed seven English words without a word about them (issue 14)."""
    client = site.client()
    assert ENGLISH_WORDS[language] in page_text(client.get(f"/?lang={language}"))
    submit_for_codename(client, category="fraud", description="x" * 30)
    assert ENGLISH_WORDS[language] in page_text(client.get("/report/codename"))
