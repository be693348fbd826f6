"""Statistics: reports per category per week, open cases by status, median time to a first
reply, and the page that draws them as SVG made on the server (no script)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import Markup
from workstation_helpers import (
    Analyst,
    Pickup,
    logged_in,
    make_analyst,
    make_vault,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import charts, stats
from journalist_interface.importer import import_bundle

SERVER = ServerSigningKey.generate()


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    # Week of Monday 2025-03-03: two fraud, one hate.  Week of 2025-03-10: one fraud.
    for day, category in [
        ("2025-03-03", "fraud"),
        ("2025-03-09", "fraud"),
        ("2025-03-05", "hate"),
        ("2025-03-12", "fraud"),
    ]:
        bundle.report(bundle.source(), category=category, day=day)
    bundle.report(bundle.source(codename=False), category="hate", day="2025-03-12")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path) as vault:
        import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
        with vault.transaction() as db:
            # Replies 0, 2 and 4 days after three reports (the first reply counts).
            for index, day in [(0, "2025-03-03"), (0, "2025-03-20"), (1, "2025-03-11"),
                               (3, "2025-03-16")]:  # fmt: skip
                db.execute(
                    "INSERT INTO replies (id, report_id, day, position, text, envelope)"
                    " VALUES (?, ?, ?, ?, 'x', x'00')",
                    (f"{index}{day}", pickup.reports[index]["id"], day, 1000 + len(day) + index),
                )
            db.execute(
                "UPDATE reports SET status = 'escalated' WHERE id = ?", (pickup.reports[0]["id"],)
            )
            db.execute(
                "UPDATE reports SET status = 'closed' WHERE id = ?", (pickup.reports[1]["id"],)
            )
    return path


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def test_figures(vault_path: Path) -> None:
    with open_vault(vault_path) as vault:
        figures = stats.compute(vault, weeks=3)
    assert figures.weeks == ("2025-02-24", "2025-03-03", "2025-03-10")
    assert figures.per_category == {"fraud": (0, 2, 1), "hate": (0, 1, 1)}
    assert figures.open_by_status == (
        ("new", 3),
        ("triaged", 0),
        ("in_progress", 0),
        ("escalated", 1),
    )
    assert figures.closed == 1 and figures.reports == 5
    assert figures.replied == 3
    assert figures.median_days == 2  # waits of 0, 2 and 4 days
    assert figures.median_days_per_week == (None, 1, 4)  # (0 + 2) / 2, then 4
    assert figures.waiting == 1  # the one without codename cannot be answered: not waiting


def test_empty_vault(tmp_path: Path, analyst: Analyst) -> None:
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path) as vault:
        figures = stats.compute(vault)
    assert len(figures.weeks) == stats.DEFAULT_WEEKS
    assert figures.per_category == {} and figures.median_days is None and figures.reports == 0


def test_page_draws_svg_without_script(client: FlaskClient) -> None:
    response = client.get("/statistics?weeks=8&lang=en")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<script" not in page and " style=" not in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert page.count('role="img"') == 3
    assert '<title id="per-category-title">Reports per category per week</title>' in page
    assert "Fraud, scam or phishing" in page and "Escalated" in page
    assert "Median wait for a first reply over these weeks: 2 days (3 reports answered)." in page
    assert '<option value="8" selected>' in page
    # The numbers are there as tables too.
    assert re.search(r"<th scope=\"row\">Fraud, scam or phishing</th>(<td>\d+</td>){8}", page)
    assert client.get("/statistics?weeks=999").status_code == 200


@pytest.mark.parametrize(
    ("language", "word"), [("fr", "Statistiques"), ("ar", "الإحصاءات"), ("en", "Statistics")]
)
def test_page_in_three_languages(client: FlaskClient, language: str, word: str) -> None:
    page = client.get(f"/statistics?lang={language}").get_data(as_text=True)
    assert f"<h1>{word}</h1>" in page


def test_chart_labels_are_escaped() -> None:
    svg = charts.stacked_columns("x", "<title>", "d", ["<a>"], [("<script>alert(1)</script>", [3])])
    assert isinstance(svg, Markup)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    bars = charts.horizontal_bars("y", "t", "d", [("<b>", 2), ("c", 0)])
    assert "&lt;b&gt;" in bars and "<b>" not in bars
    gaps = charts.columns_with_gaps("z", "t", "d", ["a", "b"], [None, 1.5], "days")
    assert gaps.count("<rect") == 1 and "1.5 days" in gaps
