"""What someone who images the server's disk can read: SQLCipher pages, WAL frames, file times.

A seized server holds its own database key (``db.key``), so the forensic reader here has it
too and decrypts every page of a database file, live or free, and every frame of its
write-ahead log, stale or not, the way SQLCipher 4 lays them out with a raw key:

* each page ends with a reserve: a 16-byte IV, then an HMAC of the encrypted bytes, the IV
  and the page number (4 bytes, little-endian): HMAC-SHA256 (a 48-byte reserve) in databases
  Blagh makes now, SQLCipher's default HMAC-SHA512 (80 bytes) in older ones; the reader takes
  the one whose tag checks on page 1;
* the rest is AES-256-CBC under the key itself (a raw ``x'…'`` key skips the passphrase KDF);
  page 1 starts with the database's 16-byte salt in clear, in place of SQLite's header text;
* the HMAC key is PBKDF2-HMAC-SHA512 of the key over the salt XOR 0x3a, 2 iterations.

The HMAC is checked on every page, so a wrong layout cannot pass for an empty file.  AES comes
from the system's libcrypto through ctypes: the standard library has none, and a test reading
the disk should not trust the library that wrote it.

File times are every time the kernel keeps: access, modification, change, and birth (statx,
which Python 3.11's ``os.stat`` does not expose on Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IV_BYTES = 16
PAGE_HMACS = {"sha256": 32, "sha512": 64}
"""The page HMACs a database may use and their tag sizes, Blagh's current one first."""
SALT_BYTES = 16
WAL_HEADER = 32
FRAME_HEADER = 24
DAY_NS = 86_400 * 10**9


class _Crypto:
    """AES-256-CBC decryption through libcrypto's EVP interface."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("crypto")
        assert name, "libcrypto (OpenSSL) is needed to read SQLCipher pages"
        lib = ctypes.CDLL(name)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_aes_256_cbc.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_DecryptInit_ex.argtypes = [ctypes.c_void_p] * 5
        lib.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.EVP_DecryptUpdate.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self._lib = lib

    def decrypt(self, key: bytes, iv: bytes, data: bytes) -> bytes:
        lib = self._lib
        ctx = lib.EVP_CIPHER_CTX_new()
        try:
            assert lib.EVP_DecryptInit_ex(ctx, lib.EVP_aes_256_cbc(), None, key, iv) == 1
            lib.EVP_CIPHER_CTX_set_padding(ctx, 0)
            out = ctypes.create_string_buffer(len(data) + 32)
            length = ctypes.c_int(0)
            assert lib.EVP_DecryptUpdate(ctx, out, ctypes.byref(length), data, len(data)) == 1
            return out.raw[: length.value]
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)


_CRYPTO: _Crypto | None = None


def _crypto() -> _Crypto:
    global _CRYPTO
    if _CRYPTO is None:
        _CRYPTO = _Crypto()
    return _CRYPTO


class SQLCipherReader:
    """Decrypts pages of one SQLCipher database (and of its WAL) with the raw key."""

    def __init__(self, database: Path, key: bytes, page_size: int = 4096) -> None:
        self.database = database
        self.key = key
        self.page_size = page_size
        with database.open("rb") as f:
            salt = f.read(SALT_BYTES)
            first = f.read(page_size - SALT_BYTES)
        assert len(salt) == SALT_BYTES, f"{database} has no salt: not a SQLCipher database"
        self._hmac_key = hashlib.pbkdf2_hmac(
            "sha512", key, bytes(b ^ 0x3A for b in salt), 2, dklen=32
        )
        if len(first) == page_size - SALT_BYTES:
            number, raw = 1, salt + first
        else:  # page 1 is only in the log so far
            number, raw = next(self._raw_wal_frames(), (1, salt + first))
        for name in PAGE_HMACS:
            self.page_hmac = name
            if len(raw) == page_size and self._tag_checks(number, raw):
                break
        else:
            raise AssertionError(f"{database}: no page HMAC checks on page {number} (wrong key?)")

    def _parts(self, number: int, raw: bytes) -> tuple[bytes, bytes, bytes]:
        """A page's encrypted bytes, IV and tag.  The reserve is the IV and the tag rounded up
        to AES blocks (SQLCipher's rule)."""
        tag_size = PAGE_HMACS[self.page_hmac]
        end = self.page_size - -(-(IV_BYTES + tag_size) // 16) * 16
        start = SALT_BYTES if number == 1 else 0
        return raw[start:end], raw[end : end + IV_BYTES], raw[end + IV_BYTES :][:tag_size]

    def _tag_checks(self, number: int, raw: bytes) -> bool:
        encrypted, iv, tag = self._parts(number, raw)
        message = encrypted + iv + number.to_bytes(4, "little")
        mac = hmac.new(self._hmac_key, message, self.page_hmac)
        return hmac.compare_digest(mac.digest(), tag)

    def decrypt_page(self, number: int, raw: bytes) -> bytes:
        """Page ``number`` (from 1) in clear; AssertionError if its HMAC does not match."""
        assert len(raw) == self.page_size
        if raw == bytes(self.page_size):
            return raw  # never written (a hole): nothing to read
        assert self._tag_checks(number, raw), f"page {number}: HMAC mismatch"
        encrypted, iv, _ = self._parts(number, raw)
        return _crypto().decrypt(self.key, iv, encrypted)

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Every page of the database file, live or free, decrypted."""
        data = self.database.read_bytes()
        for index in range(len(data) // self.page_size):
            raw = data[index * self.page_size : (index + 1) * self.page_size]
            yield index + 1, self.decrypt_page(index + 1, raw)

    def wal_frames(self) -> Iterator[tuple[int, bytes]]:
        """Every whole frame of the WAL file, current or stale, decrypted: (page number, page).

        Stale frames (of an earlier cycle of the log) still decrypt: only the page number
        and the key go into a page's encryption, not the log's salts."""
        for number, raw in self._raw_wal_frames():
            yield number, self.decrypt_page(number, raw)

    def _raw_wal_frames(self) -> Iterator[tuple[int, bytes]]:
        wal = self.database.with_name(self.database.name + "-wal")
        if not wal.exists():
            return
        data = wal.read_bytes()
        frame = FRAME_HEADER + self.page_size
        offset = WAL_HEADER
        while offset + frame <= len(data):
            number = int.from_bytes(data[offset : offset + 4], "big")
            raw = data[offset + FRAME_HEADER : offset + frame]
            if number and raw != bytes(self.page_size):
                yield number, raw
            offset += frame

    def everything(self) -> bytes:
        """Every decrypted page of the database and its WAL, one after the other."""
        parts = [page for _, page in self.pages()]
        parts += [page for _, page in self.wal_frames()]
        return b"".join(parts)


# --- file times -------------------------------------------------------------------------------


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("pad", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("pad1", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _StatxTimestamp),
        ("stx_btime", _StatxTimestamp),
        ("stx_ctime", _StatxTimestamp),
        ("stx_mtime", _StatxTimestamp),
        ("spare", ctypes.c_uint64 * 16),
    ]


_STATX_BTIME = 0x800
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_FDCWD = -100
_LIBC = ctypes.CDLL(None, use_errno=True)


def birth_time_ns(path: Path) -> int | None:
    """When the file was created, in ns, if the kernel and file system keep it (statx)."""
    statx = getattr(_LIBC, "statx", None)
    if statx is None:
        return None
    buffer = _Statx()
    name = os.fsencode(path)
    if statx(_AT_FDCWD, name, _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, ctypes.byref(buffer)):
        return None
    if not buffer.stx_mask & _STATX_BTIME:
        return None
    return int(buffer.stx_btime.tv_sec) * 10**9 + int(buffer.stx_btime.tv_nsec)


@dataclass(frozen=True)
class FileTimes:
    path: Path
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int | None

    def named(self) -> dict[str, int]:
        times = {"atime": self.atime_ns, "mtime": self.mtime_ns, "ctime": self.ctime_ns}
        if self.btime_ns is not None:
            times["btime"] = self.btime_ns
        return times


def file_times(path: Path) -> FileTimes:
    st = path.lstat()
    return FileTimes(path, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, birth_time_ns(path))


def every_path(root: Path) -> Iterator[Path]:
    """``root`` and everything under it (folders too), symlinks not followed."""
    yield root
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            yield Path(folder) / name


def is_whole_day(ns: int) -> bool:
    return ns % DAY_NS == 0


def clock_after(marker: Path, ns: int) -> int:
    """The file system's clock, once it is past ``ns``: the change time of ``marker``, touched
    until it is.  File times come from a coarse kernel clock (it moves every few ms), so two
    events a moment apart may carry the same time; this gives a time strictly after one."""
    while True:
        marker.touch()
        now = marker.stat().st_ctime_ns
        if now > ns:
            return now
