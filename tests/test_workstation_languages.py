"""Mixed-direction text and the page's language on the workstation: reporters' and analysts'
words isolated (``dir="auto"``, ``<bdi>``), days written by Babel in the page's language,
counts through ngettext, whole-number chart axes, and searching for an emoji.

A real vault (SQLCipher) and a real pickup bundle, through the app.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from workstation_helpers import (
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import cases, charts

SERVER = ServerSigningKey.generate()
ARABIC = "نصب علي متجر Fake-Shop في 2025"
"""Arabic with a Latin name and a number in it: the case that reorders without isolation."""


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    first = bundle.report(source, description=ARABIC, day="2025-03-03")
    bundle.message(first, source, "شكرًا 🙏 merci")
    bundle.report(bundle.source(), description="Un faux magasin 💸 partout.", day="2025-03-04")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    path = imported_vault(tmp_path, analyst, SERVER, pickup)
    with open_vault(path) as vault, vault.transaction() as db:
        db.execute(
            "INSERT INTO replies (id, report_id, day, position, text, envelope)"
            " VALUES ('r1', ?, '2025-03-05', 1000, 'x', x'00')",
            (pickup.reports[0]["id"],),
        )
    return path


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_user_written_text_is_isolated(vault_path: Path, pickup: Pickup, app: Flask) -> None:
    report = str(pickup.reports[0]["id"])
    with open_vault(vault_path) as vault:
        cases.add_note(vault, report, "ملاحظة: Instagram @fake_shop")
        cases.add_tag(vault, report, "احتيال")
    client = logged_in(app)
    html = page(client, f"/reports/{report}")
    assert f'<p class="text" dir="auto">{ARABIC}</p>' in html
    assert '<p class="text" dir="auto">شكرًا 🙏 merci</p>' in html
    assert '<p class="text" dir="auto">ملاحظة: Instagram @fake_shop</p>' in html
    assert "<bdi>Instagram</bdi>" in html  # the platform
    assert "<bdi>احتيال</bdi>" in html
    assert "Tag added: <bdi>احتيال</bdi>" in html
    inbox = page(client, "/")
    assert f'<p class="description-preview" dir="auto">{ARABIC}</p>' in inbox
    assert "<td><bdi>Instagram</bdi></td>" in inbox
    found = page(client, f"/reports/{report}?q=Instagram")
    assert "Where the words “<bdi>Instagram</bdi>” appear:" in found


def test_fields_analysts_write_in_take_the_direction_of_their_text(
    pickup: Pickup, client: FlaskClient
) -> None:
    """A reply, a note, a closing reason, a tag or a search typed in Arabic on a French page
    (or the reverse) is laid out in its own direction as it is typed."""
    report = page(client, f"/reports/{pickup.reports[0]['id']}?lang=fr")
    for tag, field in (
        ("textarea", "reply"),
        ("textarea", "note"),
        ("input", "reason"),
        ("input", "new-tag"),
    ):
        found = re.search(rf'<{tag} id="{field}"[^>]*>', report)
        assert found and ' dir="auto"' in found.group(), field
    inbox = page(client, "/?lang=ar")
    for field in ("q", "tag"):
        found = re.search(rf'<input id="{field}"[^>]*>', inbox)
        assert found and ' dir="auto"' in found.group(), field


@pytest.mark.parametrize(
    ("language", "received", "closed"),
    [
        ("en", 'Received on <time datetime="2025-03-03">March 3, 2025</time>', "March"),
        ("fr", '<time datetime="2025-03-03">3 mars 2025</time>', "mars"),
        ("ar", '<time datetime="2025-03-03">3 مارس 2025</time>', "مارس"),
    ],
)
def test_days_are_written_in_the_page_language(
    client: FlaskClient, pickup: Pickup, language: str, received: str, closed: str
) -> None:
    report = str(pickup.reports[0]["id"])
    html = page(client, f"/reports/{report}?lang={language}")
    assert received in html
    assert "2025-03-03</bdi>" not in html
    inbox = page(client, f"/?lang={language}")
    assert '<time datetime="2025-03-04">' in inbox and closed in inbox


def test_counts_are_pluralised(client: FlaskClient) -> None:
    html = page(client, "/statistics?lang=en")
    assert "(1 report answered)." in html
    assert "1 reports" not in html
    html = page(client, "/statistics?lang=fr")
    assert "(1 signalement a reçu une réponse)." in html


@pytest.mark.parametrize("peak", [1, 3, 5, 7, 10, 23, 99])
def test_count_axes_have_whole_ticks(peak: int) -> None:
    svg = charts.stacked_columns("c", "t", "d", ["w1", "w2"], [("fraud", [peak, 0])])
    ticks = re.findall(r'text-anchor="end" font-size="10">([^<]*)<', svg)
    assert ticks and all(tick.isdigit() for tick in ticks), ticks
    assert int(ticks[-1]) >= peak and len(ticks) <= 6
    gaps = charts.columns_with_gaps("g", "t", "d", ["a", "b"], [None, peak / 2], "days")
    ticks = re.findall(r'text-anchor="end" font-size="10">([^<]*)<', gaps)
    assert ticks and all(tick.isdigit() for tick in ticks), ticks


def test_an_emoji_is_found(client: FlaskClient, pickup: Pickup) -> None:
    def shown(query: str) -> list[str]:
        html = page(client, "/?q=" + query)
        return list(dict.fromkeys(re.findall(r'<td><a href="/reports/([0-9a-f]{32})', html)))

    first, second = (str(r["id"]) for r in pickup.reports)
    assert shown("💸") == [second]
    assert shown("🙏") == [first]
    assert shown("🙏 merci") == [first]
    assert shown("🙏 partout") == []
    assert shown("🦄") == []
    assert "Type at least one word" in page(client, "/?q=---")
