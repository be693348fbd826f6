"""Retention: delivered ciphertext goes after [retention] delivered_days; what is left with
nothing goes with it; and the reporter still reads the answers.  Plus the loop from the
reporter's browser to a reply read with the codename, through the pickup API."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pickup_helpers import (
    Reply,
    Server,
    add_report,
    all_item_ids,
    make_server,
    reply_bundle,
)
from source_helpers import (
    confirm_codename,
    login,
    open_site,
    page_text,
    submit_for_codename,
)

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.pickup_tokens import new_token, token_hash
from crypto.keys import AnalystPublicKey
from source_interface.pickup.app import create_pickup_app
from source_interface.pickup.bundles import PickupBundles, import_reply_bundle
from source_interface.store.index import today

TODAY = date.fromisoformat(today())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path)
    try:
        yield server
    finally:
        server.close()


def deliver(server: Server, item_ids: list[str], days_ago: int) -> None:
    day = (TODAY - timedelta(days=days_ago)).isoformat()
    with server.store.index.transaction() as db:
        db.executemany(
            "UPDATE items SET delivered_day = ? WHERE id = ?", [(day, i) for i in item_ids]
        )


def item_ids(reporter: object) -> list[str]:
    return [item.id for report in reporter.reports for item in report.items]  # type: ignore[attr-defined]


def test_delivered_items_go_after_the_retention_days(server: Server) -> None:
    old, edge, recent, new = (add_report(server) for _ in range(4))
    deliver(server, item_ids(old), 8)
    deliver(server, item_ids(edge), 7)
    deliver(server, item_ids(recent), 6)
    blobs_before = server.store.blobs.names()
    gone = {item.blob for r in (old, edge) for report in r.reports for item in report.items}

    purged = server.store.purge(7)

    assert purged.items == 4
    left = {i for (i,) in server.rows("SELECT id FROM items")}
    assert left == set(item_ids(recent) + item_ids(new))
    assert server.store.blobs.names() == blobs_before - gone
    assert server.store.purge(7).items == 0


def test_what_is_left_with_nothing_goes_too(server: Server, tmp_path: Path) -> None:
    anonymous = add_report(server, codename=False)
    with_codename = add_report(server)
    answered = add_report(server)
    reply = Reply(answered.reports[0].id, answered.public_key or b"")
    import_reply_bundle(
        server.store,
        server.config.recipients.analysts,
        reply_bundle(tmp_path / "r", server.analyst, [reply], acknowledged=all_item_ids(server)),
        delivered_days=7,
    )
    half_made = server.store.index.create_source(secrets.token_bytes(32), secrets.token_bytes(32))

    purged = server.store.purge(7, today=TODAY + timedelta(days=7))

    assert (purged.items, purged.reports, purged.sources) == (6, 1, 1)
    reports = {r for (r,) in server.rows("SELECT id FROM reports")}
    assert anonymous.reports[0].id not in reports, "nobody can come back to it or be answered"
    assert with_codename.reports[0].id in reports, "its reporter can still log in and write"
    assert answered.reports[0].id in reports
    sources = {s for (s,) in server.rows("SELECT id FROM sources")}
    assert sources == {with_codename.source_id, answered.source_id, half_made.id}
    assert server.rows("SELECT id, kind FROM items") == [(reply.id, "reply")]
    assert server.store.blobs.names() == server.store.index.blob_names()


def test_a_purge_deletes_the_pickup_bundle_copies(server: Server) -> None:
    reporter = add_report(server)
    bundles = PickupBundles(server.store, server.config.recipients.analysts, server.signing_key)
    bundles.open_current().file.close()
    assert list(server.store.pickup_dir.glob("*.bundle"))
    deliver(server, item_ids(reporter), 0)
    server.store.purge(0)
    assert not list(server.store.pickup_dir.glob("*.bundle"))


def test_retention_zero_deletes_at_the_import(tmp_path: Path) -> None:
    server = make_server(tmp_path, delivered_days=0)
    try:
        add_report(server, files=2)
        path = reply_bundle(tmp_path / "r", server.analyst, acknowledged=all_item_ids(server))
        result = import_reply_bundle(
            server.store, server.config.recipients.analysts, path, delivered_days=0
        )
        assert result.summary() == (
            "0 replies stored, 3 items acknowledged, 0 reports deleted, "
            "3 delivered items past retention removed"
        )
        assert server.rows("SELECT count(*) FROM items") == [(0,)]
        assert server.store.blobs.names() == set()
    finally:
        server.close()


def test_purge_command(server: Server) -> None:
    reporter = add_report(server, codename=False)
    deliver(server, item_ids(reporter), 30)
    result = CliRunner().invoke(cli, ["purge", "--data-dir", str(server.data_dir.path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Removed 2 delivered item(s), 1 report(s) and 1 source(s) with nothing left.\n"
    )


def test_the_reporter_reads_the_reply_with_the_codename(tmp_path: Path) -> None:
    """Browser (no JavaScript) → store → pickup API → analyst → reply bundle → pickup API →
    the reporter logs in with the codename and reads the answer, even after retention has
    deleted the delivered report itself."""
    with open_site(tmp_path) as site:
        browser = site.client()
        words = submit_for_codename(
            browser, [(b"\x89PNG screenshot", "shot.png", "image/png")], description="scam"
        )
        assert confirm_codename(browser, words).status_code == 303
        pickup = create_pickup_app(site.config)
        token = new_token()
        site.store.index.add_pickup_token("station", token_hash(token))
        station = pickup.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        bundle = tmp_path / "pickup.bundle"
        bundle.write_bytes(station.get("/v1/bundle", headers=headers).data)
        server_key = site.data_dir / "server-signing.key"
        from crypto.keys import ServerSigningKey

        verify = ServerSigningKey(server_key.read_bytes()).public().verify
        with BundleReader(bundle, [verify], "blagh-pickup") as reader:
            manifest = reader.manifest
        (source,) = manifest["sources"]
        (report,) = manifest["reports"]
        analysts = [AnalystPublicKey.from_line(line).encryption for line in manifest["analysts"]]
        reply = Reply(report["id"], bytes.fromhex(source["public_key"]), "We took it down.")
        replies = reply_bundle(
            tmp_path / "replies.bundle",
            site.analyst,
            [reply],
            acknowledged=[item["id"] for item in manifest["items"]],
            analysts=analysts,
        )
        answer = station.post("/v1/replies", data=replies.read_bytes(), headers=headers)
        assert answer.status_code == 200, answer.json
        stored = site.rows("SELECT blob FROM items WHERE kind = 'reply'")
        assert b"We took it down" not in site.store.read_blob(stored[0][0])

        assert login(browser, words).status_code == 303
        assert "We took it down." in page_text(browser.get("/followup"))

        site.store.purge(0)
        assert site.rows("SELECT kind FROM items") == [("reply",)]
        page = browser.get("/followup")
        assert page.status_code == 200
        assert "We took it down." in page_text(page)
        pickup.extensions["blagh-pickup"].store.close()
