"""The five catalogs against the glossary of docs/translations.md, and the typography rules.

A term translated two ways ("case" and "file" both الملف, « phrase secrète » beside « phrase de
passe ») reads as two different things to an analyst or a reporter, and nobody notices it page by
page: this test reads the glossary tables from the documentation, so that the one list translators
read is also the one that is enforced, and checks every entry of both apps' catalogs against them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "docs" / "translations.md"
APPS = ("source_interface", "journalist_interface")
LANGUAGES = ("ar", "fr", "es")
APP_LANGUAGES = {"source_interface": LANGUAGES, "journalist_interface": ("ar", "fr")}
"""The analysts' pages have no Spanish (docs/translations.md)."""

NO_BREAK = "\u00a0"
NARROW_NO_BREAK = "\u202f"

# Words that may follow a number in an Arabic string whatever the number: units borrowed from
# English do not vary, and "من" introduces a plural ("%(count)d من الملفات").
ARABIC_INVARIABLE = {"من", "بايت", "كيلوبايت", "ميغابايت", "بكسل", "ميغابكسل", "غيرها", "منها"}
ARABIC_WORD = re.compile(r"[\u0600-\u06ff]+")


@dataclass(frozen=True)
class Term:
    """One row of a glossary table."""

    english: tuple[str, ...]
    translation: str
    forms: tuple[str, ...]
    never: tuple[str, ...]
    unless: tuple[str, ...]

    def used_in(self, english: str) -> bool:
        """Whether an entry's English text uses this term (a whole word, not an exception)."""
        lowered = english.lower()
        if any(phrase.lower() in lowered for phrase in self.unless):
            return False
        return any(_whole_word(form).search(english) for form in self.english)


def _whole_word(form: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(form) + r"(?![\w-])", re.IGNORECASE)


def _norm(text: str) -> str:
    """NFC (Arabic marks in one canonical order) and case-folded, for substring tests."""
    return unicodedata.normalize("NFC", text).casefold()


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _split(cell: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in cell.split(",") if part.strip())


def read_glossary(text: str) -> dict[str, list[Term]]:
    """The ``### Glossary: … (`xx`)`` tables of the documentation, by language code."""
    glossary: dict[str, list[Term]] = {}
    language = None
    for line in text.splitlines():
        heading = re.match(r"### Glossary: .*\(`(\w+)`\)", line)
        if heading:
            language = heading.group(1)
            glossary[language] = []
            continue
        if line.startswith("#"):
            language = None
        if language is None or not line.startswith("|"):
            continue
        cells = _cells(line)
        if cells[0] in ("English", "---") or len(cells) != 5:
            continue
        english, translation, forms, never, unless = cells
        glossary[language].append(
            Term(_split(english), translation, _split(forms), _split(never), _split(unless))
        )
    return glossary


def _translations(message: Message) -> list[str]:
    strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
    return [s for s in strings if s]


def _english(message: Message) -> str:
    return " ".join(message.id) if isinstance(message.id, (list, tuple)) else message.id


def glossary_mistakes(catalog: Catalog, terms: list[Term]) -> list[str]:
    """Each entry that uses a term without its translation, or with a wording it rules out."""
    mistakes = []
    for message in catalog:
        if not message.id:
            continue
        english = _english(message)
        used = [term for term in terms if term.used_in(english)]
        allowed = {_norm(form) for term in used for form in term.forms}
        for translation in _translations(message):
            text = _norm(translation)
            for term in used:
                if not any(_norm(form) in text for form in term.forms):
                    mistakes.append(f"{english!r}: {term.english[0]!r} → {term.translation!r}")
                for word in term.never:
                    if _norm(word) in text and not any(_norm(word) in a for a in allowed):
                        mistakes.append(f"{english!r}: {word!r} (say {term.translation!r})")
    return mistakes


def french_typography_mistakes(catalog: Catalog) -> list[str]:
    """A plain space, or no space, before : ; ? ! or inside « »; a straight apostrophe."""
    mistakes = []
    for message in catalog:
        if not message.id:
            continue  # the header
        for translation in _translations(message):
            where = f"{_english(message)!r}: {translation!r}"
            if "'" in translation:
                mistakes.append(f"straight apostrophe in {where}")
            for index, char in enumerate(translation):
                before = translation[index - 1] if index else ""
                after = translation[index + 1] if index + 1 < len(translation) else ""
                if char in ":;?!" and index:
                    if char == ":" and (after == "/" or (before.isdigit() and after.isdigit())):
                        continue  # a URL or a time
                    wanted = NO_BREAK if char == ":" else NO_BREAK + NARROW_NO_BREAK
                    if before not in wanted:
                        mistakes.append(f"no no-break space before {char!r} in {where}")
                if char == "«" and after != NO_BREAK:
                    mistakes.append(f"no no-break space after « in {where}")
                if char == "»" and before != NO_BREAK:
                    mistakes.append(f"no no-break space before » in {where}")
    return mistakes


def spanish_punctuation_mistakes(catalog: Catalog) -> list[str]:
    """A question or exclamation without its opening ¿ or ¡, or a straight double quote."""
    mistakes = []
    for message in catalog:
        if not message.id:
            continue
        for translation in _translations(message):
            where = f"{_english(message)!r}: {translation!r}"
            for opening, closing in (("¿", "?"), ("¡", "!")):
                if translation.count(opening) != translation.count(closing):
                    mistakes.append(f"{closing!r} without its {opening!r} in {where}")
            if '"' in translation:
                mistakes.append(f"straight quote in {where} (write «…»)")
    return mistakes


def arabic_number_mistakes(catalog: Catalog) -> list[str]:
    """Counted nouns in the wrong case after a number (the plural form, or no plural at all)."""
    mistakes = []
    number = re.compile(r"%\(\w+\)d\s+(\S+)")
    for message in catalog:
        if not message.id:
            continue
        string = message.string
        if isinstance(message.id, (list, tuple)) and isinstance(string, (list, tuple)):
            forms = list(string)
            for index, ending_ok in ((4, lambda w: not w.endswith("ًا")), (5, _accusative)):
                for word in number.findall(forms[index]):
                    if ARABIC_WORD.fullmatch(word) and not ending_ok(word):
                        mistakes.append(f"{message.id[0]!r} form {index}: {forms[index]!r}")
            continue
        for word in number.findall(string if isinstance(string, str) else ""):
            word = word.rstrip(".،:؛)")
            if ARABIC_WORD.fullmatch(word) and word not in ARABIC_INVARIABLE:
                mistakes.append(f"{message.id!r}: a counted noun after a number: {string!r}")
    return mistakes


def _accusative(word: str) -> bool:
    """11 to 99 take the singular accusative: ـًا, or a feminine ـة that shows no ending."""
    return word.endswith(("ًا", "ة", "ةً")) or word in ARABIC_INVARIABLE


def _catalog(app: str, language: str) -> Catalog:
    with (ROOT / app / "translations" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


def _glossary() -> dict[str, list[Term]]:
    return read_glossary(GLOSSARY.read_text("utf-8"))


CATALOGS = [(app, language) for app in APPS for language in APP_LANGUAGES[app]]


def test_the_documentation_has_a_glossary_per_language() -> None:
    glossary = _glossary()
    assert set(glossary) == set(LANGUAGES)
    for terms in glossary.values():
        english = {term.english[0] for term in terms}
        assert {"case", "file", "passphrase", "reporter", "sealed", "status"} <= english
        assert all(term.forms for term in terms)


@pytest.mark.parametrize(("app", "language"), CATALOGS)
def test_each_term_is_translated_one_way(app: str, language: str) -> None:
    mistakes = glossary_mistakes(_catalog(app, language), _glossary()[language])
    assert not mistakes, "\n".join(mistakes)


@pytest.mark.parametrize("app", APPS)
def test_french_typography(app: str) -> None:
    mistakes = french_typography_mistakes(_catalog(app, "fr"))
    assert not mistakes, "\n".join(mistakes)


def test_spanish_punctuation() -> None:
    mistakes = spanish_punctuation_mistakes(_catalog("source_interface", "es"))
    assert not mistakes, "\n".join(mistakes)


def test_every_catalog_is_checked() -> None:
    """A catalog added beside the others (a new language, Spanish on the analysts' side) is
    checked against the glossary, not silently left out of it."""
    found = {
        (app, path.parent.parent.name)
        for app in APPS
        for path in (ROOT / app / "translations").glob("*/LC_MESSAGES/messages.po")
    }
    assert found == set(CATALOGS)


@pytest.mark.parametrize("app", APPS)
def test_arabic_counted_nouns(app: str) -> None:
    mistakes = arabic_number_mistakes(_catalog(app, "ar"))
    assert not mistakes, "\n".join(mistakes)


def _one(msgid: str | tuple[str, str], string: str | tuple[str, ...], locale: str) -> Catalog:
    catalog = Catalog(locale=locale)
    catalog.add(msgid, string)
    return catalog


def test_the_checks_catch_what_the_review_fixed() -> None:
    """The old wordings, one per rule, are each reported (so the checks cannot pass vacuously)."""
    glossary = _glossary()
    assert glossary_mistakes(_one("The case is saved.", "تم حفظ الملف.", "ar"), glossary["ar"])
    assert glossary_mistakes(
        _one("Passphrase", "Phrase secrète", "fr"), glossary["fr"]
    ) and not glossary_mistakes(_one("Passphrase", "Phrase de passe", "fr"), glossary["fr"])
    assert glossary_mistakes(_one("Analyst", "محلل", "ar"), glossary["ar"])
    assert not glossary_mistakes(_one("Analyst", "محلّل", "ar"), glossary["ar"])
    assert not glossary_mistakes(_one("Their key file", "ملف مفتاحه", "ar"), glossary["ar"])
    assert not glossary_mistakes(_one("accounts without case", "الحسابات", "ar"), glossary["ar"])
    assert french_typography_mistakes(_one("Files:", "Fichiers :", "fr"))
    assert french_typography_mistakes(_one("Files:", "Fichiers:", "fr"))
    assert french_typography_mistakes(_one("Why?", "Pourquoi ?", "fr"))
    assert french_typography_mistakes(_one("It's", "C'est", "fr"))
    assert not french_typography_mistakes(_one("Why?", "Pourquoi\u202f? Il est 12:30.", "fr"))
    assert arabic_number_mistakes(_one("At most %(limit)d characters.", "%(limit)d حرفًا", "ar"))
    assert not arabic_number_mistakes(
        _one("At most %(limit)d characters.", "الحد الأقصى لعدد الأحرف هو %(limit)d", "ar")
    )
    assert glossary_mistakes(_one("Make a report", "Hacer un reporte", "es"), glossary["es"])
    assert not glossary_mistakes(_one("Make a report", "Hacer una denuncia", "es"), glossary["es"])
    assert glossary_mistakes(_one("Files:", "Ficheros:", "es"), glossary["es"])
    assert glossary_mistakes(_one("Encrypting", "Encriptando", "es"), glossary["es"])
    assert spanish_punctuation_mistakes(_one("What happened?", "Qué ocurrió?", "es"))
    assert spanish_punctuation_mistakes(_one("Choose “Other”", 'Elija "Otro"', "es"))
    assert not spanish_punctuation_mistakes(_one("What happened?", "¿Qué ocurrió?", "es"))
    swapped = ("0 %(num)d", "1", "2", "%(num)d بلاغات", "%(num)d بلاغًا", "%(num)d بلاغ")
    assert (
        len(arabic_number_mistakes(_one(("%(num)d report", "%(num)d reports"), swapped, "ar"))) == 2
    )
