"""A private Tor network on 127.0.0.1, for end-to-end tests over real onion circuits.

Built the way Tor's chutney builds its test networks, from our own torrc files: three directory
authorities (keys from ``tor-gencert --create-identity-key``, fingerprints from ``tor
--list-fingerprint``, one shared set of ``DirAuthority`` lines), three relays, a tor that hosts
the onion services (blagh attaches to its control socket, as it would to a system tor) and a
client with a SOCKS port.  It bootstraps in about 30 seconds without any network but loopback.

It can never reach the public Tor network: every node has ``TestingTorNetwork 1``, which tor
accepts only with a non-default set of ``DirAuthority`` lines, and ours all name 127.0.0.1;
``UseDefaultFallbackDirs 0`` leaves tor no other directory to ask.  The tests run in a
loopback-only network namespace on top of that (scripts/offline.sh).

Two settings matter on loopback (issue 4): ``LearnCircuitBuildTimeout 0`` with
``CircuitBuildTimeout 30`` (else tor learns a timeout of a few milliseconds from loopback and
gives up on rendezvous circuits), and ``ServerDNSResolvConfFile /dev/null`` (no resolver).

Every wait polls a condition against a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import stem.control

logging.getLogger("stem").setLevel(logging.WARNING)  # its INFO repeats itself on every close

TOR = "tor"
TOR_GENCERT = "tor-gencert"
BOOTSTRAP_SECONDS = 120.0
HOST = "127.0.0.1"
NEWNYM_SPACING = 11.0
"""Seconds between two NEWNYM signals to one tor: it delays any sent within 10 s of the last."""

T = TypeVar("T")

COMMON = """\
TestingTorNetwork 1
DataDirectory {dir}
Nickname {nick}
ShutdownWaitLength 0
Log notice file {dir}/notice.log
Log info file {dir}/info.log
ProtocolWarnings 1
ControlSocket {dir}/control
CookieAuthentication 1
UseDefaultFallbackDirs 0
# exit when the test process does, even if it is killed before it can stop the network
__OwningControllerProcess {owner}
# chutney's "rapid bootstrap" options
AssumeReachable 1
PathsNeededToBuildCircuits 0.25
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
# loopback: a learnt circuit build timeout would be milliseconds
LearnCircuitBuildTimeout 0
CircuitBuildTimeout 30
ServerDNSResolvConfFile /dev/null
{authorities}
"""

AUTHORITY = """\
SocksPort 0
Address 127.0.0.1
ORPort {host}:{orport}
DirPort {host}:{dirport}
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
ContactInfo {nick}@test.invalid
ExitPolicy reject *:*
TestingV3AuthInitialVotingInterval 5
V3AuthVotingInterval 10
TestingV3AuthInitialVoteDelay 2
V3AuthVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthDistDelay 2
"""

RELAY = """\
SocksPort 0
Address 127.0.0.1
ORPort {host}:{orport}
DirPort {host}:{dirport}
ContactInfo {nick}@test.invalid
ExitPolicyRejectPrivate 0
ExitPolicy accept 127.0.0.0/8:*
ExitPolicy reject *:*
"""

ONION_HOST = """\
SocksPort 0
"""

CLIENT = """\
SocksPort {host}:{socksport} ExtendedErrors
ClientOnionAuthDir {dir}/onion-auth
"""


_watchdog: subprocess.Popen[bytes] | None = None


def watchdog_pid() -> int:
    """A process that lives exactly as long as this one: the "owning controller" of every tor
    started here, so that tor exits (within 15 s) even when the tests are killed before they can
    stop it.  Not this process's own pid: stem would then take ownership on every connection,
    and tor would exit when that connection closed."""
    global _watchdog
    if _watchdog is None or _watchdog.poll() is not None:
        _watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return _watchdog.pid


_WATCHDOG = """
import ctypes, os, signal, sys, time
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit()
while True:
    time.sleep(3600)
"""


def close_quietly(controller: Any) -> None:
    """stem's close() can block for ever joining its reader thread: never wait more than 5 s."""
    closer = threading.Thread(target=controller.close, daemon=True)
    closer.start()
    closer.join(5)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all held at once while they are chosen)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((HOST, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_for(what: str, condition: Callable[[], T | None], seconds: float, step=0.2) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds:.0f} s")
        time.sleep(step)


@dataclass
class Node:
    nick: str
    role: str
    directory: Path
    orport: int = 0
    dirport: int = 0
    socksport: int = 0
    fingerprint: str = ""
    v3ident: str = ""
    process: subprocess.Popen[bytes] | None = None
    last_newnym: float = -NEWNYM_SPACING

    @property
    def control_socket(self) -> Path:
        return self.directory / "control"

    @property
    def torrc(self) -> Path:
        return self.directory / "torrc"

    def log(self, name: str = "notice.log") -> str:
        try:
            return (self.directory / name).read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def controller(self) -> Any:
        """An authenticated stem Controller; close it with :func:`close_quietly`."""
        controller = stem.control.Controller.from_socket_file(str(self.control_socket))
        controller.authenticate()
        return controller

    def relay_fingerprint(self) -> str:
        """The identity fingerprint of this relay, from the file tor writes when it starts (the
        authorities' are known from the start: :meth:`TorNetwork.build` makes their keys)."""
        if not self.fingerprint:
            self.fingerprint = (self.directory / "fingerprint").read_text("ascii").split()[1]
        return self.fingerprint

    def new_identity(self) -> bool:
        """``SIGNAL NEWNYM``, Tor Browser's "New identity": tor also forgets the onion-service
        descriptors it holds and which directories it asked for them lately.  Sent at most once
        in :data:`NEWNYM_SPACING` seconds: tor would hold a closer one back and act on it later,
        in the middle of whatever the test does next.  Whether it was sent."""
        now = time.monotonic()
        if now < self.last_newnym + NEWNYM_SPACING:
            return False
        controller = self.controller()
        try:
            controller.signal(stem.Signal.NEWNYM)
        finally:
            close_quietly(controller)
        self.last_newnym = time.monotonic()
        return True

    def reload(self) -> None:
        """SIGHUP, and wait until tor has read its configuration again (it reopens its log
        files last)."""
        assert self.process is not None
        before = self.log().count("opening log file")
        os.kill(self.process.pid, signal.SIGHUP)
        wait_for(
            f"{self.nick} reloaded",
            lambda: self.log().count("opening log file") > before,
            30,
            step=0.05,
        )


@dataclass
class HsDescEvents:
    """The HS_DESC events of the onion-service host: which uploads started and finished."""

    started: dict[str, set[str]] = field(default_factory=dict)
    done: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, event: Any) -> None:
        # "650 HS_DESC UPLOAD|UPLOADED|FAILED <address> <auth> <hsdir> ..." read raw: stem 1.8
        # predates v3 addresses in some of its field checks.
        parts = str(event).split()
        if len(parts) < 5 or parts[0] != "HS_DESC":
            return
        action, address, hsdir = parts[1], parts[2], parts[4]
        with self.lock:
            if action == "UPLOAD":
                self.started.setdefault(address, set()).add(hsdir)
            elif action in ("UPLOADED", "FAILED"):
                self.done.setdefault(address, set()).add(hsdir)

    def all_uploaded(self, address: str) -> bool:
        with self.lock:
            started = self.started.get(address, set())
            return bool(started) and started <= self.done.get(address, set())


SERVICE_HOSTS = ("onion-host", "backend")
"""The roles of the nodes that publish onion services."""


class CircuitKeeper:
    """Keeps each onion-service host's tor building its services' circuits, as a tor on the
    public network always is.

    A tor that receives a consensus naming relays whose microdescriptors it does not have yet
    clears its "circuit established" flag, and only the next multi-hop circuit it completes sets
    it again; until then its onion services build no introduction circuit, so a service added
    meanwhile is never published.  On the public network some circuit is always being built.
    In this eight-node network, whose consensus changes every 10 s while its relays still
    republish their descriptors, a host that already holds its spare circuits can build none
    for minutes (seen in CI: a service added at that moment, no upload in 90 s).  So, once a
    second, a host whose ``status/circuit-established`` reads 0 while it has enough directory
    information is asked for one circuit through the relays (``EXTENDCIRCUIT``); each request
    is counted in :attr:`requested`, by node.
    """

    INTERVAL = 1.0

    def __init__(self, hosts: list[Node], relays: list[Node]) -> None:
        self.hosts = hosts
        self.relays = relays
        self.requested: dict[str, int] = {}
        self._controllers: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="circuit-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for controller in self._controllers.values():
            close_quietly(controller)
        self._controllers.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            for node in self.hosts:
                if node.process is None or node.process.poll() is not None:
                    continue  # not started, or killed by the test
                try:
                    self._keep(node)
                except Exception:  # whatever it was, next second on a new control connection
                    controller = self._controllers.pop(node.nick, None)
                    if controller is not None:
                        close_quietly(controller)

    def _keep(self, node: Node) -> None:
        controller = self._controllers.get(node.nick)
        if controller is None:
            controller = self._controllers[node.nick] = node.controller()
        if controller.get_info("status/circuit-established", "1") != "0":
            return
        if controller.get_info("status/enough-dir-info", "0") != "1":
            return  # tor fetches what it lacks first; a circuit now would fail
        path = [relay.relay_fingerprint() for relay in random.sample(self.relays, 3)]
        controller.extend_circuit("0", path)
        self.requested[node.nick] = self.requested.get(node.nick, 0) + 1


class TorNetwork:
    """The network's nodes, started together; :meth:`stop` ends every process it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.events = HsDescEvents()
        self._event_controller: Any = None
        self.keeper: CircuitKeeper | None = None

    @property
    def authorities(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "authority"]

    @property
    def onion_host(self) -> Node:
        return next(n for n in self.nodes if n.role == "onion-host")

    @property
    def client(self) -> Node:
        return next(n for n in self.nodes if n.role == "client")

    # --- building -----------------------------------------------------------------------

    def build(self, authorities: int = 3, relays: int = 3) -> None:
        for tool in (TOR, TOR_GENCERT):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed: apt-get install tor")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.empty = self.root / "empty-torrc"
        self.empty.write_text("")
        roles = ["authority"] * authorities + ["relay"] * relays + ["onion-host", "client"]
        ports = iter(free_ports(2 * (authorities + relays) + 1))
        for number, role in enumerate(roles):
            nick = f"test{number:03d}{role[:4]}"
            directory = self.root / nick
            (directory / "keys").mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)
            node = Node(nick, role, directory)
            if role in ("authority", "relay"):
                node.orport, node.dirport = next(ports), next(ports)
            if role == "client":
                node.socksport = next(ports)
                (directory / "onion-auth").mkdir(mode=0o700)
            self.nodes.append(node)
        with concurrent.futures.ThreadPoolExecutor() as pool:  # RSA keys: a few seconds each
            list(pool.map(self._make_authority_keys, self.authorities))
        lines = "\n".join(
            f"DirAuthority {n.nick} orport={n.orport} no-v2 v3ident={n.v3ident} "
            f"{HOST}:{n.dirport} {n.fingerprint}"
            for n in self.authorities
        )
        for node in self.nodes:
            values = {
                "dir": node.directory,
                "nick": node.nick,
                "host": HOST,
                "orport": node.orport,
                "dirport": node.dirport,
                "socksport": node.socksport,
                "authorities": lines,
                "owner": watchdog_pid(),
            }
            role_part = {
                "authority": AUTHORITY,
                "relay": RELAY,
                "onion-host": ONION_HOST,
                "client": CLIENT,
            }[node.role]
            node.torrc.write_text(COMMON.format(**values) + role_part.format(**values))

    def _make_authority_keys(self, node: Node) -> None:
        keys = node.directory / "keys"
        subprocess.run(
            [
                TOR_GENCERT,
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-i",
                str(keys / "authority_identity_key"),
                "-s",
                str(keys / "authority_signing_key"),
                "-c",
                str(keys / "authority_certificate"),
                "-m",
                "12",
                "-a",
                f"{HOST}:{node.dirport}",
            ],
            input=b"passphrase\n",
            capture_output=True,
            check=True,
        )
        certificate = (keys / "authority_certificate").read_text("ascii")
        found = re.search(r"^fingerprint ([0-9A-F]{40})$", certificate, re.MULTILINE)
        assert found, certificate
        node.v3ident = found.group(1)
        # The relay identity key: made by tor in the node's folder, printed, then reused.
        listed = subprocess.run(
            [
                TOR,
                "--list-fingerprint",
                "--defaults-torrc",
                str(self.empty),
                "-f",
                str(self.empty),
                "--DataDirectory",
                str(node.directory),
                "--ORPort",
                str(node.orport),
                "--DisableNetwork",
                "1",
                "--Nickname",
                node.nick,
                "--quiet",
            ],
            capture_output=True,
            check=True,
            text=True,
        )
        last = listed.stdout.strip().splitlines()[-1]
        fingerprint = "".join(last.split()[1:])
        assert re.fullmatch(r"[0-9A-F]{40}", fingerprint), listed.stdout
        node.fingerprint = fingerprint

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        for node in self.nodes:
            with (node.directory / "stderr.log").open("wb") as output:  # before its log opens
                node.process = subprocess.Popen(
                    [TOR, "--defaults-torrc", str(self.empty), "-f", str(node.torrc)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def wait_bootstrapped(self, seconds: float = BOOTSTRAP_SECONDS) -> None:
        """Until the onion host and the client have bootstrapped to 100 %."""
        deadline = time.monotonic() + seconds
        for node in (self.onion_host, self.client):
            remaining = max(1.0, deadline - time.monotonic())
            try:
                wait_for(
                    f"{node.nick} bootstrapped", lambda n=node: self._bootstrapped(n), remaining
                )
            except TimeoutError:
                raise TimeoutError(f"{node.nick} did not bootstrap:\n{self.tail_logs()}") from None
        controller = self.onion_host.controller()
        controller.add_event_listener(self.events.handle, stem.control.EventType.HS_DESC)
        self._event_controller = controller
        if self.keeper is None:
            hosts = [n for n in self.nodes if n.role in SERVICE_HOSTS]
            self.keeper = CircuitKeeper(hosts, [n for n in self.nodes if n.role == "relay"])
            self.keeper.start()

    def _bootstrapped(self, node: Node) -> bool:
        self._check_alive()
        if not node.control_socket.exists():
            return False
        try:
            controller = node.controller()
        except (stem.SocketError, stem.ControllerError, OSError):
            return False
        try:
            phase = controller.get_info("status/bootstrap-phase", "")
        finally:
            close_quietly(controller)
        return "PROGRESS=100" in phase

    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(
                    f"{node.nick} exited ({node.process.returncode}):\n{node.log()[-3000:]}"
                    f"\n{node.log('stderr.log')[-2000:]}"
                )

    def wait_uploaded(self, address: str, seconds: float = 90.0) -> None:
        """Until the onion host has uploaded ``address``'s descriptor to every HSDir it chose
        (so a client's first fetch finds it: a failed fetch is not retried for a while)."""
        try:
            wait_for(
                f"descriptor of {address} uploaded",
                lambda: self.events.all_uploaded(address),
                seconds,
            )
        except TimeoutError as error:
            asked = self.keeper.requested if self.keeper else {}
            raise TimeoutError(
                f"{error} (circuits asked for by the keeper: {asked})\n{self.tail_logs()}"
            ) from None

    def stop(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
        if self._event_controller is not None:
            close_quietly(self._event_controller)
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def tail_logs(self, lines: int = 15) -> str:
        out = []
        for node in self.nodes:
            tail = node.log().splitlines()[-lines:]
            out.append(f"--- {node.nick} ---\n" + "\n".join(tail))
        return "\n".join(out)


@contextlib.contextmanager
def running_network(root: Path) -> Iterator[TorNetwork]:
    network = TorNetwork(root)
    try:
        network.build()
        network.start()
        network.wait_bootstrapped()
        yield network
    finally:
        network.stop()


# --- a SOCKS5 client (RFC 1928), enough for tor's SocksPort --------------------------------

SOCKS_ERRORS = {
    1: "general failure",
    2: "not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
    0xF0: "onion service descriptor not found",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service needs client authorization",
    0xF5: "onion service client authorization is wrong",
    0xF6: "onion address is invalid",
    0xF7: "onion service introduction timed out",
}


class SocksError(OSError):
    """The SOCKS server refused the connection; ``code`` is its reply code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"SOCKS error {code:#04x}: {SOCKS_ERRORS.get(code, 'unknown')}")
        self.code = code


def socks_connect(proxy_port: int, host: str, port: int, timeout: float = 60.0) -> socket.socket:
    """A TCP connection to ``host:port`` through the SOCKS5 proxy on 127.0.0.1:proxy_port."""
    sock = socket.create_connection((HOST, proxy_port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
        if _recv_exact(sock, 2) != b"\x05\x00":
            raise OSError("the SOCKS proxy refused our authentication method")
        name = host.encode("ascii")
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        version, reply, _reserved, address_type = _recv_exact(sock, 4)
        if version != 5:
            raise OSError("not a SOCKS5 reply")
        if reply != 0:
            raise SocksError(reply)
        length = {1: 4, 4: 16}.get(address_type) or _recv_exact(sock, 1)[0]
        _recv_exact(sock, length + 2)
        return sock
    except BaseException:
        sock.close()
        raise


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            raise OSError("the SOCKS proxy closed the connection")
        data += piece
    return data


# --- a lone tor, network disabled --------------------------------------------------------------


@contextlib.contextmanager
def lone_tor(
    directory: Path, *, control_port: int | None = None, password: str | None = None
) -> Iterator[Node]:
    """A tor on its own with ``DisableNetwork 1``, for tests that attach to a running tor: a
    control socket with cookie authentication, or, with ``password``, password authentication
    only, and a control port if ``control_port`` is given."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    empty = directory / "empty-torrc"
    empty.write_text("")
    node = Node("lone", "onion-host", directory)
    lines = [
        f"DataDirectory {directory}",
        "DisableNetwork 1",
        "SocksPort 0",
        f"ControlSocket {node.control_socket}",
        f"CookieAuthentication {0 if password else 1}",
        f"Log notice file {directory}/notice.log",
        f"__OwningControllerProcess {watchdog_pid()}",
    ]
    if control_port is not None:
        lines.append(f"ControlPort {HOST}:{control_port}")
    if password is not None:
        hashed = subprocess.run(
            [TOR, "--quiet", "--hash-password", password],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        lines.append(f"HashedControlPassword {hashed}")
    node.torrc.write_text("\n".join(lines) + "\n")
    with (directory / "stderr.log").open("wb") as output:
        node.process = subprocess.Popen(
            [TOR, "--defaults-torrc", str(empty), "-f", str(node.torrc), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=output,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert node.process is not None
            if node.process.poll() is not None:
                raise RuntimeError(f"tor exited:\n{node.log()}{node.log('stderr.log')}")
            opened = "Opened Control listener" in node.log()
            return opened and node.control_socket.exists()

        wait_for("lone tor's control socket", ready, 30)
        yield node
    finally:
        node.process.terminate()
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
