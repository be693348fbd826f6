"""Several source-interface machines behind one onion address: the files Onionbalance needs.

Onionbalance (Debian's ``onionbalance``, v3 protocol) runs on a machine of its own with a tor of
its own.  It holds the *frontend* key, the address reporters know; every few minutes it fetches
the descriptors of the *backends* (each source-interface machine's own onion service), takes
their introduction points and publishes them, signed with the frontend key, as the frontend's
descriptor.  A reporter's tor then introduces itself to one backend's introduction point and
talks to that machine; when a machine goes down its introduction points stop answering and the
reporter's tor tries the next one, and the next frontend descriptor leaves them out.

What this module writes, in one folder (mode 0700) for the frontend machine:

- ``frontend.key``: the frontend's Ed25519 key, in the PKCS#8 PEM form Onionbalance itself
  writes ("OBv3 format"), mode 0600.  It is made once and kept: running the command again with
  other backends keeps the address (a reporter's bookmark, a printed poster).
- ``config.yaml``: Onionbalance's configuration, the key and the backends' addresses; only
  once at least one backend is given (Onionbalance refuses a service without instances).
- ``ob_config``: the one line each backend's tor needs in its hidden-service folder
  (``MasterOnionAddress``), so that its introduction points accept reporters who connect to
  the frontend address (their introduction is encrypted to the frontend's key, not the
  backend's).

Why the backends' services live in tor's configuration (``HiddenServiceDir``) rather than in
``ADD_ONION`` as ``blagh serve`` publishes them: tor reads ``HiddenServiceOnionbalanceInstance``
and the ``ob_config`` file only for an on-disk service; an ephemeral one has no folder and no
such option (tor 0.4.9), so a backend's tor would refuse every reporter who came through the
frontend.  A backend therefore runs ``blagh serve --tor off`` (gunicorn on loopback) behind
its system tor's ``HiddenServiceDir`` (:func:`backend_torrc`).  The price: the proof-of-work
defence is set in that torrc too (``HiddenServicePoWDefensesEnabled``), not by ``[tor]``.

The YAML is written here rather than with a YAML library: it is two keys and a list of
addresses, all checked against the onion address alphabet first.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from crypto.keys import ServerSigningKey
from onion.errors import OnionError, OnionKeyError
from onion.keys import (
    is_onion_address,
    make_private_directory,
    onion_address,
    read_private_file,
    write_private_file,
)

FRONTEND_KEY = "frontend.key"
CONFIG = "config.yaml"
OB_CONFIG = "ob_config"

MAX_BACKENDS = 8
"""Onionbalance publishes one descriptor with up to 20 introduction points; beyond 8 backends
it would need distinct descriptors per HSDir, which the Debian version does not make (the
reporters' tor would reach only some backends).  docs/scale.md says what to do past 8."""

# An Ed25519 private key in PKCS#8 (RFC 8410): this fixed DER prefix, then the 32-byte seed.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(
    r"-----BEGIN PRIVATE KEY-----\n([A-Za-z0-9+/=\n]+?)\n?-----END PRIVATE KEY-----\n?"
)


class BalanceError(OnionError):
    """The backends given to the Onionbalance configuration are not usable."""


@dataclass(frozen=True)
class Balance:
    """What :func:`write_balance` wrote."""

    address: str
    """The frontend's onion address, without ``.onion``."""

    created: bool
    """Whether the frontend key was made now (else an existing one was kept)."""

    directory: Path
    backends: tuple[str, ...]

    @property
    def config_file(self) -> Path | None:
        return self.directory / CONFIG if self.backends else None

    @property
    def ob_config_file(self) -> Path:
        return self.directory / OB_CONFIG


def write_balance(directory: Path, backends: list[str]) -> Balance:
    """Make (or keep) the frontend key in ``directory`` and write Onionbalance's configuration
    for ``backends`` (onion addresses, with or without ``.onion``) and the backends' ob_config.
    """
    addresses = check_backends(backends)
    make_private_directory(directory)
    address, created = load_or_create_frontend(directory / FRONTEND_KEY)
    if address in addresses:
        raise BalanceError(
            f"{address}.onion is the frontend's own address: give the backends' addresses (each "
            "source-interface machine's own onion service)"
        )
    write_private_file(directory / OB_CONFIG, ob_config(address).encode("ascii"), replace=True)
    if addresses:
        text = frontend_config(FRONTEND_KEY, addresses)
        write_private_file(directory / CONFIG, text.encode("ascii"), replace=True)
    else:
        (directory / CONFIG).unlink(missing_ok=True)  # none left: no stale list of backends
    return Balance(address, created, directory, tuple(addresses))


def check_backends(backends: list[str]) -> list[str]:
    """The backends' addresses without ``.onion``, in order; refuse malformed, repeated or too
    many (the message names the culprit: addresses are public)."""
    addresses: list[str] = []
    for given in backends:
        address = given.strip().lower().removesuffix(".onion")
        if not is_onion_address(address):
            raise BalanceError(
                f"{given!r} is not a v3 onion address (56 characters, then .onion): copy it "
                "from the backend's `blagh status` or its tor's hostname file"
            )
        if address in addresses:
            raise BalanceError(f"{address}.onion is given twice")
        addresses.append(address)
    if len(addresses) > MAX_BACKENDS:
        raise BalanceError(
            f"{len(addresses)} backends: Onionbalance serves at most {MAX_BACKENDS} behind one "
            "address (docs/scale.md, Onionbalance's limits)"
        )
    return addresses


def frontend_config(key_file: str, backends: list[str]) -> str:
    """Onionbalance's config.yaml: one service, its key (relative to the config's folder) and
    its backends."""
    lines = [
        "# Onionbalance configuration written by `blagh onion balance` (docs/scale.md).",
        "services:",
        f"- key: {key_file}",
        "  instances:",
    ]
    for number, address in enumerate(backends, 1):
        lines += [f"  - address: {address}.onion", f"    name: backend{number}"]
    return "\n".join(lines) + "\n"


def ob_config(frontend: str) -> str:
    """The ob_config file of each backend's hidden-service folder."""
    return f"MasterOnionAddress {frontend}.onion\n"


def backend_torrc(service_dir: Path | str, local_port: int, *, pow_defense: bool = True) -> str:
    """The torrc lines of a backend: its on-disk onion service in front of ``blagh serve``'s
    loopback port, as an Onionbalance instance (ob_config in ``service_dir``)."""
    lines = [
        f"HiddenServiceDir {service_dir}",
        "HiddenServiceVersion 3",
        f"HiddenServicePort 80 127.0.0.1:{local_port}",
        "HiddenServiceOnionbalanceInstance 1",
    ]
    if pow_defense:
        lines.append("HiddenServicePoWDefensesEnabled 1")
    return "\n".join(lines) + "\n"


# --- the frontend key -------------------------------------------------------------------------


def load_or_create_frontend(path: Path) -> tuple[str, bool]:
    """The frontend's address from the key in ``path``, the key made first if there is none;
    the flag says whether it was made now."""
    try:
        return read_frontend_key(path), False
    except FileNotFoundError:
        pass
    seed = secrets.token_bytes(32)
    der = _PKCS8_PREFIX + seed
    body = base64.encodebytes(der).decode("ascii")
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    try:
        write_private_file(path, pem.encode("ascii"), replace=False)
    except FileExistsError:  # made by a concurrent command: use that one
        return read_frontend_key(path), False
    return _address_of_seed(seed), True


def read_frontend_key(path: Path) -> str:
    """The onion address of the frontend key in ``path`` (0600, PKCS#8 PEM Ed25519)."""
    text = read_private_file(path)
    found = _PEM.fullmatch(text)
    try:
        der = base64.b64decode(found.group(1).replace("\n", ""), validate=True) if found else b""
    except ValueError:
        der = b""
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise OnionKeyError(
            f"{path} is damaged: it is not an Ed25519 private key in PEM; restore it from "
            "backup (the frontend address depends on it)"
        )
    return _address_of_seed(der[len(_PKCS8_PREFIX) :])


def _address_of_seed(seed: bytes) -> str:
    # The Ed25519 public key of the seed; crypto/ holds the one libsodium binding for it.
    return onion_address(ServerSigningKey(seed=seed).public().verify)
