"""The server store on its own: blobs written temp → fsync → rename, the sweep, and the
SQLCipher index (really encrypted, WAL, days not times, all-or-nothing transactions)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlcipher3
from source_helpers import DAY, sqlite_error

from blagh.sqlcipher import DatabaseError, connect
from source_interface.store import BlobRef, Store
from source_interface.store.index import EXPIRY_GRAIN_SECONDS, Index, today

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
