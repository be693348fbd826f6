"""Pickup requests that stay flat as the store grows: a request whose answer did not change
reads one row (the generation counters the index's triggers keep), never the item list; any
change to what a bundle holds makes a new one; no copy outlives a deleted envelope."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask import Flask
from pickup_helpers import Reply, Server, add_report, make_server, reply_bundle

from blagh.pickup_tokens import new_token, token_hash
from crypto.keys import generate_analyst_key
from source_interface.pickup.app import create_pickup_app
from source_interface.pickup.bundles import PickupBundle, PickupBundles, import_reply_bundle
from source_interface.store import Store
from source_interface.store.index import today

LISTING = "i.delivered_day IS NULL"
"""Text of the one statement that lists undelivered items."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path)
    try:
        yield server
    finally:
        server.close()


def bundles(server: Server) -> PickupBundles:
    return PickupBundles(server.store, server.config.recipients.analysts, server.signing_key)


def current(builder: PickupBundles) -> tuple[str, int, bytes]:
    """(bundle id, items, bytes) of the current bundle."""
    bundle: PickupBundle = builder.open_current()
    with bundle.file:
        return bundle.bundle_id, bundle.items, bundle.file.read()


class Statements:
    """Every SQL statement a store's connection (of this thread) runs while counting."""

    def __init__(self, store: Store) -> None:
        self.seen: list[str] = []
        self._db = store.index._db  # the connection this thread reads with

    def __enter__(self) -> Statements:
        self._db.set_trace_callback(self.seen.append)
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.set_trace_callback(None)

    def listings(self) -> int:
        return sum(LISTING in sql for sql in self.seen)


def test_a_request_with_nothing_changed_lists_no_item(server: Server) -> None:
    for _ in range(3):
        add_report(server, files=2)
    builder = bundles(server)
    with Statements(server.store) as first:
        built = current(builder)
    assert first.listings() == 1
    for _ in range(3):
        with Statements(server.store) as again:
            assert current(builder) == built
        assert again.listings() == 0
        assert not any("FROM items" in sql for sql in again.seen), again.seen
        assert len(again.seen) <= 2, again.seen


def test_through_the_api_an_unchanged_bundle_lists_nothing(server: Server) -> None:
    add_report(server)
    token = new_token()
    assert server.store.index.add_pickup_token("station-1", token_hash(token))
    app: Flask = create_pickup_app(server.config)
    store: Store = app.extensions["blagh-pickup"].store
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        first = client.get("/v1/bundle", headers=headers)
        body = first.get_data()
        first.close()
        with Statements(store) as again:
            second = client.get("/v1/bundle", headers=headers)
            assert second.get_data() == body
            second.close()
        assert second.headers["ETag"] == first.headers["ETag"]
        assert again.listings() == 0, again.seen
    finally:
        store.close()


def test_a_new_process_reuses_the_bundle_recorded_in_the_index(server: Server) -> None:
    add_report(server)
    built = current(bundles(server))
    with Statements(server.store) as again:
        assert current(bundles(server)) == built
    assert again.listings() == 0


def test_other_keys_make_their_own_bundle(server: Server) -> None:
    add_report(server)
    ours = current(bundles(server))
    analysts = [*server.config.recipients.analysts, generate_analyst_key().public()]
    theirs = PickupBundles(server.store, analysts, server.signing_key)
    with Statements(server.store) as other:
        assert current(theirs)[0] != ours[0]
    assert other.listings() == 1


def acknowledge(server: Server, item_ids: list[str], **kwargs: Any) -> None:
    path = reply_bundle(
        server.store.pickup_dir.parent / f"r-{secrets.token_hex(4)}.bundle",
        server.analyst,
        acknowledged=item_ids,
        **kwargs,
    )
    import_reply_bundle(
        server.store,
        server.config.recipients.analysts,
        path,
        delivered_days=server.config.retention.delivered_days,
    )


def _new_report(server: Server, reporters: list[Any]) -> None:
    add_report(server)


def _new_message(server: Server, reporters: list[Any]) -> None:
    add_report(server, reporter=reporters[0])


def _acknowledgement(server: Server, reporters: list[Any]) -> None:
    acknowledge(server, [reporters[0].reports[0].items[0].id])


def _deletion_by_the_reporter(server: Server, reporters: list[Any]) -> None:
    server.store.delete_source(reporters[0].source_id)


def _deletion_by_the_analysts(server: Server, reporters: list[Any]) -> None:
    acknowledge(server, [], delete_reports=[reporters[0].reports[0].id])


def _reply_bundle_with_a_reply_and_an_acknowledgement(server: Server, reporters: list[Any]) -> None:
    reporter = reporters[1]
    reply = Reply(reporter.reports[0].id, reporter.public_key)
    acknowledge(server, [reporter.reports[0].items[1].id], replies=[reply])


def _retention_purge(server: Server, reporters: list[Any]) -> None:
    ids = [item.id for report in reporters[0].reports for item in report.items]
    acknowledge(server, ids)
    server.store.purge(0)


CHANGES: list[Callable[[Server, list[Any]], None]] = [
    _new_report,
    _new_message,
    _acknowledgement,
    _deletion_by_the_reporter,
    _deletion_by_the_analysts,
    _reply_bundle_with_a_reply_and_an_acknowledgement,
    _retention_purge,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__.strip("_"))
def test_any_change_makes_a_new_bundle(
    server: Server, change: Callable[[Server, list[Any]], None]
) -> None:
    reporters = [add_report(server, files=1) for _ in range(2)]
    builder = bundles(server)
    old_id, _, old_bytes = current(builder)
    change(server, reporters)
    with Statements(server.store) as after:
        new_id, items, new_bytes = current(builder)
    assert after.listings() == 1
    assert new_id != old_id
    expected = server.rows(
        "SELECT count(*) FROM items WHERE delivered_day IS NULL AND kind != 'reply'"
    )[0][0]
    assert items == expected
    cached = list(server.store.pickup_dir.glob("*.bundle"))
    assert len(cached) == 1 and cached[0].name.startswith(new_id), "the old copy went"
    # no copy of an envelope the store no longer holds
    for reporter in reporters:
        for item in (item for report in reporter.reports for item in report.items):
            if not (server.store.blobs.root / item.blob).exists():
                assert item.id.encode() not in cached[0].read_bytes()
                assert item.id.encode() not in new_bytes
    assert new_bytes != old_bytes


def test_a_reply_alone_changes_nothing_the_bundle_holds(server: Server) -> None:
    reporter = add_report(server)
    builder = bundles(server)
    before = current(builder)
    acknowledge(server, [], replies=[Reply(reporter.reports[0].id, reporter.public_key)])
    with Statements(server.store) as after:
        assert current(builder) == before
    assert after.listings() == 0


def test_every_change_moves_the_counters_in_the_same_transaction(server: Server) -> None:
    index = server.store.index
    seen = [index.pickup_state()]

    def moved(*, deleted: bool) -> None:
        state = index.pickup_state()
        assert state.generation > seen[-1].generation
        assert (state.deletions > seen[-1].deletions) == deleted
        seen.append(state)

    reporter = add_report(server, files=2)
    moved(deleted=False)
    with index.transaction() as db:
        db.execute(
            "UPDATE items SET delivered_day = ? WHERE id = ?",
            (today(), reporter.reports[0].items[0].id),
        )
    moved(deleted=False)
    with index.transaction() as db:
        db.execute(
            "UPDATE sources SET public_key = ? WHERE id = ?", (b"k" * 32, reporter.source_id)
        )
    moved(deleted=False)
    server.store.delete_source(reporter.source_id)  # cascades to reports and items
    moved(deleted=True)
    other = add_report(server)
    moved(deleted=False)
    server.store.delete_reports([other.reports[0].id])
    moved(deleted=True)


def test_a_bundle_built_while_an_item_it_copied_was_deleted_is_thrown_away(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bundle copies reports in (day, id) order, ids being random: "first" is the one copied
    # first, whichever arrived first.
    first, second = sorted((add_report(server), add_report(server)), key=lambda r: r.reports[0].id)
    copied = {item.blob for item in first.reports[0].items}
    opened: list[str] = []
    original = server.store.open_blob

    def open_blob(name: str) -> BinaryIO:
        if (
            name not in copied
            and copied <= set(opened)
            and server.store.index.source(first.source_id)
        ):
            # the first report's envelopes are all in the bundle being written: its reporter
            # deletes everything now, before the build is done
            server.store.delete_source(first.source_id)
        opened.append(name)
        return original(name)

    monkeypatch.setattr(server.store, "open_blob", open_blob)
    _, items, data = current(bundles(server))
    assert copied <= set(opened), "the first attempt copied them"
    assert items == len(second.reports[0].items)
    assert not any((server.store.blobs.root / name).exists() for name in copied)
    for path in server.store.pickup_dir.iterdir():
        assert not any(item.id.encode() in path.read_bytes() for item in first.reports[0].items)
    assert all(item.id.encode() not in data for item in first.reports[0].items)


def test_a_report_arriving_during_a_build_does_not_spoil_it(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_report(server)
    builder = bundles(server)
    original = server.store.open_blob
    arrived: list[Any] = []

    def open_blob(name: str) -> BinaryIO:
        if not arrived:
            arrived.append(add_report(server))
        return original(name)

    monkeypatch.setattr(server.store, "open_blob", open_blob)
    built = current(builder)
    assert built[1] == 2, "the bundle of the set it was listed from"
    monkeypatch.setattr(server.store, "open_blob", original)
    with Statements(server.store) as after:
        newer = current(builder)
    assert after.listings() == 1 and newer[1] == 4


def test_retention_removes_the_copies_of_what_it_deletes(server: Server) -> None:
    reporter = add_report(server, codename=False)
    builder = bundles(server)
    _, _, data = current(builder)
    ids = [item.id for item in reporter.reports[0].items]
    assert all(item_id.encode() in data for item_id in ids)
    acknowledge(server, ids)
    later = date.fromisoformat(today()) + timedelta(days=30)
    assert server.store.purge(7, today=later).items == len(ids)
    for path in server.store.pickup_dir.iterdir():
        assert not any(item_id.encode() in path.read_bytes() for item_id in ids)
    assert current(builder)[1] == 0
