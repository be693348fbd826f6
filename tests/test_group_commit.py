"""Group commit (source_interface/store/writes.py) on a real SQLCipher index: writes that wait
share a transaction, one failing write is rolled back alone, a failed COMMIT fails them all,
and the blob folder is synced before any row that refers to a new blob commits."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlcipher3

from blagh.offload import Offload
from blagh.sqlcipher import connect
from source_interface.store import Store
from source_interface.store.index import NewSource
from source_interface.store.writes import GroupCommit

KEY = bytes(range(32))


def _table(tmp_path: Path) -> tuple[Offload, GroupCommit, dict[str, sqlite3.Connection]]:
    connections: dict[str, sqlite3.Connection] = {}

    def connection() -> sqlite3.Connection:
        if "db" not in connections:
            connections["db"] = connect(tmp_path / "t.db", KEY)
            connections["db"].execute("CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")
        return connections["db"]

    offload = Offload("writer", threads=1, queue=64)
    return offload, GroupCommit(offload, connection), connections


def _insert(db: dict[str, sqlite3.Connection], value: int) -> int:
    db["db"].execute("INSERT INTO t (v) VALUES (?)", (value,))
    return value


def test_writes_waiting_together_share_one_transaction(tmp_path: Path) -> None:
    offload, writes, db = _table(tmp_path)
    writes.run(_insert, db, 0)
    inside, release = threading.Event(), threading.Event()

    def hold(_: object) -> None:
        inside.set()
        assert release.wait(30)

    first = threading.Thread(target=writes.run, args=(hold, db))
    first.start()
    assert inside.wait(30)
    # While the first batch is held, ten writes queue up (one of them fails).
    results: dict[int, object] = {}

    def write(value: int) -> None:
        try:
            results[value] = writes.run(_insert, db, value if value != 5 else 0)
        except sqlcipher3.IntegrityError as error:
            results[value] = error

    others = [threading.Thread(target=write, args=(v,)) for v in range(1, 11)]
    for thread in others:
        thread.start()
    while offload.in_flight < 1 or len(writes._pending) < 10:
        threading.Event().wait(0.01)
    release.set()
    first.join()
    for thread in others:
        thread.join()
    assert writes.batches == 3, "the ten queued writes went in one transaction"
    assert isinstance(results[5], sqlcipher3.IntegrityError), "the duplicate failed alone"
    assert {v: r for v, r in results.items() if v != 5} == {v: v for v in range(1, 11) if v != 5}
    stored = {v for (v,) in db["db"].execute("SELECT v FROM t")}
    assert stored == set(range(11)) - {5}


def test_a_failed_commit_fails_every_write_of_the_batch(tmp_path: Path) -> None:
    offload, writes, db = _table(tmp_path)
    writes.run(_insert, db, 0)

    def failing_sync() -> None:
        raise OSError("no space left on device")

    failing = GroupCommit(offload, lambda: db["db"], failing_sync)
    with pytest.raises(OSError, match="no space"):
        failing.run(_insert, db, 7)
    assert [v for (v,) in db["db"].execute("SELECT v FROM t")] == [0], "rolled back"


def test_no_row_commits_before_its_blob_is_durable(tmp_path: Path) -> None:
    """The store's blob folder defers the folder fsync of each rename to the next commit: a
    row that refers to a new blob commits only after the folder was synced."""
    store = Store(tmp_path / "store", KEY)
    synced: list[int] = []
    real = store.blobs.sync_dir

    def counting_sync() -> None:
        synced.append(1)
        real()

    store.blobs.sync_dir = counting_sync  # type: ignore[method-assign]
    blob = store.new_blob()
    blob.write(b"x" * 100)
    ref = blob.commit()
    assert synced == [], "the rename alone does not sync the folder"
    store.index.add_report(secrets.token_hex(16), [("file", ref)], new_source=NewSource(None, None))
    assert synced == [1], "synced before the row committed"
    store.index.expire_sessions()
    assert synced == [1], "no rename since: no folder fsync"
    store.close()
