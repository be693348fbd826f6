"""What happens when a reporter writes again: a closed case reopens, a purged case leaves a
tombstone the new case links to; unread markers, the "last activity" sort, the description's
preview and the workstation's own short reference in the inbox.

A real vault (SQLCipher) and real pickup bundles, imported one after the other as the server
would make them.
"""

from __future__ import annotations

import re
import secrets
import tarfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from workstation_helpers import (
    Analyst,
    Pickup,
    Source,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import cases, retention
from journalist_interface import search as inbox_search
from journalist_interface.importer import import_bundle
from journalist_interface.replies import add_reply, make_reply_bundle
from journalist_interface.vault import today

SERVER = ServerSigningKey.generate()
LONG = "Un faux magasin a pris mon argent. " * 10


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    bundle.report(bundle.source(), description=LONG, day="2025-03-01")
    bundle.report(bundle.source(), category="harassment", description="Insults.", day="2025-03-02")
    bundle.report(bundle.source(), description="Third one.", day="2026-01-05")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def follow_up(pickup: Pickup, index: int, directory: Path, message: str) -> Path:
    """A later pickup bundle that carries only a new message on report ``index``."""
    report = pickup.reports[index]
    source: Source = next(s for s in pickup.sources if s.id == report["source"])
    later = Pickup(pickup.analysts, sources=[source], reports=[dict(report)])
    later.message(str(report["id"]), source, message)
    return later.write(directory / secrets.token_hex(4), SERVER)


def rows(client: FlaskClient, path: str = "/") -> list[str]:
    return re.findall(r"<tr class=\"[^\"]*\">.*?</tr>", text(client.get(path)), re.S)


def test_a_follow_up_reopens_a_closed_case(
    vault_path: Path, pickup: Pickup, tmp_path: Path
) -> None:
    report = str(pickup.reports[0]["id"])
    with open_vault(vault_path) as vault:
        cases.update(vault, report, status="closed", reason="passed to the police")
        import_bundle(vault, follow_up(pickup, 0, tmp_path, "They came back."))
        case = cases.case(vault, report)
        assert case is not None and case.status == "in_progress"
        assert case.close_reason == "" and case.closed_on is None
        assert case.history[0].event == "status"
        assert case.history[0].detail == cases.REOPENED
        page = inbox_search.inbox(vault, inbox_search.InboxQuery(status="open"))
        assert report in [row.id for row in page.rows]
        # an open case stays as it is
        other = str(pickup.reports[1]["id"])
        cases.update(vault, other, status="escalated")
        import_bundle(vault, follow_up(pickup, 1, tmp_path, "More insults."))
        assert cases.case(vault, other).status == "escalated"  # type: ignore[union-attr]


def test_unread_markers_last_activity_and_preview(
    app: Flask, vault_path: Path, pickup: Pickup, tmp_path: Path
) -> None:
    first, second, third = (str(r["id"]) for r in pickup.reports)
    client = logged_in(app)
    assert len(rows(client)) == 3
    assert all("unread" in row for row in rows(client))
    client.get(f"/reports/{first}")
    client.get(f"/reports/{second}")
    client.get(f"/reports/{third}")
    assert not any(" unread" in row for row in rows(client))
    # the first report's reporter writes again: only it is unread, and first by last activity
    app.extensions["workstation"].sessions.close()  # the vault opens in one process at a time
    with open_vault(vault_path) as vault:
        import_bundle(vault, follow_up(pickup, 0, tmp_path, "Anything new?"))
    client = logged_in(app)
    unread = [row for row in rows(client, "/?sort=activity") if " unread" in row]
    assert len(unread) == 1 and first in unread[0]
    assert first in rows(client, "/?sort=activity")[0]
    assert first not in rows(client, "/?sort=newest")[0]
    # a one-line preview of the description, cut at a word
    preview = re.search(r'<p class="description-preview" dir="auto">([^<]*)</p>', unread[0])
    assert preview is not None
    assert preview.group(1).startswith("Un faux magasin a pris mon argent.")
    assert preview.group(1).endswith("…") and len(preview.group(1)) <= inbox_search.PREVIEW + 1
    # unread is per analyst: opening the report marks it read for this analyst only
    client.get(f"/reports/{first}")
    assert not any(" unread" in row for row in rows(client))


def test_a_purged_case_leaves_a_tombstone_the_new_case_links_to(
    vault_path: Path, pickup: Pickup, tmp_path: Path
) -> None:
    report = str(pickup.reports[0]["id"])
    with open_vault(vault_path) as vault:
        make_reply_bundle(vault, tmp_path / "acks.bundle")  # everything acknowledged
        old_ref = vault.report(report).ref  # type: ignore[union-attr]
        cases.update(vault, report, status="closed", reason="not a crime")
        purged_on = date.fromisoformat(today()) + timedelta(days=40)
        assert retention.purge(vault, 30, on=purged_on).purged == (report,)
        tomb = cases.tombstone(vault, report)
        assert tomb is not None
        assert (tomb.ref, tomb.closed_on, tomb.purged_on) == (
            old_ref,
            today(),
            purged_on.isoformat(),
        )
        import_bundle(vault, follow_up(pickup, 0, tmp_path, "I am writing again."))
        new = vault.report(report)
        assert new is not None and not new.received and new.ref != old_ref
        assert [entry.text for entry in new.conversation] == ["I am writing again."]
    with workstation_app_on(vault_path) as app:
        client = logged_in(app)
        inbox = text(client.get("/"))
        assert "Follow-up to a purged case" in inbox
        assert "Report not received yet" not in inbox
        page = text(client.get(f"/reports/{report}"))
        assert f'after their case {old_ref} was closed on <time datetime="{today()}">' in page
        assert f'purged on <time datetime="{purged_on.isoformat()}">' in page
        assert "The report&#39;s own text has not arrived" not in page


def test_references_are_per_year_never_reused_and_never_sent(
    vault_path: Path, pickup: Pickup, analyst: Analyst, tmp_path: Path
) -> None:
    first, second, third = (str(r["id"]) for r in pickup.reports)
    with open_vault(vault_path) as vault:
        refs = [vault.report(r).ref for r in (first, second, third)]  # type: ignore[union-attr]
        assert refs == ["2025/0001", "2025/0002", "2026/0001"]
        make_reply_bundle(vault, tmp_path / "acks.bundle")
        cases.update(vault, second, status="closed", reason="duplicate")
        retention.purge(vault, 0)
        more = Pickup([analyst.key])
        more.report(more.source(), day="2025-12-31")
        import_bundle(vault, more.write(tmp_path / "more", SERVER))
        assert vault.report(str(more.reports[0]["id"])).ref == "2025/0003"  # type: ignore[union-attr]
        add_reply(vault, first, "We read your report.")
        bundle = tmp_path / "replies.bundle"
        make_reply_bundle(vault, bundle)
    with tarfile.open(bundle) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is None or b"2025/0001" not in data.read()


class workstation_app_on:
    """The app on a vault, as a context manager."""

    def __init__(self, path: Path) -> None:
        self.apps = workstation_app(path)

    def __enter__(self) -> Flask:
        return next(self.apps)

    def __exit__(self, *exc: object) -> None:
        next(self.apps, None)


def test_case_controls_come_before_a_long_conversation(
    vault_path: Path, pickup: Pickup, tmp_path: Path
) -> None:
    """The status, assignee and tags are in a side column placed before the report in the page:
    at the top on a narrow window, beside it on a wide one, never after 3,000 px of messages."""
    report = str(pickup.reports[0]["id"])
    long = Pickup(pickup.analysts)
    source = next(s for s in pickup.sources if s.id == pickup.reports[0]["source"])
    long.sources.append(source)
    long.reports.append(dict(pickup.reports[0]))
    for number in range(60):
        long.message(report, source, f"Message number {number}. " * 20)
    with open_vault(vault_path) as vault:
        import_bundle(vault, long.write(tmp_path / "long", SERVER))
    with workstation_app_on(vault_path) as app:
        html = text(logged_in(app).get(f"/reports/{report}"))
    panel = html.index('<aside class="case-panel"')
    assert panel < html.index('id="conversation"') < html.index("Message number 59.")
    for control in ('id="status"', 'id="assignee"', 'id="new-tag"', 'href="#notes"'):
        assert panel < html.index(control) < html.index("</aside>")
    css = (Path(__file__).parents[1] / "journalist_interface/static/workstation.css").read_text()
    assert ".case-panel { grid-column: 2;" in css


def test_bulk_status_assignee_and_tag(app: Flask, vault_path: Path, pickup: Pickup) -> None:
    first, second, third = (str(r["id"]) for r in pickup.reports)
    client = logged_in(app)
    inbox = text(client.get("/?sort=newest"))
    token = re.search(r'name="csrf" value="([^"]+)"', inbox)
    assert token is not None and 'form="bulk"' in inbox

    def bulk(*reports: str, **fields: str) -> TestResponse:
        data = {"csrf": token.group(1), "back": "sort=newest", "report": list(reports), **fields}
        return client.post("/bulk", data=data)

    # what is asked is checked before anything changes
    refused = bulk(first, second, status="closed", reason=" ")
    assert refused.status_code == 400 and "a reason is required" in text(refused)
    assert bulk(first, second, assignee="nobody-here").status_code == 400
    assert bulk(first, tag="no/slash").status_code == 400
    assert "Tick at least one report" in text(bulk(status="triaged"))
    assert bulk("not-an-id", status="triaged").status_code == 404
    done = bulk(
        first, second, status="closed", reason="duplicate", assignee="analyst", tag="Wave 1"
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/?sort=newest&done=2"
    assert "The change is saved for 2 reports." in text(client.get(done.headers["Location"]))
    app.extensions["workstation"].sessions.close()
    with open_vault(vault_path) as vault:
        for report in (first, second):
            case = cases.case(vault, report)
            assert case is not None
            assert (case.status, case.close_reason, case.assignee) == (
                "closed",
                "duplicate",
                "analyst",
            )
            assert case.tags == ("wave 1",)
            assert {c.event for c in case.history} == {"status", "assign", "tag_added"}
        untouched = cases.case(vault, third)
        assert untouched is not None and untouched.status == "new" and not untouched.history
