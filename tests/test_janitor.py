"""The janitor: housekeeping off the request path, one worker at a time, never taking a file
that a request in flight may still need."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from forensics import clock_after, is_whole_day
from forensics import file_times as times
from postgres_helpers import Cluster
from source_helpers import Site, open_site

from source_interface.janitor import SWEEP_MIN_AGE_SECONDS, Janitor
from source_interface.presealed import IDLE_SECONDS
from source_interface.store import BlobRef


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as opened:
        yield opened


def _janitor(site: Site) -> Janitor:
    return Janitor(
        site.store, site.app.extensions["blagh_uploads"], site.store.blobs.root / "janitor.lock"
    )


def _blob(site: Site, data: bytes = b"x") -> BlobRef:
    blob = site.store.new_blob()
    blob.write(data)
    return blob.commit()


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_round_expires_drafts_sessions_and_idle_uploads(site: Site) -> None:
    index = site.store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    index.create_session(b"s" * 32, source.id, b"secret", 60)
    draft = _blob(site)
    index.add_to_draft(b"d" * 32, [draft], 60)
    uploads = site.app.extensions["blagh_uploads"]
    upload_id = uploads.create(4096, 1, "t" * 43)
    with index.transaction() as db:
        db.execute("UPDATE sessions SET expires = ?", (int(time.time()) - 1,))
        db.execute("UPDATE drafts SET expires = ?", (int(time.time()) - 1,))
    for path in uploads.root.iterdir():
        _age(path, IDLE_SECONDS + 60)

    _janitor(site).round()

    assert site.rows("SELECT count(*) FROM sessions") == [(0,)]
    assert site.rows("SELECT count(*) FROM drafts") == [(0,)]
    assert not site.store.blobs.path_of(draft.name).exists()
    assert uploads.live_count() == 0, f"upload {upload_id} idle past its time is gone"


def test_only_one_worker_does_a_round_at_a_time(site: Site) -> None:
    index = site.store.index
    source = index.create_source(b"v" * 32, b"p" * 32)
    index.create_session(b"s" * 32, source.id, b"secret", 60)
    with index.transaction() as db:
        db.execute("UPDATE sessions SET expires = ?", (int(time.time()) - 1,))
    janitor = _janitor(site)
    fd = os.open(site.store.blobs.root / "janitor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker's round
        janitor.round()
        assert site.rows("SELECT count(*) FROM sessions") == [(1,)]
    finally:
        os.close(fd)
    janitor.round()
    assert site.rows("SELECT count(*) FROM sessions") == [(0,)]


def test_the_sweep_leaves_recent_files_that_may_be_in_flight(site: Site) -> None:
    """A blob committed a moment before its row, or a temporary file still being written, is
    unreferenced for now: the sweep takes only files whose inode has not changed for an hour.

    The change time, which nothing can set back: every blob's modification time is its day's
    start, so an hour-old mtime says nothing, and a file given an old one is not taken."""
    blobs = site.store.blobs
    source = site.store.index.create_source(None, None)
    kept = _blob(site)
    site.store.index.add_report(source.id, [("fields", kept)])
    recent = _blob(site)
    writing = blobs.new()
    writing.write(b"half")
    stale_temp = blobs.temp_dir / ("0" * 32)
    stale_temp.write_bytes(b"left by a crash")
    _age(stale_temp, SWEEP_MIN_AGE_SECONDS + 60)
    _age(blobs.path_of(recent.name), SWEEP_MIN_AGE_SECONDS + 60)
    janitor = _janitor(site)

    assert janitor.sweep() == 0
    assert blobs.path_of(recent.name).exists() and stale_temp.exists()
    committed = writing.commit()

    # An hour later, by the clock the sweep is given, whatever is unreferenced goes.
    assert janitor.sweep(now=time.time() + SWEEP_MIN_AGE_SECONDS + 60) == 3
    assert blobs.names() == {kept.name}
    assert not stale_temp.exists()
    assert not blobs.path_of(committed.name).exists()


def test_the_sweep_gives_every_blob_the_same_change_time(site: Site) -> None:
    """A blob's change time is when it was stored (nothing can set it back), until the
    janitor's pass touches every blob: then they all have the pass's, in no telling order."""
    source = site.store.index.create_source(None, None)
    refs = [_blob(site, bytes([n])) for n in range(5)]
    site.store.index.add_report(source.id, [("fields", refs[0])] + [("file", r) for r in refs[1:]])
    paths = [site.store.blobs.path_of(ref.name) for ref in refs]
    stored = [times(path) for path in paths]
    assert all(is_whole_day(t.atime_ns) and is_whole_day(t.mtime_ns) for t in stored)
    assert [t.ctime_ns for t in stored] == sorted(t.ctime_ns for t in stored)

    # The kernel's file clock is coarse (a few ms): the pass starts once it has moved on.
    started = clock_after(site.data_dir / "marker", max(t.ctime_ns for t in stored))
    _janitor(site).sweep()
    ended = clock_after(site.data_dir / "marker", 0)

    for path, before in zip(paths, stored, strict=True):
        after = times(path)
        assert started <= after.ctime_ns <= ended
        assert (after.atime_ns, after.mtime_ns) == (before.atime_ns, before.mtime_ns)
        assert after.btime_ns == before.btime_ns


def test_a_round_and_a_sweep_on_the_postgresql_store(postgres: Cluster, tmp_path: Path) -> None:
    """The janitor of a PostgreSQL store: expired sessions, drafts and idle uploads go in a
    round; an envelope no row refers to stays while it may belong to a request (rows keep
    days: until the day after), then the sweep removes it."""
    dsn = postgres.new_database("j" + secrets.token_hex(6))
    with open_site(tmp_path, store={"backend": "postgresql", "dsn": dsn}) as site:
        store = site.store
        assert store.backend == "postgresql"
        source = store.create_source(b"v" * 32, b"p" * 32)
        kept = _blob(site, b"in a report")
        store.add_report(source.id, [("fields", kept)])
        store.create_session(b"s" * 32, source.id, b"secret", -600)  # idle already
        draft = _blob(site, b"draft")
        store.add_to_draft(b"d" * 32, [draft], -600)
        orphan = _blob(site, b"a crash before its row")
        uploads = site.app.extensions["blagh_uploads"]
        uploads.create(4096, 1, "t" * 43)
        for path in uploads.root.iterdir():
            _age(path, IDLE_SECONDS + 60)

        _janitor(site).round()
        with psycopg.connect(dsn) as db:
            assert db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM drafts").fetchone() == (0,)
        assert list(uploads.root.iterdir()) == []
        assert store.blobs.names() == {kept.name, orphan.name}  # the draft's went with it

        assert _janitor(site).sweep() == 0
        assert store.blobs.names() == {kept.name, orphan.name}
        assert _janitor(site).sweep(now=time.time() + 2 * 86_400) == 1
        assert store.blobs.names() == {kept.name}
        assert store.read_blob(kept.name) == b"in a report"
