"""Opening SQLCipher databases the same way on the server and on the workstation.

The key is given as raw bytes and passed to SQLCipher as a hex blob literal, so SQLCipher uses
it as the database key directly (no PBKDF2 on every connection: the key is already random, or
already stretched with argon2id by the caller).

The files are the owner's alone (0600): SQLite creates a database with 0644 less the umask, and
its ``-wal`` and ``-shm`` files with the database's own mode, so the database file is made 0600
before SQLite opens it (an older one is narrowed to 0600, with its ``-wal`` and ``-shm``).  The
key sits on the same disk on the server (``db.key``): the mode is what keeps other local users
out.  Temporary tables and statement journals stay in memory, never in a file of their own.

Pages of a new database are authenticated with HMAC-SHA-256 (:data:`PAGE_HMAC`), not SQLCipher
4's default HMAC-SHA-512: every page read from disk is checked and every page written is tagged,
and SHA-256 runs on dedicated instructions in current x86 (SHA-NI) and ARM64 CPUs.  Measured on
the server's write path, where another worker's commit empties a connection's page cache, it
took about a third off what SQLCipher adds to a report's writes (docs/availability.md).  A
256-bit tag is still far beyond forgery.  A database made with the default before this is
opened with the default.  Trying the new layout on such a file first must not look like
tampering: SQLCipher's own log ("hmac check failed for pgno=1", on stderr) is silenced for
that one try.
"""

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import sqlcipher3

from blagh.errors import BlaghError
from blagh.offload import native_lock

KEY_SIZE = 32
PRIVATE = 0o600
PAGE_HMAC = "HMAC_SHA256"
"""How a new database's pages are authenticated (SQLCipher's ``cipher_hmac_algorithm``)."""
LEGACY_PAGE_HMAC = None
"""SQLCipher 4's default (HMAC-SHA-512), which databases made before :data:`PAGE_HMAC` use."""
COMPANIONS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database, named after it."""
_QUIET = native_lock()
"""Held while SQLCipher's log, one setting for the whole process, is silenced for a try."""


class DatabaseError(BlaghError):
    """A database could not be opened: wrong key, or not a SQLCipher database."""


def connect(path: Path, key: bytes, *, wal: bool = True) -> sqlite3.Connection:
    """Open (or create) the SQLCipher database at ``path`` with a 32-byte key.

    Raises DatabaseError with a message an operator can act on when the key is wrong.
    """
    if len(key) != KEY_SIZE:
        raise ValueError("SQLCipher keys are 32 bytes")
    make_private(path)
    connection = _keyed(path, key, PAGE_HMAC, quiet=True) or _keyed(path, key, LEGACY_PAGE_HMAC)
    if connection is None:
        raise DatabaseError(f"cannot open {path}: wrong database key, or not a Blagh database")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA secure_delete = ON")
    connection.execute("PRAGMA temp_store = MEMORY")
    if wal:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
    return connection


def _keyed(
    path: Path, key: bytes, page_hmac: str | None, *, quiet: bool = False
) -> sqlite3.Connection | None:
    """A connection to ``path`` that read its first page with ``key`` and ``page_hmac``, or
    None if it could not (another key or HMAC, or not a database).  An empty or missing file
    reads as an empty database: it is made with these settings.  ``quiet``: SQLCipher logs
    nothing of a failed read."""
    connection: sqlite3.Connection = sqlcipher3.connect(
        str(path), isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        if page_hmac is not None:
            connection.execute(f"PRAGMA cipher_hmac_algorithm = {page_hmac}")
        with _silenced(connection) if quiet else contextlib.nullcontext():
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        connection.close()
        return None
    return connection


@contextlib.contextmanager
def _silenced(connection: sqlite3.Connection) -> Iterator[None]:
    """SQLCipher's log level (one for the whole process, set through any connection) at NONE,
    then back as it was."""
    with _QUIET:
        (level,) = connection.execute("PRAGMA cipher_log_level").fetchone()
        connection.execute("PRAGMA cipher_log_level = NONE")
        try:
            yield
        finally:
            connection.execute(f"PRAGMA cipher_log_level = {level}")


def make_private(path: Path) -> None:
    """Create the database file at ``path`` with mode 0600 if it is missing, and narrow it and
    its companions (``-wal``, ``-shm``) to 0600 if an older Blagh left them wider."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, PRIVATE)
    except OSError:
        return  # not creatable here (a read-only folder...): SQLite will say why, in its words
    try:
        if os.fstat(fd).st_mode & 0o777 != PRIVATE:
            os.fchmod(fd, PRIVATE)
    finally:
        os.close(fd)
    for suffix in COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            mode = companion.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) and mode & 0o777 != PRIVATE:
            os.chmod(companion, PRIVATE)
