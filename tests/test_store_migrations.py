"""Schema migrations of the server's index (source_interface/store/migrations.py).

Old indexes are made here, by the test: a store written by today's code, then taken back to
version 2 as Blagh made it before ``submissions`` existed (no such table, ``user_version`` 2),
with its rows and blobs.  Everything is real: SQLCipher files, the Flask app, a killed process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pickup_helpers import add_report, make_server
from source_helpers import Site, analyst_reports, fresh_token, post_report

from blagh.config import load_config
from blagh.sqlcipher import connect
from crypto.keys import AnalystKey
from source_interface.app import create_app
from source_interface.store import Report, Store, migrations
from source_interface.store.index import StoreVersionError


def _index_path(server_path: Path) -> Path:
    return server_path / "store" / "index.db"


def _key(data: Path) -> bytes:
    return bytes.fromhex((data / "db.key").read_text("ascii"))


def _make_version_2(tmp_path: Path) -> tuple[Path, AnalystKey]:
    """A data folder whose index is at version 2 and holds one report with a file."""
    server = make_server(tmp_path)
    add_report(server, "a report from before the upgrade", files=1)
    server.close()
    db = connect(_index_path(server.data_dir.path), _key(server.data_dir.path))
    try:
        db.execute("DROP TABLE submissions")
        db.execute("DROP INDEX items_by_delivery")
        db.execute("CREATE INDEX items_by_delivery ON items(delivered_day)")
        db.execute("PRAGMA user_version = 2")
    finally:
        db.close()
    return server.data_dir.path, server.analyst


def _index_state(data: Path) -> tuple[int, list[str]]:
    db = connect(_index_path(data), _key(data))
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = sorted(n for (n,) in db.execute("SELECT name FROM sqlite_master"))
    finally:
        db.close()
    return version, tables


def test_a_version_2_index_is_upgraded_at_open_and_serves(tmp_path: Path) -> None:
    """The old index opens, is brought to the latest version, takes a new report (which
    records its form's submission in the new table), and the old report still opens."""
    data, analyst = _make_version_2(tmp_path)
    version, tables = _index_state(data)
    assert version == 2
    assert not [t for t in tables if "submission" in t]
    config = load_config(
        {
            "instance": {"data_dir": str(data)},
            "recipients": {"analysts": [analyst.public().to_line()]},
            "source_interface": {"default_language": "en"},
        }
    )
    site = Site(data, analyst, config, create_app(config))
    try:
        client = site.client()
        response = post_report(client, fresh_token(client), description="after the upgrade")
        assert response.status_code in (200, 303), response.status_code
        descriptions = sorted(r.fields["description"] for r in analyst_reports(site))
    finally:
        site.close()
    assert descriptions == ["a report from before the upgrade", "after the upgrade"]
    version, tables = _index_state(data)
    assert version == migrations.LATEST
    assert {"submissions", "submissions_by_day"} <= set(tables)
    assert_delivery_index_holds_delivered_items_only(data)


def assert_delivery_index_holds_delivered_items_only(data: Path) -> None:
    """Version 4: new (undelivered) items add nothing to ``items_by_delivery``, and the two
    queries that ask for delivered items still find them through it."""
    db = connect(_index_path(data), _key(data))
    try:
        (sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'items_by_delivery'"
        ).fetchone()
        assert sql.endswith("WHERE delivered_day IS NOT NULL"), sql
        for query in (
            "SELECT i.id FROM items AS i"
            " WHERE i.delivered_day IS NOT NULL AND i.delivered_day <= '2026-01-01'",
            "SELECT MAX(delivered_day) FROM items WHERE delivered_day IS NOT NULL",
        ):
            plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + query))
            assert "items_by_delivery" in plan, (query, plan)
    finally:
        db.close()


_CRASHING_OPEN = """
import os, signal, sys
from pathlib import Path
from crypto.keys import AnalystKey
from source_interface.store import Report, Store, migrations
from source_interface.store import Store

real = migrations.STEPS[3]

def step_then_die(db):
    real(db)
    os.kill(os.getpid(), signal.SIGKILL)  # the power goes before the step's COMMIT

migrations.STEPS[3] = step_then_die
Store(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
"""


def test_a_crash_in_the_middle_of_a_step_leaves_an_index_that_upgrades_next_time(
    tmp_path: Path,
) -> None:
    data, _ = _make_version_2(tmp_path)
    before = _index_state(data)
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASHING_OPEN), data / "store", _key(data).hex()],
        capture_output=True,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr.decode()
    assert _index_state(data) == before  # the half-done step left nothing
    store = _open_store(data)
    try:
        assert [len(r.items) for r in _all_reports(store)] == [2]
    finally:
        store.close()
    version, tables = _index_state(data)
    assert version == migrations.LATEST
    assert "submissions" in tables


def _open_store(data: Path) -> Store:
    return Store(data / "store", _key(data))


def _all_reports(store: Store) -> list[Report]:
    with store.index.transaction() as db:
        rows = db.execute("SELECT source_id, id FROM reports").fetchall()
    return [r for s, i in rows if (r := store.index.report(s, i)) is not None]


def test_an_index_newer_than_the_code_is_refused_and_left_alone(tmp_path: Path) -> None:
    data, _ = _make_version_2(tmp_path)
    db = connect(_index_path(data), _key(data))
    db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    db.close()
    before = _index_state(data)
    with pytest.raises(
        StoreVersionError, match=rf"newer version of Blagh.*index version {migrations.LATEST + 1}"
    ):
        _open_store(data)
    assert _index_state(data) == before
