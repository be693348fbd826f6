"""Days in the page's language, and reporters' and analysts' words isolated from the page's
direction (issue 12), on the reporters' pages.

An ISO day (``2026-03-14``) reads backwards in an Arabic sentence and means little to many
reporters; mixed Arabic and Latin text ("رسالة: see https://…") set in a page of the other
direction comes out with its words reordered unless it is isolated (``<bdi>``, ``dir="auto"``).
The pages are parsed here, not searched as strings: what matters is which element holds the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.dates import format_date
from flask.testing import FlaskClient
from source_helpers import (
    Site,
    confirm_codename,
    fresh_token,
    login,
    multipart,
    open_site,
    page_text,
    post_report,
    submit_for_codename,
)

from source_interface.i18n import day
from source_interface.submissions import seal_document

ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
ARABIC = re.compile(r"[\u0600-\u06ff]")
LANGUAGES = ("ar", "fr", "en", "es")

DESCRIPTION = "احتيال عبر shop.example: they took 300 MAD — ثم اختفوا"
MESSAGE = "رسالة: see https://example.com/a?b=1 now"
REPLY = "Merci — شكرا for the link (https://example.org)"
FIRST_FILE = "صورة screenshot 1.png"
SECOND_FILE = "capture (2) لقطة.jpg"


class Elements(HTMLParser):
    """Each piece of text of a page with the elements it sits in, innermost last, and every
    element's attributes (``<input>`` values included)."""

    VOID = frozenset(
        ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source")
    )

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[str, list[tuple[str, dict[str, str | None]]]]] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index][0] == tag:
                del self.open[index:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append((data, list(self.open)))

    def holder_of(self, text: str) -> tuple[str, dict[str, str | None]]:
        """The innermost element around the piece of text that contains ``text``."""
        found = [stack[-1] for data, stack in self.texts if text in data]
        assert len(found) == 1, (text, found)
        return found[0]

    def element(self, tag: str, element_id: str) -> dict[str, str | None]:
        [attributes] = [a for t, a in self.elements if t == tag and a.get("id") == element_id]
        return attributes

    def times(self) -> list[tuple[str | None, str]]:
        """Each ``<time>``: its ``datetime`` and its text."""
        return [
            (stack[-1][1].get("datetime"), data)
            for data, stack in self.texts
            if stack and stack[-1][0] == "time"
        ]


def isolated(element: tuple[str, dict[str, str | None]]) -> bool:
    tag, attributes = element
    return tag == "bdi" or attributes.get("dir") == "auto"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as site:
        yield site


def add_reply(site: Site, report_id: str, text: str) -> None:
    """An analysts' reply, stored as the reply bundle import stores it (sealed to the source)."""
    [(source_id,)] = site.rows("SELECT source_id FROM reports WHERE id = ?", [report_id])
    source = site.store.index.source(source_id)
    assert source is not None and source.public_key is not None
    ref = seal_document(
        site.services, [*site.services.analysts, source.public_key], "reply", {"text": text}
    )
    assert site.store.index.add_items(source_id, report_id, [("reply", ref)])


def follow_up_with_a_conversation(site: Site) -> tuple[FlaskClient, str]:
    """A report kept with a codename, a message with a file from the reporter, and a reply.
    Returns the reporter's client, logged in, and the report's day."""
    client = site.client()
    words = submit_for_codename(
        client,
        [(b"png bytes", FIRST_FILE, "image/png")],
        category="fraud",
        description=DESCRIPTION,
    )
    assert confirm_codename(client, words).status_code == 303
    home = client.get("/followup").get_data(as_text=True)
    [report_id] = re.findall(r'action="/followup/([0-9a-f]{32})/message"', home)
    response = client.post(
        f"/followup/{report_id}/message",
        data=multipart(
            {"form_token": fresh_token(client, "/followup"), "message": MESSAGE},
            [(b"jpeg bytes", SECOND_FILE, "image/jpeg")],
        ),
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    add_reply(site, report_id, REPLY)
    [(report_day,)] = site.rows("SELECT day FROM reports WHERE id = ?", [report_id])
    return client, str(report_day)


# --- days ---------------------------------------------------------------------------------------


def test_follow_up_days_are_written_in_the_pages_language(site: Site) -> None:
    client, report_day = follow_up_with_a_conversation(site)
    shown: dict[str, str] = {}
    for language in LANGUAGES:
        response = client.get(f"/followup?lang={language}")
        assert response.status_code == 200
        times = Elements(response.get_data(as_text=True)).times()
        # The report's day, the message's and the reply's: each in a <time> keeping the ISO day.
        assert len(times) == 3, times
        assert {iso for iso, _ in times} == {report_day}
        texts = {text for _, text in times}
        assert len(texts) == 1
        shown[language] = texts.pop()
        assert shown[language] == format_date(date.fromisoformat(report_day), "long", language)
        # Nowhere on the page, in any language, a day a reporter reads as YYYY-MM-DD.
        assert not ISO_DAY.search(page_text(response)), language
    assert ARABIC.search(shown["ar"]), shown["ar"]
    assert " de " in shown["es"]
    assert not ARABIC.search(shown["fr"] + shown["en"] + shown["es"])
    assert len(set(shown.values())) == len(LANGUAGES), shown


def test_a_value_that_is_not_a_day_is_shown_as_it_is(site: Site) -> None:
    with site.app.test_request_context("/?lang=es"):
        site.app.preprocess_request()
        assert day("not a day") == "not a day"
        assert day("2026-03-14") == '<time datetime="2026-03-14">14 de marzo de 2026</time>'


# --- reporters' and analysts' words -------------------------------------------------------------


@pytest.mark.parametrize("language", ["ar", "fr"])
def test_conversation_text_and_file_names_are_isolated(site: Site, language: str) -> None:
    client, _ = follow_up_with_a_conversation(site)
    page = Elements(client.get(f"/followup?lang={language}").get_data(as_text=True))
    for text in (MESSAGE, REPLY, SECOND_FILE):
        assert isolated(page.holder_of(text)), text
    # The box for the next message takes the direction of what is typed in it.
    [message_box] = [a for t, a in page.elements if t == "textarea" and a.get("name") == "message"]
    assert message_box.get("dir") == "auto"


def test_a_refused_report_shows_what_was_typed_isolated(site: Site) -> None:
    client = site.client()
    client.get("/?lang=ar")
    response = post_report(
        client,
        fresh_token(client),
        [(b"png bytes", FIRST_FILE, "image/png")],
        description=DESCRIPTION,
        platform="Facebook فيسبوك",
        name="Leïla ليلى",
        phone="call me maybe",
    )
    assert response.status_code == 400
    page = Elements(response.get_data(as_text=True))
    assert page.holder_of(DESCRIPTION)[0] == "textarea"
    assert page.element("textarea", "description").get("dir") == "auto"
    assert page.element("input", "platform").get("dir") == "auto"
    assert page.element("input", "name").get("dir") == "auto"
    # The file kept for the next try, named in the list of kept files.
    assert isolated(page.holder_of(FIRST_FILE))


def test_codename_words_in_an_arabic_error_are_isolated(site: Site) -> None:
    """The words a reporter typed, named back inside an Arabic sentence, between the isolate
    marks (FSI … PDI) that plain text uses where it cannot hold a ``<bdi>``."""
    client = site.client()
    client.get("/?lang=ar")
    response = login(client, "zzzq " * 7)
    assert response.status_code == 400
    [error] = re.findall(r'<p class="error" id="codename-error"[^>]*>([^<]*)</p>', response.text)
    assert "\u2068zzzq, zzzq" in error and "zzzq\u2069" in error
    assert ARABIC.search(error)
