"""Opening SQLCipher databases the same way on the server and on the workstation.

The key is given as raw bytes and passed to SQLCipher as a hex blob literal, so SQLCipher uses
it as the database key directly (no PBKDF2 on every connection: the key is already random, or
already stretched with argon2id by the caller).
"""

import sqlite3
from pathlib import Path

import sqlcipher3

from blagh.errors import BlaghError

KEY_SIZE = 32


class DatabaseError(BlaghError):
    """A database could not be opened: wrong key, or not a SQLCipher database."""


def connect(path: Path, key: bytes, *, wal: bool = True) -> sqlite3.Connection:
    """Open (or create) the SQLCipher database at ``path`` with a 32-byte key.

    Raises DatabaseError with a message an operator can act on when the key is wrong.
    """
    if len(key) != KEY_SIZE:
        raise ValueError("SQLCipher keys are 32 bytes")
    connection: sqlite3.Connection = sqlcipher3.connect(
        str(path), isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        connection.close()
        raise DatabaseError(
            f"cannot open {path}: wrong database key, or not a Blagh database"
        ) from None
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA secure_delete = ON")
    if wal:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
    return connection
