"""Tor client authorisation of the pickup service: one key pair per transfer station.

The server keeps only the public halves, one line per client, in the format of a tor
``authorized_clients`` file with the client's name in front::

    station-1 descriptor:x25519:<52 base32 characters>

The private half is shown once, when the client is added, as the line a tor client reads from
its ``ClientOnionAuthDir`` (a file named ``<name>.auth_private``)::

    <onion address without .onion>:descriptor:x25519:<52 base32 characters>

Without it, a tor client cannot even decrypt the pickup service's descriptor: the service is
invisible to it.  Removing a client's line revokes it once the service is published again.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from crypto.envelope import generate_keypair
from onion.errors import ClientError, OnionKeyError
from onion.keys import read_private_file, write_private_file

MAX_CLIENTS = 64
"""More clients than any unit has transfer stations; tor itself allows many more."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_KEY = re.compile(r"[A-Z2-7]{52}")
_HEADER = (
    "# Clients authorised on the pickup onion service: `blagh onion client add|remove|list`.\n"
    "# One line per client: its name, then its public key as tor's authorized_clients takes it.\n"
)


@dataclass(frozen=True)
class Client:
    """An authorised client: its name and its X25519 public key (base32, as tor writes it)."""

    name: str
    public_key: str

    def tor_argument(self) -> str:
        """The key as ``ADD_ONION ... ClientAuthV3=`` takes it."""
        return self.public_key


@dataclass(frozen=True)
class NewClient:
    """A client just made: the one moment its private key exists on the server."""

    client: Client
    private_key: str

    def auth_private_line(self, address: str) -> str:
        """The ``<name>.auth_private`` line for the client's ClientOnionAuthDir.  Secret."""
        return f"{address.removesuffix('.onion')}:descriptor:x25519:{self.private_key}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ClientError(
            f"{name!r} is not a usable client name: use 1 to 40 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (e.g. station-1)"
        )
    return name


def new_client(name: str) -> NewClient:
    """A new key pair for the client ``name``."""
    secret, public = generate_keypair()
    return NewClient(Client(check_name(name), _b32(public)), _b32(secret))


def read_clients(path: Path) -> list[Client]:
    """The authorised clients listed in ``path`` (none if the file does not exist)."""
    try:
        text = read_private_file(path)
    except FileNotFoundError:
        return []
    clients: list[Client] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        key = parts[1].split(":") if len(parts) == 2 else []
        if len(key) != 3 or key[:2] != ["descriptor", "x25519"] or not _KEY.fullmatch(key[2]):
            raise OnionKeyError(
                f"{path}, line {number}: not a client line (name descriptor:x25519:KEY); "
                "fix or remove that line, or restore the file from backup"
            )
        if not _NAME.fullmatch(parts[0]) or any(c.name == parts[0] for c in clients):
            raise OnionKeyError(f"{path}, line {number}: bad or repeated client name")
        clients.append(Client(parts[0], key[2]))
    return clients


def write_clients(path: Path, clients: list[Client]) -> None:
    lines = "".join(f"{c.name} descriptor:x25519:{c.public_key}\n" for c in clients)
    write_private_file(path, (_HEADER + lines).encode("ascii"), replace=True)


def add_client(path: Path, name: str) -> NewClient:
    """Make a key pair for a new client ``name`` and list its public key in ``path``."""
    clients = read_clients(path)
    check_name(name)
    if any(c.name == name for c in clients):
        raise ClientError(
            f"a client named {name!r} already exists; choose another name, or remove it first "
            f"(blagh onion client remove {name})"
        )
    if len(clients) >= MAX_CLIENTS:
        raise ClientError(f"there are already {MAX_CLIENTS} clients; remove unused ones first")
    made = new_client(name)
    write_clients(path, [*clients, made.client])
    return made


def remove_client(path: Path, name: str) -> Client:
    """Remove the client ``name`` from ``path`` and return it."""
    clients = read_clients(path)
    kept = [c for c in clients if c.name != name]
    if len(kept) == len(clients):
        known = ", ".join(c.name for c in clients) or "none"
        raise ClientError(f"no client named {name!r} (clients: {known})")
    write_clients(path, kept)
    return next(c for c in clients if c.name == name)


def _b32(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=")
