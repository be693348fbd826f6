"""Connections: the normalisation of addresses and accounts on tricky cases, then the same link,
account or file across reports, on each report's page and as clusters ordered by size."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
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
from journalist_interface import connections
from journalist_interface.connections import keys_in_text, keys_of, normalise_url

SERVER = ServerSigningKey.generate()
PHOTO = (b"\x89PNG same bytes", "evidence.png", "image/png")

SAME_PAGE = [
    "https://www.shop.example/pay/",
    "http://shop.example/pay",
    "HTTPS://SHOP.EXAMPLE/pay",
    "shop.example/pay",
    "www.shop.example/pay?utm_source=x&utm_medium=y",
    "https://shop.example/pay?fbclid=IwAR0abc&gclid=123",
    "https://shop.example:443/pay#section",
    "https://user:pw@shop.example/pay",
    "https://shop.example//pay",
    "https://shop.example/a/../pay",
    "https://shop.example./pay",
    "  <https://shop.example/pay>. ",
    "hxxps://shop[.]example/pay",
    "https://m.shop.example/pay",
]


@pytest.mark.parametrize("spelling", SAME_PAGE)
def test_spellings_of_one_page_meet(spelling: str) -> None:
    assert normalise_url(spelling) == "shop.example/pay"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://shop.example/pay?id=1", "https://shop.example/pay?id=2"),
        ("https://shop.example/Pay", "https://shop.example/pay"),  # paths are case-sensitive
        ("https://shop.example:8443/pay", "https://shop.example/pay"),
        ("https://shop.example/pay", "https://shop.example.evil/pay"),
        ("https://youtube.com/watch?v=AbC", "https://youtube.com/watch?v=abc"),
        ("https://example.com/a?s=1", "https://example.com/a"),  # s= is tracking on x.com only
    ],
)
def test_different_pages_stay_apart(one: str, other: str) -> None:
    assert normalise_url(one) != normalise_url(other)


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("https://twitter.com/SomeOne/status/123?s=20&t=abc", "x.com/someone/status/123"),
        ("https://mobile.twitter.com/someone/status/123", "x.com/someone/status/123"),
        ("https://youtu.be/dQw4w9WgXcQ?si=xyz", "youtube.com/watch?v=dQw4w9WgXcQ"),
        ("https://www.youtube.com/shorts/dQw4w9WgXcQ", "youtube.com/watch?v=dQw4w9WgXcQ"),
        (
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&feature=share",
            "youtube.com/watch?v=dQw4w9WgXcQ",
        ),
        ("https://www.instagram.com/Some.One/?igshid=MzRlODBiNWFlZA==", "instagram.com/some.one"),
        ("https://instagr.am/p/Cx1/?igsh=abc&img_index=2", "instagram.com/p/cx1?img_index=2"),
        (
            "https://www.tiktok.com/@Some_One/video/1?is_from_webapp=1&_t=8",
            "tiktok.com/@some_one/video/1",
        ),
        ("https://b.example/?z=1&a=2&utm_campaign=q", "b.example?a=2&z=1"),
        ("https://bücher.example/straße", "xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://a.example/%7Euser/%41", "a.example/~user/A"),
        ("https://a.example/a%20b", "a.example/a%20b"),
        ("http://abcdefghijklmnop.onion/x/", "abcdefghijklmnop.onion/x"),
    ],
)
def test_site_rules(spelling: str, key: str) -> None:
    assert normalise_url(spelling) == key


@pytest.mark.parametrize(
    "text",
    ["javascript:alert(1)", "mailto:x@y.example", "data:text/html,x", "not a link", "",
     "http://", "https://exa mple.com", "ftp://files.example/x", "@"],
)  # fmt: skip
def test_not_web_addresses(text: str) -> None:
    assert normalise_url(text) is None


def test_file_names_are_not_addresses_in_free_text() -> None:
    assert keys_in_text("see photo.jpg and notes.txt") == set()


def test_handles_emails_and_profile_addresses() -> None:
    assert keys_of("@Account_Handle") == {("handle", "@account_handle")}
    assert keys_of("Scammer@Mail.Example") == {("email", "scammer@mail.example")}
    assert keys_of("https://www.instagram.com/account_handle/") == {
        ("url", "instagram.com/account_handle"),
        ("handle", "@account_handle"),
    }
    assert ("handle", "@someone") in keys_of("https://x.com/SomeOne/status/1")
    assert ("handle", "@p") not in keys_of("https://instagram.com/p/abc")  # a post, not an account
    assert keys_of("https://shop.example/@not_a_profile") == {
        ("url", "shop.example/@not_a_profile")
    }


def test_keys_in_free_text() -> None:
    found = keys_in_text(
        "He wrote from @Scam_Boss (also scam@evil.example) and sent "
        "https://www.evil.example/pay/?utm_source=sms, then hxxp://evil[.]example/pay."
    )
    assert found == {
        ("handle", "@scam_boss"),
        ("email", "scam@evil.example"),
        ("url", "evil.example/pay"),
    }


# --- across reports, through the app -----------------------------------------------------------


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    for index, link in enumerate(
        [
            "https://www.fake-shop.example/pay/?utm_source=fb",
            "http://fake-shop.example/pay",
            "fake-shop.example/pay#top",
        ]
    ):
        bundle.report(bundle.source(), links=[link], description=f"Shop report {index}")
    bundle.report(bundle.source(), links=["@Scam_Boss"], files=[PHOTO], description="Handle one")
    other = bundle.report(
        bundle.source(),
        links=["https://instagram.com/scam_boss"],
        description="Handle two",
    )
    bundle.add_file(other, PHOTO[0], "renamed.png", "image/png")
    bundle.report(bundle.source(), links=["https://unrelated.example/"], description="Alone")
    return bundle


@pytest.fixture
def app(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Iterator[Flask]:
    yield from workstation_app(imported_vault(tmp_path, analyst, SERVER, pickup))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def test_clusters_are_ordered_by_size(client: FlaskClient) -> None:
    page = client.get("/connections?lang=en").get_data(as_text=True)
    values = re.findall(r'<td><code dir="ltr">([^<]+)</code></td>', page)
    assert values[0] == "fake-shop.example/pay"  # three reports
    assert set(values[1:]) == {"@scam_boss", hashlib.sha256(PHOTO[0]).hexdigest()}
    assert len(values) == 3  # the lonely address is no cluster
    assert "unrelated.example" not in page
    sizes = re.findall(r"<tr><td>(\d+)</td>", page)
    assert sizes == ["3", "2", "2"]
    assert "Same file (SHA-256)" in page and "Account" in page


def test_a_report_page_lists_its_connections(client: FlaskClient, pickup: Pickup) -> None:
    first = str(pickup.reports[0]["id"])
    page = client.get(f"/reports/{first}?lang=en").get_data(as_text=True)
    section = page[page.index('id="connections"') : page.index('id="history"')]
    assert "fake-shop.example/pay" in section and "3 reports in all" in section
    for other in pickup.reports[1:3]:
        assert str(other["id"]) in section
    alone = str(pickup.reports[5]["id"])
    page = client.get(f"/reports/{alone}?lang=en").get_data(as_text=True)
    assert "No other report gives the same address" in page


def test_same_file_across_reports_by_sha256(app: Flask, pickup: Pickup) -> None:
    with open_vault(app.extensions["workstation"].config.vault) as vault:
        found, total = connections.clusters(vault)
    files = [cluster for cluster in found if cluster.kind == "file"]
    assert len(files) == 1 and files[0].size == 2 and total == 3
    assert files[0].value == hashlib.sha256(PHOTO[0]).hexdigest()


def test_files_imported_before_hashes_are_hashed_later(app: Flask) -> None:
    vault_path = app.extensions["workstation"].config.vault
    with open_vault(vault_path) as vault, vault.transaction() as db:
        db.execute("UPDATE items SET sha256 = NULL")
        db.execute("DELETE FROM report_keys WHERE kind = 'file'")
    client = app.test_client()
    client.post("/login", data={"passphrase": PASSPHRASE})
    page = client.get("/connections?lang=en").get_data(as_text=True)
    assert "2 files imported earlier were hashed" in page
    assert "Same file (SHA-256)" in page
