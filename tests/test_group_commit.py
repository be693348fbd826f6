"""Group commit (source_interface/store/writes.py) on a real SQLCipher index: writes that wait
share a transaction, one failing write is rolled back alone, a failed COMMIT fails them all,
a blob's rename is durable before its commit returns (folder fsyncs shared by the blobs
committed together), and writers of different processes take turns on a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlcipher3

from blagh.offload import Offload
from blagh.sqlcipher import connect
from source_interface.store import Store
from source_interface.store.index import Index, NewSource
from source_interface.store.writes import GroupCommit, WriterTurns

KEY = bytes(range(32))


def _table(
    tmp_path: Path, turn: Callable[[], contextlib.AbstractContextManager[None]] | None = None
) -> tuple[Offload, GroupCommit, dict[str, sqlite3.Connection]]:
    connections: dict[str, sqlite3.Connection] = {}

    def connection() -> sqlite3.Connection:
        if "db" not in connections:
            connections["db"] = connect(tmp_path / "t.db", KEY)
            connections["db"].execute("CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")
        return connections["db"]

    offload = Offload("writer", threads=1, queue=64)
    writes = GroupCommit(offload, connection, turn=turn or contextlib.nullcontext)
    return offload, writes, connections


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


def test_writes_queued_while_a_batch_waits_for_its_turn_join_it(tmp_path: Path) -> None:
    """Another process's writer holds the index: the writes that arrive meanwhile go in with
    the batch waiting for its turn, not in one more turn after it."""
    waiting, their_turn_ends = threading.Event(), threading.Event()

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        waiting.set()
        assert their_turn_ends.wait(30)  # the other writer's batch
        yield

    _, writes, db = _table(tmp_path, turn)
    results: dict[int, object] = {}

    def write(value: int) -> None:
        results[value] = writes.run(_insert, db, value)

    first = threading.Thread(target=write, args=(0,))
    first.start()
    assert waiting.wait(30)
    others = [threading.Thread(target=write, args=(v,)) for v in range(1, 6)]
    for thread in others:
        thread.start()
    while len(writes._pending) < 5:
        threading.Event().wait(0.01)
    their_turn_ends.set()
    for thread in [first, *others]:
        thread.join()
    assert writes.batches == 1, "one turn for the six writes"
    assert results == {v: v for v in range(6)}
    assert {v for (v,) in db["db"].execute("SELECT v FROM t")} == set(range(6))


def test_a_failed_commit_fails_every_write_of_the_batch(tmp_path: Path) -> None:
    offload, writes, db = _table(tmp_path)
    writes.run(_insert, db, 0)

    def failing_sync() -> None:
        raise OSError("no space left on device")

    failing = GroupCommit(offload, lambda: db["db"], failing_sync)
    with pytest.raises(OSError, match="no space"):
        failing.run(_insert, db, 7)
    assert [v for (v,) in db["db"].execute("SELECT v FROM t")] == [0], "rolled back"


def test_a_blob_is_durable_before_its_commit_returns(tmp_path: Path) -> None:
    """The folder fsync that makes a blob's rename durable happens inside ``commit()``: a row
    can only name a blob that survives a crash, and the index's COMMIT waits for no fsync of
    the blob folder."""
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
    assert synced == [1], "the rename was synced before commit() returned"
    store.index.add_report(secrets.token_hex(16), [("file", ref)], new_source=NewSource(None, None))
    assert synced == [1], "the row's COMMIT syncs no folder"
    store.close()


def test_blobs_committed_together_share_folder_fsyncs(tmp_path: Path) -> None:
    """Four commits: the first one's folder fsync is held until the three others have renamed
    their blobs.  It began before their renames, so it cannot cover them: one more fsync does,
    for all three, and each commit returns only after an fsync that covers its rename."""
    store = Store(tmp_path / "store", KEY)
    folder = store.blobs
    real = folder.sync_dir
    started: list[int] = []
    first_may_finish = threading.Event()

    def held_sync() -> None:
        started.append(folder._renames)
        if len(started) == 1:
            assert first_may_finish.wait(30)
        real()

    folder.sync_dir = held_sync  # type: ignore[method-assign]
    blobs = []
    for _ in range(4):
        blob = store.new_blob()
        blob.write(b"y" * 10)
        blobs.append(blob)
    committed: list[str] = []

    def commit(index: int) -> None:
        committed.append(blobs[index].commit().name)

    threads = [threading.Thread(target=commit, args=(0,))]
    threads[0].start()
    _wait_until(lambda: len(started) == 1)
    threads += [threading.Thread(target=commit, args=(i,)) for i in (1, 2, 3)]
    for thread in threads[1:]:
        thread.start()
    _wait_until(lambda: folder._renames == 4)
    assert committed == [], "nobody returned before the fsync covering their rename"
    first_may_finish.set()
    for thread in threads:
        thread.join(30)
    assert sorted(committed) == sorted(b.name for b in blobs)
    assert started == [1, 4], "one fsync for the first blob, one shared by the three others"
    store.close()


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_writer_turns_exclude_other_processes_and_their_forks(tmp_path: Path) -> None:
    """A turn is an flock of the process's own open file: another open of the lock file cannot
    take it meanwhile, nor can a fork of the process (which would share an inherited one)."""
    turns = WriterTurns(tmp_path / "index.db-lock")
    with turns.turn():
        other = os.open(tmp_path / "index.db-lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        child = os.fork()
        if child == 0:  # the fork opens a file of its own: the parent's turn excludes it
            try:
                fcntl.flock(turns._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)
            except BlockingIOError:
                os._exit(0)
        assert os.waitpid(child, 0)[1] == 0, "the fork took the turn the parent holds"
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the turn is over
    os.close(other)
    assert (tmp_path / "index.db-lock").stat().st_mode & 0o777 == 0o600
    turns.close()


def test_a_write_that_recovers_from_its_first_transaction_keeps_only_the_rest(
    tmp_path: Path,
) -> None:
    """A write's first transaction uses the write's own savepoint: if it fails and the write
    goes on, what it did is undone all the same, and the rest of the write commits."""
    index = Index(tmp_path / "index.db", KEY)
    index._db.execute("CREATE TABLE t (v INTEGER)")

    def write() -> None:
        with pytest.raises(RuntimeError), index.transaction() as db:
            db.execute("INSERT INTO t (v) VALUES (1)")
            raise RuntimeError
        with index.transaction() as db:
            db.execute("INSERT INTO t (v) VALUES (2)")

    index.writes.run(write)
    assert [v for (v,) in index._db.execute("SELECT v FROM t")] == [2]
    index.close()
