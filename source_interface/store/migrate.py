"""Copy a SQLCipher store (index and envelope files) into an empty PostgreSQL database, and
check every envelope on arrival (``blagh store migrate``, docs/scale.md).

One PostgreSQL transaction: either the whole store is there, every envelope's SHA-256 read back
from PostgreSQL equal to the one its row records and to the file's, or nothing is.  Rows keep
their random ids, days, order numbers and coarse expiries.  Run it with Blagh stopped: what
arrives meanwhile would be in the SQLCipher store only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from blagh.blobs import BlobFolder
from blagh.errors import SetupError
from blagh.sqlcipher import connect
from source_interface.errors import SourceInterfaceError
from source_interface.store.postgres import CHUNK_BYTES, PgIndex, PostgresError
from source_interface.store.records import today

TABLES = {
    "sources": ("id", "verifier", "public_key", "day"),
    "reports": ("id", "source_id", "day", "seq"),
    "items": (
        "id",
        "report_id",
        "kind",
        "blob",
        "size",
        "sha256",
        "day",
        "seq",
        "delivered_day",
    ),
    "drafts": ("blob", "token_hash", "size", "sha256", "expires", "seq"),
    "sessions": ("token_hash", "source_id", "sealed_secret", "expires"),
    "submissions": ("key", "outcome", "day"),
    "applied_bundles": ("id", "day"),
    "pickup_tokens": ("name", "token_hash", "day"),
}
"""Every table with rows to carry over, parents before children, and its columns (fixed names:
no input reaches these statements but values)."""


class MigrationError(SourceInterfaceError, SetupError):
    """The copy was refused or failed its check; the PostgreSQL database was left unchanged."""


@dataclass(frozen=True)
class Migrated:
    rows: dict[str, int]
    envelopes: int
    bytes: int


def migrate(store_root: Path, db_key: bytes, dsn: str) -> Migrated:
    """Copy the SQLCipher store at ``store_root`` into the database ``dsn`` names, which must
    hold no Blagh rows yet."""
    PgIndex(dsn).close()  # the schema, and the server's durability settings checked
    source = connect(store_root / "index.db", db_key)
    files = BlobFolder(store_root / "blobs")
    try:
        with psycopg.connect(dsn) as target, target.transaction():
            return _copy(source, files, target)
    except psycopg.Error:
        raise PostgresError(
            "the copy into PostgreSQL failed and was rolled back: check the server and retry"
        ) from None
    finally:
        source.close()
        files.io.close()


def _copy(source: Any, files: BlobFolder, target: psycopg.Connection[Any]) -> Migrated:
    for table in (*TABLES, "blobs"):
        if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():  # noqa: S608
            raise MigrationError(
                "the PostgreSQL database already holds a Blagh store: migrate into an empty "
                "database only (nothing was copied)"
            )
    counts: dict[str, int] = {}
    for table, columns in TABLES.items():
        names = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        rows = source.execute(f"SELECT {names} FROM {table}").fetchall()  # noqa: S608
        with target.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                [tuple(row) for row in rows],
            )
        counts[table] = len(rows)
    expected = {
        name: (sha256, size, day)
        for name, sha256, size, day in source.execute(
            "SELECT blob, sha256, size, day FROM items"
            " UNION ALL SELECT blob, sha256, size, ? FROM drafts",
            (today(),),
        ).fetchall()
    }
    total = 0
    for name, (sha256, size, day) in sorted(expected.items()):
        total += _copy_envelope(files, target, name, day)
        stored = target.execute(
            "SELECT size, sha256 FROM blobs WHERE name = %s", (name,)
        ).fetchone()
        if stored != (size, sha256) or _read_back(target, name) != sha256:
            raise MigrationError(
                f"envelope {name} differs from what its row records: nothing was copied; "
                "check the SQLCipher store's files (blagh serve sweeps orphans, not damage)"
            )
    generation, deletions = source.execute(
        "SELECT generation, deletions FROM pickup_state WHERE id = 1"
    ).fetchone()
    target.execute(
        "UPDATE pickup_state SET generation = generation + %s, deletions = deletions + %s,"
        " bundle_generation = NULL, bundle_context = NULL, bundle_key = NULL,"
        " bundle_items = NULL WHERE id = 1",
        (generation, deletions),
    )
    return Migrated(counts, len(expected), total)


def _copy_envelope(files: BlobFolder, target: psycopg.Connection[Any], name: str, day: str) -> int:
    digest, size = hashlib.sha256(), 0
    target.execute(
        "INSERT INTO blobs (name, size, sha256, day) VALUES (%s, 0, '', %s)", (name, day)
    )
    try:
        envelope = files.open(name)
    except FileNotFoundError:
        raise MigrationError(
            f"envelope {name} is missing from the SQLCipher store's folder: nothing was copied"
        ) from None
    with envelope:
        for seq, chunk in enumerate(iter(lambda: envelope.read(CHUNK_BYTES), b"")):
            target.execute(
                "INSERT INTO blob_chunks (name, seq, data) VALUES (%s, %s, %s)",
                (name, seq, chunk),
            )
            digest.update(chunk)
            size += len(chunk)
    target.execute(
        "UPDATE blobs SET size = %s, sha256 = %s WHERE name = %s",
        (size, digest.hexdigest(), name),
    )
    return size


def _read_back(target: psycopg.Connection[Any], name: str) -> str:
    """The SHA-256 of the envelope as PostgreSQL holds it, a chunk at a time."""
    digest = hashlib.sha256()
    with target.cursor(name="chunks") as cursor:
        cursor.execute("SELECT data FROM blob_chunks WHERE name = %s ORDER BY seq", (name,))
        for (data,) in cursor:
            digest.update(data)
    return digest.hexdigest()
