"""The server store on its own: blobs written temp → fsync → rename, the sweep, and the
SQLCipher index (really encrypted, WAL, days not times, all-or-nothing transactions)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlcipher3
from click.testing import CliRunner
from forensics import SQLCipherReader, clock_after, file_times, is_whole_day
from source_helpers import DAY, sqlite_error

from blagh.cli import cli
from blagh.datadir import DataDir
from blagh.sqlcipher import DatabaseError, connect
from crypto.keys import generate_analyst_key
from source_interface.store import BlobRef, Store
from source_interface.store.index import EXPIRY_GRAIN_SECONDS, Index, StoreVersionError, today

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "store", KEY)
    yield store
    store.close()


def blob(store: Store, data: bytes = b"ciphertext") -> BlobRef:
    pending = store.new_blob()
    pending.write(data)
    return pending.commit()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tmp_files(store: Store) -> list[Path]:
    return list(store.blobs.temp_dir.iterdir())


# --- blobs ----------------------------------------------------------------------------------


def test_a_blob_is_written_in_tmp_and_renamed_on_commit(store: Store) -> None:
    pending = store.new_blob()
    pending.write(b"first ")
    pending.write(b"second")
    temp = store.blobs.temp_dir / pending.name
    final = store.blobs.root / pending.name
    assert temp.exists() and not final.exists()
    assert pending.name not in store.blobs.names()
    assert re.fullmatch(r"[0-9a-f]{32}", pending.name)

    ref = pending.commit()
    assert not temp.exists() and final.exists()
    assert tmp_files(store) == []
    assert ref == BlobRef(pending.name, 12, hashlib.sha256(b"first second").hexdigest())
    assert store.read_blob(ref.name) == b"first second"
    with store.open_blob(ref.name) as f:
        assert f.read() == b"first second"
    assert store.blobs.names() == {ref.name}
    assert final.stat().st_mode & 0o777 == 0o600
    # Discarding after commit changes nothing.
    pending.discard()
    assert final.exists()


def test_discard_removes_the_temporary_file(store: Store) -> None:
    pending = store.new_blob()
    pending.write(b"abandoned")
    assert len(tmp_files(store)) == 1
    pending.discard()
    pending.discard()
    assert tmp_files(store) == []
    assert store.blobs.names() == set()


def test_folders_are_private(store: Store) -> None:
    for folder in (store.blobs.root, store.blobs.temp_dir, store.blobs.root.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


@pytest.mark.parametrize("name", ["../index.db", "tmp", "A" * 32, "0" * 31, "0" * 33, ""])
def test_blob_names_cannot_escape_the_folder(store: Store, name: str) -> None:
    with pytest.raises(ValueError, match="not a blob name"):
        store.open_blob(name)
    with pytest.raises(ValueError, match="not a blob name"):
        store.blobs.delete(name)


def test_sweep_removes_leftovers_and_keeps_what_rows_refer_to(store: Store) -> None:
    index = store.index
    source = index.create_source(None, None)
    in_report = blob(store, b"in a report")
    index.add_report(source.id, [("fields", in_report)])
    in_draft = blob(store, b"in a live draft")
    index.add_to_draft(secrets.token_bytes(32), [in_draft], 3600)
    orphan = blob(store, b"committed, never referenced (crash before the row)")
    half_written = store.new_blob()
    half_written.write(b"a crash in the middle of an upload")
    (store.blobs.temp_dir / "stray").write_bytes(b"x")

    assert store.sweep() == 3
    assert store.blobs.names() == {in_report.name, in_draft.name}
    assert tmp_files(store) == []
    assert not (store.blobs.root / orphan.name).exists()
    assert store.read_blob(in_report.name) == b"in a report"
    assert store.sweep() == 0


def test_sweep_deletes_expired_drafts_and_their_blobs(store: Store) -> None:
    index = store.index
    live, expired = secrets.token_bytes(32), secrets.token_bytes(32)
    kept = blob(store, b"live draft")
    old = [blob(store, b"old draft 1"), blob(store, b"old draft 2")]
    index.add_to_draft(live, [kept], 3600)
    index.add_to_draft(expired, old, 3600)
    with index.transaction() as db:
        db.execute(
            "UPDATE drafts SET expires = ? WHERE token_hash = ?", (int(time.time()) - 1, expired)
        )
    assert index.draft(expired) == [], "an expired draft is not handed out"
    assert index.draft(live) == [kept]

    assert store.sweep() == 0, "the expired drafts' blobs are deleted before the blob sweep"
    assert store.blobs.names() == {kept.name}
    assert index.draft(live) == [kept]
    with index.transaction() as db:
        assert db.execute("SELECT count(*) FROM drafts").fetchone() == (1,)


def test_adding_to_a_draft_extends_it(store: Store) -> None:
    index = store.index
    token = secrets.token_bytes(32)
    first, second = blob(store, b"1"), blob(store, b"2")
    index.add_to_draft(token, [first], 10)
    index.add_to_draft(token, [second], 3600)
    with index.transaction() as db:
        expiries = {e for (e,) in db.execute("SELECT expires FROM drafts")}
    assert len(expiries) == 1 and expiries.pop() >= time.time() + 3500
    assert index.draft(token) == [first, second]


def test_a_report_takes_its_draft_in_the_same_transaction(store: Store) -> None:
    index = store.index
    token = secrets.token_bytes(32)
    kept = blob(store, b"kept file")
    index.add_to_draft(token, [kept], 3600)
    source = index.create_source(None, None)
    report = index.add_report(source.id, [("fields", blob(store)), ("file", kept)], draft=token)
    assert [item.kind for item in report.items] == ["fields", "file"]
    assert index.draft(token) == []
    assert store.sweep() == 0
    assert kept.name in store.blobs.names()


# --- the index --------------------------------------------------------------------------------


def test_the_index_is_a_sqlcipher_file(store: Store, tmp_path: Path) -> None:
    store.index.create_source(b"v" * 32, b"p" * 32)
    path = tmp_path / "store" / "index.db"
    assert not path.read_bytes().startswith(b"SQLite format 3")
    assert "file is not a database" in sqlite_error(path)
    with pytest.raises(DatabaseError, match="wrong database key"):
        connect(path, bytes(32))
    with pytest.raises(DatabaseError):
        Index(path, b"\xff" * 32)
    # The right key opens it, from another connection too.
    db = connect(path, KEY)
    try:
        assert db.execute("SELECT count(*) FROM sources").fetchone() == (1,)
    finally:
        db.close()


def test_a_new_database_tags_its_pages_with_hmac_sha256(store: Store, tmp_path: Path) -> None:
    """The forensic reader (its own implementation of the page layout) finds 32-byte tags, and
    SQLCipher with its default HMAC-SHA512 cannot read the file."""
    store.index.create_source(None, None)
    path = tmp_path / "store" / "index.db"
    assert SQLCipherReader(path, KEY).page_hmac == "sha256"
    default = sqlcipher3.connect(str(path))
    try:
        default.execute(f"PRAGMA key = \"x'{KEY.hex()}'\"")
        with pytest.raises(sqlcipher3.DatabaseError, match="not a database"):
            default.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        default.close()


def test_a_database_made_with_sqlcipher_defaults_still_opens(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A database made before Blagh chose HMAC-SHA256 (SQLCipher's default HMAC-SHA512) opens,
    without SQLCipher logging the first try's failed check as if the file were tampered with;
    it takes writes and keeps its own layout; a wrong key is still refused."""
    path = tmp_path / "old.db"
    old = sqlcipher3.connect(str(path), isolation_level=None)
    try:
        old.execute(f"PRAGMA key = \"x'{KEY.hex()}'\"")
        old.execute("PRAGMA journal_mode = WAL")
        old.execute("CREATE TABLE t (x TEXT)")
        old.execute("INSERT INTO t VALUES ('written-before')")
    finally:
        old.close()
    capfd.readouterr()
    db = connect(path, KEY)
    try:
        assert "hmac check failed" not in capfd.readouterr().err
        assert db.execute("PRAGMA cipher_log_level").fetchone() == ("WARN",)  # set back
        assert db.execute("SELECT x FROM t").fetchall() == [("written-before",)]
        db.execute("INSERT INTO t VALUES ('written-after')")
        assert db.execute("PRAGMA cipher_hmac_algorithm").fetchone() == ("HMAC_SHA512",)
    finally:
        db.close()
    reader = SQLCipherReader(path, KEY)
    assert reader.page_hmac == "sha512"
    clear = reader.everything()
    assert b"written-before" in clear and b"written-after" in clear
    with pytest.raises(DatabaseError, match="wrong database key"):
        connect(path, bytes(32))


def test_wal_mode_and_integrity(store: Store, tmp_path: Path) -> None:
    source = store.index.create_source(None, None)
    store.index.add_report(source.id, [("fields", blob(store))])
    with store.index.transaction() as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert db.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert (tmp_path / "store" / "index.db-wal").exists()
    db = connect(tmp_path / "store" / "index.db", KEY)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        db.close()


def test_days_not_times(store: Store) -> None:
    index = store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    report = index.add_report(source.id, [("fields", blob(store)), ("file", blob(store, b"f"))])
    index.add_items(source.id, report.id, [("message", blob(store, b"m"))])
    with index.transaction() as db:
        days = [
            day
            for table in ("sources", "reports", "items")
            for (day,) in db.execute(f"SELECT day FROM {table}")  # noqa: S608 (fixed names)
        ]
        columns = {
            table: {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert len(days) == 5
    assert all(DAY.match(day) for day in days), days
    assert set(days) == {today()}
    assert source.day == report.day == today()
    # Nothing that could say who or exactly when: only a day, and the expiry sessions and
    # drafts need (deleted with them).
    suspicious = re.compile(r"ip|addr|agent|referr?er|time|created|updated|host", re.I)
    for table, names in columns.items():
        assert not [name for name in names if suspicious.search(name)], table
    timed = {table for table, names in columns.items() if "expires" in names}
    assert timed == {"drafts", "sessions"}


def test_items_only_go_to_the_owners_report(store: Store) -> None:
    index = store.index
    owner, stranger = index.create_source(None, None), index.create_source(None, None)
    report = index.add_report(owner.id, [("fields", blob(store))])
    assert not index.add_items(stranger.id, report.id, [("message", blob(store, b"x"))])
    assert not index.add_items(owner.id, "0" * 32, [("message", blob(store, b"y"))])
    assert index.report(stranger.id, report.id) is None
    found = index.report(owner.id, report.id)
    assert found is not None and [i.kind for i in found.items] == ["fields"]
    assert index.add_items(owner.id, report.id, [("reply", blob(store, b"r"))])
    found = index.report(owner.id, report.id)
    assert found is not None and [i.kind for i in found.items] == ["fields", "reply"]


def test_a_failed_report_leaves_no_row(store: Store) -> None:
    """All or nothing: a report whose second item cannot be inserted leaves no report."""
    index = store.index
    source = index.create_source(None, None)
    fields = blob(store)
    with pytest.raises(sqlcipher3.IntegrityError):
        index.add_report(source.id, [("fields", fields), ("file", fields)])
    with pytest.raises(sqlcipher3.IntegrityError):
        index.add_report(source.id, [("fields", blob(store)), ("nonsense", blob(store))])
    assert index.reports_of(source.id) == []
    with index.transaction() as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (0,)
    # And the connection is usable afterwards.
    assert index.add_report(source.id, [("fields", blob(store))]).items


def test_deleting_a_source_removes_its_rows_and_blobs(store: Store) -> None:
    index = store.index
    mine, theirs = index.create_source(b"a" * 32, b"p" * 32), index.create_source(None, None)
    my_blobs = [blob(store, b"1"), blob(store, b"2"), blob(store, b"3")]
    report = index.add_report(mine.id, [("fields", my_blobs[0]), ("file", my_blobs[1])])
    index.add_items(mine.id, report.id, [("reply", my_blobs[2])])
    index.create_session(b"t" * 32, mine.id, b"sealed", 60)
    their_blob = blob(store, b"theirs")
    index.add_report(theirs.id, [("fields", their_blob)])

    store.delete_source(mine.id)
    assert index.source(mine.id) is None
    assert index.source_by_verifier(b"a" * 32) is None
    assert index.reports_of(mine.id) == []
    assert index.session(b"t" * 32, 60) is None
    assert store.blobs.names() == {their_blob.name}
    with index.transaction() as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
    assert index.source(theirs.id) is not None


def test_sessions_expire_when_idle(store: Store) -> None:
    index = store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    index.create_session(b"s" * 32, source.id, b"sealed secret", 60)
    found = index.session(b"s" * 32, 60)
    assert found is not None and found.sealed_secret == b"sealed secret"
    assert found.expires >= time.time() + 55
    index.replace_session_secret(b"s" * 32, b"other")
    found = index.session(b"s" * 32, 60)
    assert found is not None and found.sealed_secret == b"other"
    # Idle past its expiry (moved back rather than waited for): gone at once; the row itself
    # is deleted by the background janitor's expire_sessions.
    with index.transaction() as db:
        db.execute("UPDATE sessions SET expires = ?", (int(time.time()) - 1,))
    assert index.session(b"s" * 32, 60) is None
    assert index.expire_sessions() == 1
    with index.transaction() as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    index.create_session(b"u" * 32, source.id, b"x", 60)
    index.delete_session(b"u" * 32)
    assert index.session(b"u" * 32, 60) is None


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", KEY)
    source = store.index.create_source(b"v" * 32, b"p" * 32)
    ref = blob(store, b"durable")
    store.index.add_report(source.id, [("fields", ref)])
    store.close()
    again = Store(tmp_path / "store", KEY)
    try:
        found = again.index.source_by_verifier(b"v" * 32)
        assert found is not None and found.public_key == b"p" * 32
        [report] = again.index.reports_of(found.id)
        assert report.items[0].blob == ref.name and report.items[0].sha256 == ref.sha256
        assert again.read_blob(ref.name) == b"durable"
        assert again.sweep() == 0
    finally:
        again.close()


def test_sweep_forgets_sources_a_crash_left_without_a_report(store: Store) -> None:
    """The source row is committed before its report's: a crash in between leaves a source
    with nothing, which the sweep removes; sources with a report stay."""
    index = store.index
    lone = index.create_source(b"l" * 32, b"p" * 32)
    whole = index.create_source(b"w" * 32, b"q" * 32)
    index.add_report(whole.id, [("fields", blob(store))])
    store.sweep()
    assert index.source(lone.id) is None
    assert index.source_by_verifier(b"l" * 32) is None
    assert index.source(whole.id) is not None


def test_expired_drafts_are_deleted_without_a_restart(tmp_path):
    """A successful submission also clears drafts nobody came back to, not only the sweep."""
    from source_interface.store import Store

    store = Store(tmp_path / "store", bytes(range(32)))
    blob = store.new_blob()
    blob.write(b"ciphertext")
    ref = blob.commit()
    # Expiries are rounded up to the grain: a draft a grain and more past its time is expired.
    store.index.add_to_draft(b"t" * 32, [ref], lifetime=-EXPIRY_GRAIN_SECONDS - 1)
    store.expire_drafts()
    assert ref.name not in store.blobs.names()
    assert store.index.blob_names() == set()
    store.close()


# --- what the index's files tell (docs/threat-model.md) ---------------------------------------

ORDERED_TABLES = {"pickup_state", "scrub_state", "scrub_filler"}
"""Tables with a rowid: one row each, or none left after a scrub; nothing per submission."""


def test_no_row_says_when_it_came(store: Store) -> None:
    """Every table a submission writes to is keyed by a random id, without a rowid: rows lie in
    id order, not in the order they came.  What needs an order has a number of its own, local
    to what it orders (a report's items, a source's reports, a draft's files)."""
    index = store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    added = [index.add_report(source.id, [("fields", blob(store))]).id for _ in range(12)]
    with index.transaction() as db:
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table in tables - ORDERED_TABLES:
            with pytest.raises(sqlcipher3.OperationalError, match="no such column: rowid"):
                db.execute(f"SELECT rowid FROM {table}")  # noqa: S608 (fixed names)
        stored = [rid for (rid, _) in db.execute("SELECT id, day FROM reports")]
        seqs = [seq for (seq,) in db.execute("SELECT seq FROM reports ORDER BY seq")]
    assert stored == sorted(added) != added
    assert seqs == list(range(1, 13))
    assert [r.id for r in index.reports_of(source.id)] == added, "a source sees its own order"


def test_expiries_are_coarse(store: Store) -> None:
    """Sessions and drafts keep their expiry to the grain, never to the second."""
    index = store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    index.create_session(b"a" * 32, source.id, b"sealed", 600)
    index.create_session(b"b" * 32, source.id, b"sealed", 601)
    index.add_to_draft(b"d" * 32, [blob(store)], 3600)
    index.add_to_draft(b"e" * 32, [blob(store)], 3601)
    with index.transaction() as db:
        expiries = [
            e
            for (e,) in db.execute(
                "SELECT expires FROM sessions UNION ALL SELECT expires FROM drafts"
            )
        ]
    assert len(expiries) == 4
    assert [e % EXPIRY_GRAIN_SECONDS for e in expiries] == [0, 0, 0, 0]
    assert all(e >= time.time() + 599 for e in expiries)
    # Used, a session moves its expiry only to a later grain: most page views write nothing.
    found = index.session(b"a" * 32, 600)
    assert found is not None and found.expires % EXPIRY_GRAIN_SECONDS == 0


def _everything(path: Path) -> bytes:
    return SQLCipherReader(path, KEY).everything()


def test_a_deleted_source_is_scrubbed_from_the_database_and_its_wal(
    store: Store, tmp_path: Path
) -> None:
    """``secure_delete`` zeroes the rows in the database's pages, but the WAL keeps the pages
    as they were: deleting a source scrubs it (the WAL overwritten, then emptied)."""
    index = store.index
    path = tmp_path / "store" / "index.db"
    kept = index.create_source(b"K" * 32, b"k" * 32)
    index.add_report(kept.id, [("fields", blob(store))])
    gone = index.create_source(b"G" * 32, b"g" * 32)
    report = index.add_report(gone.id, [("fields", blob(store)), ("file", blob(store))])
    index.create_session(b"S" * 32, gone.id, b"sealed secret", 600)
    assert b"G" * 32 in _everything(path)

    store.delete_source(gone.id)

    left = _everything(path)
    assert b"K" * 32 in left, "the reader reads"
    for value in (b"G" * 32, b"g" * 32, b"S" * 32, gone.id.encode(), report.id.encode()):
        assert value not in left
    assert not index.scrub_pending()
    assert (tmp_path / "store" / "index.db-wal").stat().st_size < 5 * 4096


def test_a_scrub_held_back_by_a_reader_is_finished_by_housekeeping(
    store: Store, tmp_path: Path
) -> None:
    """Another worker reading (a snapshot that needs the WAL) holds the checkpoint back: the
    deletion goes through, the scrub stays pending, and the janitor's round finishes it."""
    index = store.index
    path = tmp_path / "store" / "index.db"
    gone = index.create_source(b"G" * 32, b"g" * 32)
    index.add_report(gone.id, [("fields", blob(store))])
    reader = connect(path, KEY)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM sources").fetchone() == (1,)
        store.delete_source(gone.id)
        assert index.source(gone.id) is None
        assert index.scrub_pending()
        assert b"G" * 32 in _everything(path)
        store.housekeeping()
        assert index.scrub_pending(), "still held back"
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    store.housekeeping()
    assert not index.scrub_pending()
    assert b"G" * 32 not in _everything(path)


def test_expired_sessions_are_scrubbed_by_housekeeping(store: Store, tmp_path: Path) -> None:
    index = store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    index.create_session(b"S" * 32, source.id, b"sealed secret", 600)
    with index.transaction() as db:
        db.execute("UPDATE sessions SET expires = ?", (int(time.time()) - 1,))
    store.housekeeping()
    assert index.session(b"S" * 32, 600) is None
    assert b"S" * 32 not in _everything(tmp_path / "store" / "index.db")


def test_an_index_of_an_earlier_blagh_is_refused(tmp_path: Path) -> None:
    """An index with rowid tables and no version (what Blagh made before): refused with a
    message that says what to do; not converted, not opened half-way."""
    path = tmp_path / "store" / "index.db"
    path.parent.mkdir()
    db = connect(path, KEY)
    db.execute("CREATE TABLE sources (id TEXT PRIMARY KEY, verifier BLOB, day TEXT NOT NULL)")
    db.close()
    with pytest.raises(StoreVersionError, match=r"earlier version of Blagh.*blagh init"):
        Store(tmp_path / "store", KEY)
    db = connect(path, KEY)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    finally:
        db.close()
    assert tables == ["sources", "sqlite_autoindex_sources_1"]


def test_the_database_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """SQLite makes a database 0644 less the umask, and its -wal and -shm alike: 0600 here, and
    an older index left wider is narrowed when opened."""
    umask = os.umask(0o022)
    try:
        store = Store(tmp_path / "store", KEY)
        store.index.create_source(None, None)
        names = ("index.db", "index.db-wal", "index.db-shm")
        assert [mode(tmp_path / "store" / n) for n in names] == [0o600] * 3
        store.close()
        for name in names:
            if (tmp_path / "store" / name).exists():
                os.chmod(tmp_path / "store" / name, 0o644)
        store = Store(tmp_path / "store", KEY)
        store.index.create_source(None, None)
        assert [mode(tmp_path / "store" / n) for n in names] == [0o600] * 3
        store.close()
    finally:
        os.umask(umask)


def test_blobs_are_born_before_they_are_stored(store: Store, tmp_path: Path) -> None:
    """A blob is a file of the pool (made in a batch ahead of need, taken at random), given
    the day's start as its access and modification times: none of its times is the moment it
    was stored, but its change time (which the janitor's pass evens out)."""
    pool = store.blobs.pool
    assert pool is not None
    assert pool.fill() == pool.size
    assert pool.fill() == 0, "a batch only when a quarter is left"
    made = clock_after(tmp_path / "clock", 0)
    stored = clock_after(tmp_path / "clock", made)
    refs = [blob(store, bytes([n]) * 100) for n in range(8)]
    after = clock_after(tmp_path / "clock", 0)
    assert pool.count() == pool.size - 8
    inodes = []
    for ref in refs:
        times = file_times(store.blobs.path_of(ref.name))
        assert times.btime_ns is None or times.btime_ns <= made < stored
        assert is_whole_day(times.atime_ns) and is_whole_day(times.mtime_ns)
        assert stored <= times.ctime_ns <= after
        inodes.append(store.blobs.path_of(ref.name).stat().st_ino)
    assert inodes != sorted(inodes), "taken at random, not in the order they were made"
    with store.open_blob(refs[0].name) as f:
        assert f.read() == bytes([0]) * 100
    assert is_whole_day(file_times(store.blobs.path_of(refs[0].name)).atime_ns)


def test_an_empty_pool_still_gives_blobs(store: Store) -> None:
    pool = store.blobs.pool
    assert pool is not None and pool.count() == 0
    ref = blob(store, b"made on the spot")
    assert store.read_blob(ref.name) == b"made on the spot"
    # Found empty, the pool is not listed again at every claim; a refill is seen at once.
    assert pool.fill() == pool.size
    blob(store, b"from the pool")
    assert pool.count() == pool.size - 1


def test_serve_refuses_an_earlier_index_in_one_line(tmp_path: Path) -> None:
    """``blagh serve`` on a data folder whose index an earlier Blagh made: one line, before
    tor or gunicorn start."""
    data = DataDir(tmp_path / "data")
    data.create([generate_analyst_key().public()])
    (data.path / "store").mkdir(mode=0o700)
    db = connect(data.path / "store" / "index.db", bytes.fromhex(data.read_db_key()))
    db.execute("CREATE TABLE reports (id TEXT PRIMARY KEY, day TEXT NOT NULL)")
    db.close()
    result = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(data.path), "--tor", "off"], prog_name="blagh"
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "earlier version of Blagh" in lines[0], result.stderr
