"""The inbox: filters, sort and pages, and full-text search over report text, messages and notes
with the matches highlighted, through the app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import Markup
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import cases, search
from journalist_interface.search import InboxQuery, fts_query, highlight

SERVER = ServerSigningKey.generate()


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    fraud = bundle.report(
        source, description="A fake shop called Bazaar took my money.", day="2025-03-01"
    )
    bundle.message(fraud, source, "They now ask for a <b>bitcoin</b> payment & more.")
    bundle.report(
        bundle.source(),
        category="harassment",
        danger=True,
        description="Threats every night, in French: menaces de mort.",
        day="2025-03-10",
    )
    bundle.report(
        bundle.source(),
        category="hate",
        description="Un compte publie des appels à la haine contre les réfugiés.",
        day="2025-03-20",
    )
    bundle.report(
        bundle.source(),
        category="terrorism",
        description="قناة تنشر دعاية إرهابية وتدعو إلى العنف",
        day="2025-03-25",
    )
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def ids(pickup: Pickup) -> list[str]:
    return [str(report["id"]) for report in pickup.reports]


def shown(client: FlaskClient, query: str) -> list[str]:
    """The reports the inbox lists for ``query``, in order."""
    page = client.get("/?" + query).get_data(as_text=True)
    found = re.findall(r'<td><a href="/reports/([0-9a-f]{32})', page)
    return list(dict.fromkeys(found))


# --- the query language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        ("bitcoin", '"bitcoin"'),
        ("fake shop", '"fake" AND "shop"'),
        ('"fake shop" money', '"fake shop" AND "money"'),
        ("pay*", '"pay" *'),
        ("a OR b", '"a" AND "OR" AND "b"'),
        ("NEAR(a b) -x col:y ^z", '"NEAR(a" AND "b)" AND "-x" AND "col:y" AND "^z"'),
        ('say "hi', '"say" AND "hi"'),
        ('"', None),
        ("* - ()", None),
    ],
)
def test_what_is_typed_is_never_fts5_syntax(typed: str, query: str | None) -> None:
    assert fts_query(typed) == query


def test_highlight_escapes_then_marks() -> None:
    assert highlight("a \x02<b>x</b>\x03 & c") == Markup(
        "a <mark>&lt;b&gt;x&lt;/b&gt;</mark> &amp; c"
    )
    assert highlight("\x03stray\x02open") == Markup("stray<mark>open</mark>")


# --- search through the app --------------------------------------------------------------------


def test_search_finds_messages_and_highlights_escaped(client: FlaskClient, pickup: Pickup) -> None:
    page = client.get("/?q=bitcoin&lang=en").get_data(as_text=True)
    assert shown(client, "q=bitcoin") == [ids(pickup)[0]]
    assert "In a message:" in page
    assert "<mark>bitcoin</mark>" in page
    assert "&lt;b&gt;<mark>bitcoin</mark>&lt;/b&gt;" in page  # the reporter's tags stay text
    assert "<b>bitcoin</b>" not in page


def test_search_in_three_languages_and_without_accents(client: FlaskClient, pickup: Pickup) -> None:
    assert shown(client, "q=refugies") == [ids(pickup)[2]]  # réfugiés
    assert shown(client, "q=menaces+de+mort") == [ids(pickup)[1]]
    assert shown(client, "q=إرهابية") == [ids(pickup)[3]]
    assert shown(client, "q=réfug*") == [ids(pickup)[2]]
    assert shown(client, "q=%22menaces+de+mort%22") == [ids(pickup)[1]]
    assert shown(client, "q=%22mort+de+menaces%22") == []


def test_search_finds_notes_and_replies(client: FlaskClient, pickup: Pickup, app: Flask) -> None:
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    target = ids(pickup)[3]
    client.post(
        f"/reports/{target}/notes",
        data={"csrf": token.group(1), "note": "Linked to Operation Kestrel"},
    )
    assert shown(client, "q=kestrel") == [target]
    page = client.get("/?q=kestrel&lang=en").get_data(as_text=True)
    assert "In a note:" in page and "<mark>Kestrel</mark>" in page
    # The report's page, reached from the results, shows where the words are.
    report_page = client.get(f"/reports/{target}?q=kestrel&lang=en").get_data(as_text=True)
    assert "Where the words “<bdi>kestrel</bdi>” appear:" in report_page

    client.post(
        f"/reports/{ids(pickup)[0]}/reply",
        data={"csrf": token.group(1), "text": "Keep the receipts, please."},
    )
    assert shown(client, "q=receipts") == [ids(pickup)[0]]


def test_nothing_found_and_nonsense(client: FlaskClient) -> None:
    assert "No report matches this search." in client.get("/?q=zzzz&lang=en").get_data(as_text=True)
    assert "Type at least one word" in client.get("/?q=%22%22+*&lang=en").get_data(as_text=True)
    for nasty in ("NEAR(", '")', "col:x", "^", "a AND", "'; DROP TABLE reports; --"):
        assert client.get("/", query_string={"q": nasty}).status_code == 200


# --- filters, sort and pages -------------------------------------------------------------------


def test_filters(client: FlaskClient, pickup: Pickup, vault_path: Path) -> None:
    every = ids(pickup)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert token is not None
    csrf = token.group(1)
    client.post(
        f"/reports/{every[0]}/case", data={"csrf": csrf, "status": "closed", "reason": "Done"}
    )
    client.post(
        f"/reports/{every[2]}/case",
        data={"csrf": csrf, "status": "escalated", "assignee": "analyst", "priority": "0"},
    )
    client.post(f"/reports/{every[3]}/tags", data={"csrf": csrf, "tag": "Kestrel"})

    assert set(shown(client, "status=open")) == set(every[1:])
    assert shown(client, "status=closed") == [every[0]]
    assert shown(client, "status=escalated") == [every[2]]
    assert shown(client, "category=hate") == [every[2]]
    assert shown(client, "priority=3") == [every[1]]  # immediate danger: urgent
    assert shown(client, "priority=0") == [every[2]]
    assert shown(client, "assignee=analyst") == [every[2]]
    assert set(shown(client, "assignee=-")) == {every[0], every[1], every[3]}
    assert shown(client, "tag=kestrel") == [every[3]]
    assert shown(client, "from=2025-03-10&to=2025-03-20&sort=newest") == [every[2], every[1]]
    assert shown(client, "q=bazaar&status=closed") == [every[0]]
    assert shown(client, "q=bazaar&status=new") == []
    assert "No report matches these filters." in client.get("/?category=minors&lang=en").get_data(
        as_text=True
    )
    # Values that are no filter are dropped, not errors.
    for query in ("status=bogus", "priority=7", "from=2025-02-30", "sort=evil", "page=-1"):
        response = client.get("/?" + query)
        assert response.status_code == 200
        assert set(shown(client, query)) == set(every)


def test_sorts(client: FlaskClient, pickup: Pickup) -> None:
    every = ids(pickup)
    assert shown(client, "")[0] == every[1]  # urgent first
    assert shown(client, "sort=newest") == [every[3], every[2], every[1], every[0]]
    assert shown(client, "sort=oldest") == [every[0], every[1], every[2], every[3]]
    assert shown(client, "sort=category") == [
        every[0],
        every[1],
        every[2],
        every[3],
    ]  # fraud, harassment, hate, terrorism


def test_pages(vault_path: Path, pickup: Pickup) -> None:
    with open_vault(vault_path) as vault:
        first = search.inbox(vault, InboxQuery(sort="oldest"), per_page=3)
        assert first.total == 4 and first.pages == 2 and len(first.rows) == 3
        second = search.inbox(vault, InboxQuery(sort="oldest", page=2), per_page=3)
        assert [row.id for row in second.rows] == [ids(pickup)[3]]
        beyond = search.inbox(vault, InboxQuery(sort="oldest", page=99), per_page=3)
        assert beyond.query.page == 2 and len(beyond.rows) == 1
        assert InboxQuery(text="x", sort="newest", page=2).args(page=3) == {
            "q": "x",
            "sort": "newest",
            "page": "3",
        }
        cases.add_tag(vault, ids(pickup)[0], "a")
        tagged = search.inbox(vault, InboxQuery(tag="A"))
        assert [row.tags for row in tagged.rows] == [("a",)]


def test_page_links_keep_the_filters(vault_path: Path, app: Flask) -> None:
    with open_vault(vault_path) as vault, vault.transaction() as db:
        source = db.execute("SELECT id FROM sources LIMIT 1").fetchone()[0]
        db.executemany(
            "INSERT INTO reports (id, source_id, day, received, category)"
            " VALUES (?, ?, ?, 1, 'fraud')",
            [(f"{i:032x}", source, "2025-04-01") for i in range(120)],
        )
    client = app.test_client()
    client.post("/login", data={"passphrase": PASSPHRASE})
    page = client.get("/?category=fraud&lang=en").get_data(as_text=True)
    assert "121 reports" in page and "page 1 of 3" in page
    assert 'href="/?category=fraud&amp;page=2" rel="next"' in page
    last = client.get("/?category=fraud&page=3&lang=en").get_data(as_text=True)
    assert 'rel="prev"' in last and 'rel="next"' not in last
