"""The server store's interface on every backend: SQLCipher + files, and PostgreSQL (a real
server, a throw-away cluster: tests/postgres_helpers.py).  Only the store's methods are used,
never SQL: what the views, the pickup API and the janitor rely on holds on both."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pickup_helpers import Reply, Server, add_report, make_server, reply_bundle
from postgres_helpers import Cluster
from source_helpers import DAY

from source_interface.pickup.bundles import PickupBundles, import_reply_bundle
from source_interface.store import BlobRef, NewReply, PostgresStore, Store
from source_interface.store.index import (
    DuplicateSubmission,
    NewSession,
    NewSource,
    Submission,
    new_id,
    today,
)
from source_interface.store.postgres import CHUNK_BYTES

KEY = bytes(range(32))


def _open(backend: str, root: Path, postgres: Cluster | None, database: str) -> Store:
    if backend == "postgresql":
        assert postgres is not None
        return PostgresStore(root, postgres.dsn(database))
    return Store(root, KEY)


@pytest.fixture(params=["sqlcipher", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> tuple[Cluster | None, str]:
    if backend != "postgresql":
        return None, ""
    pg: Cluster = request.getfixturevalue("postgres")
    name = "t" + secrets.token_hex(6)
    pg.new_database(name)
    return pg, name


@pytest.fixture
def store(backend: str, database: tuple[Cluster | None, str], tmp_path: Path) -> Iterator[Store]:
    made = _open(backend, tmp_path / "store", *database)
    yield made
    made.close()


def blob(store: Store, data: bytes = b"ciphertext") -> BlobRef:
    pending = store.new_blob()
    pending.write(data)
    return pending.commit()


def test_an_envelope_larger_than_a_chunk_comes_back_whole_and_streamed(store: Store) -> None:
    data = secrets.token_bytes(3 * CHUNK_BYTES + 123)
    pending = store.new_blob()
    for start in range(0, len(data), 10_000):
        pending.write(data[start : start + 10_000])
    ref = pending.commit()
    assert ref.size == len(data) and ref.sha256 == hashlib.sha256(data).hexdigest()
    with store.open_blob(ref.name) as f:
        first = f.read(1000)
        assert first == data[:1000]
        assert first + f.read() == data
    assert list(store.blobs.temp_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        store.open_blob("0" * 32)


def test_a_report_its_items_and_its_draft(store: Store) -> None:
    token = secrets.token_bytes(32)
    kept = blob(store, b"kept file")
    assert store.add_to_draft(token, [kept], 3600) == (True, [])
    assert store.draft(token) == [kept]
    source_id = new_id()
    report = store.add_report(
        source_id,
        [("fields", blob(store)), ("file", kept)],
        draft=token,
        new_source=NewSource(b"v" * 32, b"p" * 32),
        submission=Submission(b"k" * 32, "codename"),
        new_session=NewSession(b"s" * 32, b"sealed", 600),
    )
    assert [item.kind for item in report.items] == ["fields", "file"]
    assert store.draft(token) == []
    assert DAY.match(report.day) and report.day == today()
    found = store.source_by_verifier(b"v" * 32)
    assert found is not None and found.id == source_id and found.public_key == b"p" * 32
    session = store.session(b"s" * 32, 600)
    assert session is not None and session.source_id == source_id
    assert store.submission(b"k" * 32) == "codename"
    with pytest.raises(DuplicateSubmission):
        store.add_report(
            source_id, [("fields", blob(store))], submission=Submission(b"k" * 32, "x")
        )
    assert len(store.reports_of(source_id)) == 1
    assert store.read_blob(kept.name) == b"kept file"


def test_items_only_go_to_the_owners_report(store: Store) -> None:
    owner, stranger = store.create_source(None, None), store.create_source(None, None)
    report = store.add_report(owner.id, [("fields", blob(store))])
    assert not store.add_items(stranger.id, report.id, [("message", blob(store, b"x"))])
    assert store.report(stranger.id, report.id) is None
    assert store.add_items(owner.id, report.id, [("message", blob(store, b"m"))])
    found = store.report(owner.id, report.id)
    assert found is not None and [i.kind for i in found.items] == ["fields", "message"]


def test_a_failed_report_leaves_no_row(store: Store) -> None:
    source = store.create_source(None, None)
    fields = blob(store)
    with pytest.raises(Exception):  # noqa: B017 - each backend's integrity error
        store.add_report(source.id, [("fields", fields), ("file", fields)])
    assert store.reports_of(source.id) == []
    assert store.add_report(source.id, [("fields", blob(store))]).items


def test_deleting_a_source_removes_its_rows_and_envelopes(store: Store) -> None:
    mine, theirs = store.create_source(b"a" * 32, b"p" * 32), store.create_source(None, None)
    store.add_report(mine.id, [("fields", blob(store, b"1")), ("file", blob(store, b"2"))])
    store.create_session(b"t" * 32, mine.id, b"sealed", 60)
    their_blob = blob(store, b"theirs")
    store.add_report(theirs.id, [("fields", their_blob)])
    store.delete_source(mine.id)
    assert store.source(mine.id) is None and store.session(b"t" * 32, 60) is None
    assert store.blobs.names() == {their_blob.name}


def test_the_sweep_removes_envelopes_no_row_refers_to(store: Store) -> None:
    source = store.create_source(None, None)
    kept = blob(store, b"in a report")
    store.add_report(source.id, [("fields", kept)])
    orphan = blob(store, b"committed, never referenced (crash before the row)")
    store.create_source(None, None)  # a crash left it without its report
    assert store.sweep(min_age=3600) == 0, "an envelope of today may belong to a request"
    assert orphan.name in store.blobs.names()
    assert store.sweep() == 1
    assert store.blobs.names() == {kept.name}


def test_pickup_snapshot_replies_and_retention(store: Store) -> None:
    source = store.create_source(b"v" * 32, b"p" * 32)
    report = store.add_report(source.id, [("fields", blob(store)), ("file", blob(store, b"f"))])
    snapshot = store.undelivered_snapshot()
    assert [item.kind for item in snapshot.items] == ["fields", "file"]
    assert snapshot.items[0].source_public_key == b"p" * 32
    generation = snapshot.generation
    assert store.record_pickup_bundle(generation, "ctx", "key", 2)
    assert store.pickup_state().bundle_key == "key"
    reply = NewReply(new_id(), report.id, blob(store, b"reply"))
    applied = store.apply_replies("b1", [reply], [i.id for i in snapshot.items], [])
    assert applied is not None and (applied.stored, applied.acknowledged) == (1, 2)
    assert store.bundle_applied("b1")
    assert store.apply_replies("b1", [], [], []) is None
    assert store.undelivered_snapshot().items == []
    assert store.pickup_state().generation > generation
    purged = store.purge(0)
    assert purged.items == 2
    found = store.report(source.id, report.id)
    assert found is not None and [i.kind for i in found.items] == ["reply"]


def test_pickup_tokens(store: Store) -> None:
    assert store.add_pickup_token("station", b"h" * 32)
    assert not store.add_pickup_token("station", b"i" * 32)
    assert store.pickup_token_name(b"h" * 32) == "station"
    assert store.pickup_tokens() == [("station", today())]
    assert store.remove_pickup_token("station") and store.pickup_tokens() == []


def test_reopening_keeps_everything(
    backend: str, database: tuple[Cluster | None, str], tmp_path: Path
) -> None:
    first = _open(backend, tmp_path / "store", *database)
    source = first.create_source(b"v" * 32, None)
    ref = blob(first, b"durable")
    first.add_report(source.id, [("fields", ref)])
    first.close()
    again = _open(backend, tmp_path / "store", *database)
    try:
        found = again.source_by_verifier(b"v" * 32)
        assert found is not None
        [report] = again.reports_of(found.id)
        assert again.read_blob(report.items[0].blob) == b"durable"
    finally:
        again.close()


def test_postgresql_keeps_days_only_and_no_plaintext(postgres: Cluster, tmp_path: Path) -> None:
    name = "t" + secrets.token_hex(6)
    dsn = postgres.new_database(name)
    store = PostgresStore(tmp_path / "store", dsn)
    try:
        source = store.create_source(b"v" * 32, b"p" * 32)
        store.add_report(source.id, [("fields", blob(store, b"sealed bytes"))])
    finally:
        store.close()
    with psycopg.connect(dsn) as db:
        types = {
            row[0]
            for row in db.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
        serials = db.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_default LIKE 'nextval%'"
        ).fetchone()
        days = {d for (d,) in db.execute("SELECT day FROM reports UNION SELECT day FROM blobs")}
    assert not [t for t in types if "time" in t or "date" in t], types
    assert serials == (0,)
    assert days == {today()}


def test_postgresql_refuses_a_server_that_may_lose_a_commit(
    postgres: Cluster, tmp_path: Path
) -> None:
    name = "t" + secrets.token_hex(6)
    dsn = postgres.new_database(name)
    with psycopg.connect(postgres.dsn(), autocommit=True) as db:
        db.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    from source_interface.store.postgres import PostgresError

    with pytest.raises(PostgresError, match="synchronous_commit"):
        PostgresStore(tmp_path / "store", dsn)


@pytest.fixture
def server(backend: str, database: tuple[Cluster | None, str], tmp_path: Path) -> Iterator[Server]:
    pg, name = database
    settings = {"backend": "postgresql", "dsn": pg.dsn(name)} if pg is not None else None
    made = make_server(tmp_path, store=settings)
    assert made.store.backend == backend
    yield made
    made.close()


def test_pickup_bundles_and_a_reply_bundle(server: Server, tmp_path: Path) -> None:
    """The pickup API's building blocks on each backend: the bundle kept ready while nothing
    changes, a new one after a report, a reply bundle applied (acknowledged items leave the
    next bundle; the reply reaches its report)."""
    builder = PickupBundles(server.store, server.config.recipients.analysts, server.signing_key)
    reporter = add_report(server, "first", files=2)
    first = builder.open_current()
    with first.file:
        first_bytes = first.file.read()
    assert first.items == 3
    again = builder.open_current()
    with again.file:
        assert (again.bundle_id, again.file.read()) == (first.bundle_id, first_bytes)
    add_report(server, "second", files=0)
    second = builder.open_current()
    second.file.close()
    assert second.bundle_id != first.bundle_id and second.items == 4

    report = reporter.reports[0]
    assert reporter.public_key is not None
    items = [item.id for r in server.store.reports_of(reporter.source_id) for item in r.items]
    path = reply_bundle(
        tmp_path / "replies.bundle",
        server.analyst,
        [Reply(report.id, reporter.public_key)],
        acknowledged=items,
    )
    result = import_reply_bundle(
        server.store, server.config.recipients.analysts, path, delivered_days=7
    )
    assert (result.replies_stored, result.acknowledged) == (1, 3)
    left = builder.open_current()
    left.file.close()
    assert left.items == 1
    kinds = [i.kind for i in server.store.reports_of(reporter.source_id)[0].items]
    assert kinds == ["fields", "file", "file", "reply"]


def test_sessions_expire_and_are_forgotten(store: Store) -> None:
    source = store.create_source(b"v" * 32, b"p" * 32)
    store.create_session(b"s" * 32, source.id, b"sealed secret", 600)
    found = store.session(b"s" * 32, 600)
    assert found is not None and found.sealed_secret == b"sealed secret"
    store.replace_session_secret(b"s" * 32, b"other")
    found = store.session(b"s" * 32, 600)
    assert found is not None and found.sealed_secret == b"other"
    store.create_session(b"x" * 32, source.id, b"idle", -600)  # expired already
    assert store.session(b"x" * 32, 600) is None
    assert store.index.expire_sessions() == 1
    store.delete_session(b"s" * 32)
    assert store.session(b"s" * 32, 600) is None


def test_drafts_are_bounded_and_expire(store: Store) -> None:
    one, two = secrets.token_bytes(32), secrets.token_bytes(32)
    a, b, c = blob(store, b"a" * 100), blob(store, b"b" * 100), blob(store, b"c" * 100)
    assert store.add_to_draft(one, [a, b], 3600, max_files=1) == (False, [a.name, b.name])
    assert store.add_to_draft(one, [a], 3600, max_files=2, max_bytes=150) == (True, [])
    assert store.add_to_draft(one, [b], 3600, max_files=2, max_bytes=150) == (False, [b.name])
    # All drafts together past 250 bytes: the other (older) draft goes, this one stays.
    assert store.add_to_draft(two, [b, c], 3600, max_total_bytes=250) == (True, [a.name])
    assert store.draft(one) == [] and store.draft(two) == [b, c]
    assert store.remove_from_draft(two, [c.name, "0" * 32]) == [c.name]
    stale = blob(store, b"stale")
    store.add_to_draft(one, [stale], -600)
    assert store.draft(one) == []
    store.delete_blob(a.name)
    store.delete_blob(c.name)
    store.sweep()
    assert store.blobs.names() == {b.name}


def test_one_form_sent_at_once_from_many_threads_stores_one_report(store: Store) -> None:
    """On PostgreSQL several workers (machines) write at once: the submission key is taken
    by one transaction, the others wait for its commit and are refused."""
    from concurrent.futures import ThreadPoolExecutor

    key = secrets.token_bytes(32)
    source = store.create_source(None, None)
    refs = [blob(store, bytes([n]) * 10) for n in range(8)]

    def send(ref: BlobRef) -> str:
        try:
            store.add_report(source.id, [("fields", ref)], submission=Submission(key, "received"))
        except DuplicateSubmission as refused:
            return "refused:" + refused.outcome
        return "stored"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(send, refs))
    assert outcomes == ["refused:received"] * 7 + ["stored"]
    assert len(store.reports_of(source.id)) == 1


@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 port=1 user=blagh password=hunter2-secret dbname=blagh",
        "host=127.0.0.1 user=blagh password=hunter2-secret dbname",  # malformed
    ],
)
def test_a_dsn_that_does_not_work_is_refused_without_showing_it(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from source_interface.store.postgres import PostgresError

    with pytest.raises(PostgresError) as refused:
        PostgresStore(tmp_path / "store", dsn)
    shown = str(refused.value) + repr(refused.value) + caplog.text
    assert "hunter2" not in shown and "[store] dsn" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from gunicorn_helpers import make_data_dir
    from test_store_flows import use_postgres

    from blagh.cli import cli
    from crypto.keys import generate_analyst_key

    data_dir = make_data_dir(tmp_path / "data", generate_analyst_key(), workers=1)
    use_postgres(data_dir, "host=127.0.0.1 port=1 user=blagh password=hunter2-secret")
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir.path), "--tor", "off"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "[store] dsn" in result.stderr
    assert "hunter2" not in result.output + result.stderr
