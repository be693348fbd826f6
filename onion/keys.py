"""Onion service keys: made here, kept in the data folder (0600), handed to tor on every start.

tor gives an ephemeral (``ADD_ONION``) service the address of the key it is given, so keeping
the key keeps the address: reporters' bookmarks and printed posters stay valid across restarts
and reinstalls.  The key is made here rather than by tor (``NEW:ED25519-V3``) so that it exists,
with its address, before tor first runs: ``blagh onion client add`` can print the pickup
service's address to a transfer station before the service was ever published.  tor checks the
pair on every start: the address it reports must be the one stored next to the key.

The file is a few lines of text::

    # comment lines
    address: <56 base32 characters>.onion
    key: ED25519-V3:<base64 of the 64-byte expanded secret key>

The key line is exactly what ``ADD_ONION`` takes and what tor returns for a new key: tor's own
expanded Ed25519 secret key (SHA-512 of a 32-byte seed, clamped), as in its
``hs_ed25519_secret_key`` file.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from crypto.keys import ServerSigningKey
from onion.errors import OnionKeyError

KEY_TYPE = "ED25519-V3"
EXPANDED_KEY_BYTES = 64
SEED_BYTES = 32
ONION_VERSION = 3
ADDRESS_LENGTH = 56

_ADDRESS = re.compile(r"[a-z2-7]{56}")
_HEADER = "# Blagh onion service key. Secret: keep it mode 0600; back it up with the data folder."


@dataclass(frozen=True)
class OnionKey:
    """An onion service's secret key, as tor takes it, and the address it gives."""

    address: str
    """The service's address without ``.onion``: 56 lowercase base32 characters."""

    expanded: bytes = field(repr=False)
    """tor's expanded Ed25519 secret key (64 bytes)."""

    def __post_init__(self) -> None:
        if not _ADDRESS.fullmatch(self.address) or len(self.expanded) != EXPANDED_KEY_BYTES:
            raise ValueError("an onion key is a 56-character address and a 64-byte secret key")

    @property
    def hostname(self) -> str:
        return f"{self.address}.onion"

    def add_onion_argument(self) -> str:
        """The key as ``ADD_ONION`` takes it.  Secret: never log it."""
        return f"{KEY_TYPE}:{base64.b64encode(self.expanded).decode('ascii')}"


def generate_key() -> OnionKey:
    """A new random onion service key, as tor itself makes one."""
    seed = secrets.token_bytes(SEED_BYTES)
    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 63
    digest[31] |= 64
    # The Ed25519 public key of the seed; crypto/ holds the one libsodium binding for it.
    public = ServerSigningKey(seed=seed).public().verify
    return OnionKey(address=onion_address(public), expanded=bytes(digest))


def onion_address(public_key: bytes) -> str:
    """The v3 onion address of an Ed25519 public key, without ``.onion`` (rend-spec-v3 §6)."""
    version = bytes([ONION_VERSION])
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + version).digest()[:2]
    return base64.b32encode(public_key + checksum + version).decode("ascii").lower()


def is_onion_address(text: str) -> bool:
    """Whether ``text`` is a well-formed v3 onion address (checksum included), with or without
    ``.onion``."""
    address = text.removesuffix(".onion")
    if not _ADDRESS.fullmatch(address):
        return False
    raw = base64.b32decode(address.upper())
    public, version = raw[:32], raw[34:]
    return version == bytes([ONION_VERSION]) and onion_address(public) == address


def write_key_file(path: Path, key: OnionKey) -> None:
    """Write ``key`` to a new file at ``path``, mode 0600, whole or not at all."""
    text = f"{_HEADER}\naddress: {key.hostname}\nkey: {key.add_onion_argument()}\n"
    write_private_file(path, text.encode("ascii"), replace=False)


def read_key_file(path: Path) -> OnionKey:
    """Read a key file written by :func:`write_key_file`; raise OnionKeyError if it is missing,
    readable by others, or damaged (the message never quotes the file)."""
    text = read_private_file(path)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, separator, value = line.partition(":")
        if not separator or name.strip() in fields:
            raise _damaged(path)
        fields[name.strip()] = value.strip()
    if set(fields) != {"address", "key"}:
        raise _damaged(path)
    address = fields["address"].removesuffix(".onion")
    kind, _, blob = fields["key"].partition(":")
    try:
        expanded = base64.b64decode(blob, validate=True)
    except ValueError:
        raise _damaged(path) from None
    if kind != KEY_TYPE or not is_onion_address(address) or len(expanded) != EXPANDED_KEY_BYTES:
        raise _damaged(path)
    return OnionKey(address=address, expanded=expanded)


def load_or_create_key(path: Path) -> tuple[OnionKey, bool]:
    """The key in ``path``, made (and written) first if the file does not exist yet; the flag
    says whether it was made now."""
    try:
        return read_key_file(path), False
    except FileNotFoundError:
        pass
    key = generate_key()
    try:
        write_key_file(path, key)
    except FileExistsError:  # made by a concurrent command: use that one
        return read_key_file(path), False
    return key, True


def _damaged(path: Path) -> OnionKeyError:
    return OnionKeyError(
        f"{path} is damaged: it is not an onion service key file written by blagh; restore it "
        "from backup (the onion address depends on it), or remove it to get a new address"
    )


# --- private files ----------------------------------------------------------------------------


def make_private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) if needed, and make it mode 0700."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as error:
        raise OnionKeyError(f"cannot create {path}: {_reason(error)}") from None


def read_private_file(path: Path) -> str:
    """The text of a file only its owner may read; FileNotFoundError when it does not exist.

    A file others can read is refused rather than used: a key that may have leaked should be
    replaced, not trusted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise OnionKeyError(f"cannot read {path}: {_reason(error)}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OnionKeyError(f"{path} is not a regular file; give the path of the file")
    with os.fdopen(fd, "rb") as file:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise OnionKeyError(
                f"{path} can be read or changed by other users (mode {mode:04o}); run "
                f"chmod 600 {path}, and replace the key if someone else may have read it"
            )
        try:
            data = file.read(1 << 20)
        except OSError as error:
            raise OnionKeyError(f"cannot read {path}: {_reason(error)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OnionKeyError(f"{path} is damaged: it is not text; restore it from backup") from None


def write_private_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 through a temporary file, fsynced and renamed
    into place, so a crash leaves the old file or the new one, never half of one.  Without
    ``replace``, an existing file raises FileExistsError."""
    make_private_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails with FileExistsError instead of replacing
            os.unlink(temporary)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except FileExistsError:
        temporary.unlink(missing_ok=True)
        raise
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OnionKeyError(f"cannot write {path}: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    reason = (error.strerror or str(error)).lower()
    if isinstance(error, PermissionError):
        reason += "; check its owner and permissions, or run blagh as the user that owns it"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some disk space and try again"
    return reason
