"""The transfer station's side of the pickup API: ``blagh pickup`` and ``blagh deliver``.

The transfer station holds no key that opens anything: it moves signed ciphertext bundles
between the server's pickup onion service and removable media.  It reaches the service
through tor's SOCKS port (a small SOCKS5 client below: the onion name is resolved by tor,
never by the local resolver), authenticated twice: tor's client authorisation (the key line
``blagh onion client add`` gave, which tor reads from its ``ClientOnionAuthDir``) and the
station's bearer token (``blagh pickup-token add``).

Downloads resume: the bytes received so far stay in ``DIR/.pickup.partial`` with the
bundle's ETag beside it, and the next run asks for the rest (``Range`` + ``If-Range``; the
server answers with the whole bundle if it has changed since).  The bundle is renamed to
``DIR/pickup-<id>.bundle`` only once complete and verified: its manifest's signature and
every item's hash, against the server's public key when given (``--server-key``), else
against the key it names (which proves it whole, not who made it: the workstation checks
that against the key it pinned).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import ipaddress
import json
import os
import re
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from blagh.bundles import BundleError, BundleReader, manifest_signer
from blagh.errors import BlaghError

DEFAULT_SOCKS = ("127.0.0.1", 9050)
CONNECT_TIMEOUT = 120.0
"""Seconds to wait for tor to build a circuit to an onion service, and for each read."""

PARTIAL = ".pickup.partial"
PARTIAL_ETAG = ".pickup.partial.etag"
LOCK = ".pickup.lock"
_BLOCK = 64 * 1024
_BUNDLE_ID = re.compile(r"[0-9a-f]{32}")
_CLIENT_KEY = re.compile(r"([a-z2-7]{56}):descriptor:x25519:[A-Z2-7]{52}")

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as a transfer goes."""


class TransferError(BlaghError):
    """A pickup or delivery failed; the message says why and what to do."""


# --- where to connect -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """The pickup API: host and port, a path prefix, and the SOCKS proxy to reach it by."""

    host: str
    port: int
    path: str
    socks: tuple[str, int] | None

    def url(self, route: str) -> str:
        return self.path.rstrip("/") + route


def endpoint(url: str, socks: str | None) -> Endpoint:
    """Parse ``--url`` and ``--socks``.  An onion address goes through tor (127.0.0.1:9050
    unless ``--socks`` says otherwise); without a proxy only a loopback address is allowed,
    so a token never crosses a network in the clear."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TransferError(
            f"{url!r} is not a pickup URL: give http://<address>.onion/ (onion services are "
            "encrypted end to end by tor; there is no https)"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise TransferError(f"{url!r} has an invalid port") from None
    host = parts.hostname
    proxy = _parse_socks(socks) if socks else None
    if proxy is None:
        if host.endswith(".onion"):
            proxy = DEFAULT_SOCKS
        elif not _is_loopback(host):
            raise TransferError(
                f"{host} is neither an onion address nor this machine: the token would cross "
                "the network in the clear; use the pickup onion address (and --socks if tor's "
                "SOCKS port is not 127.0.0.1:9050)"
            )
    return Endpoint(host, port, parts.path or "/", proxy)


def _parse_socks(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TransferError(f"--socks {text!r} is not HOST:PORT, e.g. 127.0.0.1:9050")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_client_key(path: Path, where: Endpoint) -> None:
    """Check the onion client-authorisation key file is one for this service.

    The key itself is tor's business: tor reads it from its ``ClientOnionAuthDir`` (save the
    line as ``<name>.auth_private`` there, mode 0600, and reload tor), and nothing can hand it
    over through the SOCKS port.  Checking it here catches the wrong file or the wrong address
    with a clear message instead of an unreachable service.
    """
    line = read_secret_file(path, "the client key").split("\n", 1)[0].strip()
    found = _CLIENT_KEY.fullmatch(line)
    if found is None:
        raise TransferError(
            f"{path} is not an onion client key: it should hold the line `blagh onion client "
            "add` printed (<address>:descriptor:x25519:<key>)"
        )
    if not where.host.endswith(".onion"):
        raise TransferError("--client-key is for an onion address; this URL is not one")
    if found.group(1) != where.host.removesuffix(".onion"):
        raise TransferError(
            f"{path} is the client key of {found.group(1)}.onion, not of {where.host}; "
            "check --url and --client-key"
        )


def read_secret_file(path: Path, what: str) -> str:
    """A small secret file that only its owner may read (a token, a client key)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise TransferError(f"cannot read {what} {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TransferError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise TransferError(
                f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"run chmod 600 {path}, and replace {what} if someone else may have read it"
            )
        data = file.read(64 * 1024)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TransferError(f"{path} is not text: is it {what}?") from None


# --- SOCKS5 (RFC 1928), as tor speaks it -------------------------------------------------------

_SOCKS_REPLIES = {
    1: "general failure",
    2: "not allowed by tor's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "circuit timed out",
    7: "command not supported",
    8: "address type not supported",
    0xF0: "onion service descriptor not found: the service is not published, or this client "
    "is not authorised (is the client key in tor's ClientOnionAuthDir?)",
    0xF1: "onion service descriptor could not be read",
    0xF2: "introduction failed",
    0xF3: "rendezvous failed",
    0xF4: "client authorisation is missing: add the client key to tor's ClientOnionAuthDir",
    0xF5: "client authorisation is wrong: check the client key in tor's ClientOnionAuthDir",
    0xF6: "invalid onion address",
    0xF7: "introduction timed out",
}


def socks5_connect(proxy: tuple[str, int], host: str, port: int, timeout: float) -> socket.socket:
    """A TCP stream to ``host:port`` through a SOCKS5 proxy; the proxy resolves ``host``."""
    name = host.encode("idna")
    if len(name) > 255:
        raise TransferError(f"{host} is too long a host name")
    try:
        sock = socket.create_connection(proxy, timeout=timeout)
    except OSError as error:
        raise TransferError(
            f"cannot reach tor's SOCKS port at {proxy[0]}:{proxy[1]} ({error.strerror or error});"
            " is tor running? (--socks HOST:PORT names its SocksPort)"
        ) from None
    try:
        sock.sendall(b"\x05\x01\x00")
        if _recv_exactly(sock, 2) != b"\x05\x00":
            raise TransferError(f"{proxy[0]}:{proxy[1]} is not a SOCKS5 proxy that tor runs")
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        version, reply, _, kind = _recv_exactly(sock, 4)
        if version != 5:
            raise TransferError(f"{proxy[0]}:{proxy[1]} answered outside SOCKS5")
        if reply != 0:
            reason = _SOCKS_REPLIES.get(reply, f"error {reply}")
            raise TransferError(f"tor could not connect to {host}: {reason}")
        length = {1: 4, 4: 16}.get(kind)
        if length is None:
            length = _recv_exactly(sock, 1)[0]
        _recv_exactly(sock, length + 2)
    except TransferError:
        sock.close()
        raise
    except OSError as error:
        sock.close()
        raise TransferError(f"the SOCKS proxy failed: {error.strerror or error}") from None
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise TransferError("the SOCKS proxy closed the connection")
        data += chunk
    return data


class _Connection(http.client.HTTPConnection):
    """HTTP over a SOCKS5 stream when a proxy is given, else plain (loopback only)."""

    def __init__(self, where: Endpoint) -> None:
        super().__init__(where.host, where.port, timeout=CONNECT_TIMEOUT, blocksize=_BLOCK)
        self._proxy = where.socks

    def connect(self) -> None:
        if self._proxy is None:
            try:
                super().connect()
            except OSError as error:
                raise TransferError(
                    f"cannot connect to {self.host}:{self.port} ({error.strerror or error}); "
                    "is the pickup API running?"
                ) from None
            return
        self.sock = socks5_connect(self._proxy, self.host, self.port, CONNECT_TIMEOUT)


@contextlib.contextmanager
def _connection(where: Endpoint) -> Iterator[_Connection]:
    connection = _Connection(where)
    try:
        yield connection
    finally:
        connection.close()


def _refusal(response: http.client.HTTPResponse, what: str) -> TransferError:
    if response.status == 401:
        return TransferError(
            f"the pickup API refused the token (HTTP 401) while {what}; check --token, or ask "
            "the operator for one (blagh pickup-token add)"
        )
    detail = ""
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        body = json.loads(response.read(64 * 1024))
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            detail = ": " + body["error"]
    return TransferError(f"the pickup API answered HTTP {response.status} while {what}{detail}")


# --- pickup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    path: Path
    bundle_id: str
    items: int
    size: int
    resumed_from: int
    already_there: bool = False


def download_bundle(
    where: Endpoint,
    token: str,
    out_dir: Path,
    *,
    server_key: bytes | None = None,
    progress: Progress | None = None,
) -> Downloaded:
    """Fetch the current pickup bundle into ``out_dir``, resuming a partial download."""
    if not out_dir.is_dir():
        raise TransferError(f"{out_dir} is not a directory; create it or choose another --out")
    with _locked(out_dir):
        for _ in range(2):
            result = _download(where, token, out_dir, server_key, progress)
            if result is not None:
                return result
    raise TransferError("the server kept answering a range it could not serve; run again")


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    fd = os.open(out_dir / LOCK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TransferError(
                f"another blagh pickup is downloading into {out_dir}; wait for it to end"
            ) from None
        yield
    finally:
        os.close(fd)


def _download(
    where: Endpoint,
    token: str,
    out_dir: Path,
    server_key: bytes | None,
    progress: Progress | None,
) -> Downloaded | None:
    partial, etag_file = out_dir / PARTIAL, out_dir / PARTIAL_ETAG
    offset, etag = 0, ""
    if partial.exists() and etag_file.exists():
        offset = partial.stat().st_size
        etag = etag_file.read_text("ascii").strip()
    headers = {"Authorization": f"Bearer {token}"}
    if offset and etag:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = etag
    with _connection(where) as connection:
        try:
            connection.request("GET", where.url("/v1/bundle"), headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            raise TransferError(f"the pickup request failed: {error}; run again") from None
        if response.status == 416:
            _forget_partial(out_dir)
            return None
        if response.status not in (200, 206):
            raise _refusal(response, "fetching the pickup bundle")
        bundle_id = response.getheader("X-Blagh-Bundle", "")
        if not _BUNDLE_ID.fullmatch(bundle_id):
            raise TransferError("the server sent no bundle id: is this the pickup API?")
        if response.status == 200:
            offset = 0
            total = int(response.getheader("Content-Length", "-1"))
            final = out_dir / f"pickup-{bundle_id}.bundle"
            if final.exists() and final.stat().st_size == total:
                _forget_partial(out_dir)
                items = int(response.getheader("X-Blagh-Items", "0") or 0)
                return Downloaded(final, bundle_id, items, total, 0, already_there=True)
            _start_partial(out_dir, response.getheader("ETag", ""))
        else:
            total = _check_content_range(response.getheader("Content-Range", ""), offset)
        if total < 0:
            raise TransferError("the server did not say how large the bundle is")
        _receive(response, partial, offset, total, progress)
    return _finish(out_dir, bundle_id, total, offset, server_key)


def _check_content_range(header: str, offset: int) -> int:
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", header.strip())
    if found is None or int(found.group(1)) != offset:
        raise TransferError("the server answered a range other than the one asked for; run again")
    return int(found.group(3))


def _start_partial(out_dir: Path, etag: str) -> None:
    # 0600, not open()'s 0777 less the umask: the bundle is ciphertext, but who may read it
    # from the removable media is the station's user's business only.
    _private(out_dir / PARTIAL, b"")
    _private(out_dir / PARTIAL_ETAG, (etag + "\n").encode("ascii"))


def _private(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _forget_partial(out_dir: Path) -> None:
    for name in (PARTIAL, PARTIAL_ETAG):
        (out_dir / name).unlink(missing_ok=True)


def _receive(
    response: http.client.HTTPResponse,
    partial: Path,
    offset: int,
    total: int,
    progress: Progress | None,
) -> None:
    done = offset
    fd = os.open(partial, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "ab") as file:
        if progress:
            progress(done, total)
        try:
            while done < total:
                chunk = response.read(min(_BLOCK, total - done))
                if not chunk:
                    break
                file.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            file.flush()
            os.fsync(file.fileno())
    if done < total:
        raise TransferError(
            f"the download was interrupted after {done} of {total} bytes; run the same command "
            "again to resume it"
        )


def _finish(
    out_dir: Path, bundle_id: str, total: int, offset: int, server_key: bytes | None
) -> Downloaded:
    partial = out_dir / PARTIAL
    try:
        items = verify_bundle(partial, "blagh-pickup", server_key)
    except BundleError as error:
        _forget_partial(out_dir)
        detail = str(error).replace(str(partial), "the downloaded bundle")
        raise TransferError(f"{detail}; it was deleted: run again to download it anew") from None
    final = out_dir / f"pickup-{bundle_id}.bundle"
    os.replace(partial, final)
    (out_dir / PARTIAL_ETAG).unlink(missing_ok=True)
    dir_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return Downloaded(final, bundle_id, items, total, offset)


def verify_bundle(path: Path, expected_format: str, signer: bytes | None = None) -> int:
    """Check a bundle whole (signature, members, hashes) and return its number of items.

    Without ``signer`` the key named in the manifest is used: this proves the bundle complete
    and unchanged since it was signed, not who signed it.
    """
    key = signer if signer is not None else manifest_signer(path)
    with BundleReader(path, [key], expected_format) as reader:
        return len(reader.manifest["items"])


# --- deliver -----------------------------------------------------------------------------------


class _ProgressReader:
    """A file whose reads report progress: http.client streams a request body by reading it."""

    def __init__(self, file: IO[bytes], total: int, progress: Progress | None) -> None:
        self._file = file
        self._total = total
        self._done = 0
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._done += len(data)
        if self._progress:
            self._progress(self._done, self._total)
        return data


def deliver_bundle(
    where: Endpoint, token: str, path: Path, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Upload a reply bundle; return the server's summary of what it applied."""
    try:
        verify_bundle(path, "blagh-replies")
    except BundleError as error:
        raise TransferError(f"{error}; nothing was sent") from None
    size = path.stat().st_size
    with path.open("rb") as file, _connection(where) as connection:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        try:
            connection.request(
                "POST",
                where.url("/v1/replies"),
                body=_ProgressReader(file, size, progress),
                headers=headers,
            )
            response = connection.getresponse()
            if response.status != 200:
                raise _refusal(response, "delivering the reply bundle")
            body = json.loads(response.read(1024 * 1024))
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise TransferError(
                f"the delivery failed: {error}; run again (a bundle the server did apply is "
                "refused the second time as imported before, so this is safe)"
            ) from None
    if not isinstance(body, dict):
        raise TransferError("the pickup API answered something other than a summary")
    return body
