"""Several source-interface servers behind one onion address (Onionbalance, onion/balance.py).

The files ``blagh onion balance`` writes are checked against the real consumers: Debian's
Onionbalance reads the key and the config (its own loader, in the system Python it runs on), and
tor validates a backend's torrc lines with the ob_config file in its service folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import socket
import stat
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stem.control
from click.testing import CliRunner
from onion_helpers import Serve, TorBrowser, make_data_dir, set_config
from postgres_helpers import Cluster
from test_store_flows import pickup, use_postgres
from tornet import Node, SocksError, TorNetwork, close_quietly, wait_for

from blagh.cli import cli
from blagh.datadir import DataDir
from crypto.keys import generate_analyst_key
from onion.balance import (
    CONFIG,
    FRONTEND_KEY,
    MAX_BACKENDS,
    OB_CONFIG,
    BalanceError,
    backend_torrc,
    write_balance,
)
from onion.errors import OnionKeyError
from onion.keys import generate_key

ONIONBALANCE_PYTHON = "/usr/bin/python3"  # the interpreter Debian's onionbalance runs on

# Onionbalance's own loading and checking of config.yaml (each instance address validated) and
# of the service's key, without a tor: the rest of its service set-up needs a controller.
_LOAD = """
import sys
from onionbalance.hs_v3.onionbalance import my_onionbalance
from onionbalance.hs_v3.service import OnionbalanceService
my_onionbalance.config_path = sys.argv[1]
data = my_onionbalance.load_config_file()
service = OnionbalanceService.__new__(OnionbalanceService)
service.is_priv_key_in_tor_format = False
_key, address = service._load_service_keys(data["services"][0], sys.argv[1])
assert not service.is_priv_key_in_tor_format  # read as its own PEM format
print(address)
for instance in data["services"][0]["instances"]:
    print(instance["address"])
"""


def onionbalance_reads(config: Path) -> list[str]:
    """The frontend address and the backends' addresses as Onionbalance itself reads them."""
    if shutil.which("onionbalance") is None:
        pytest.fail("onionbalance is not installed: apt-get install onionbalance (make dev)")
    result = subprocess.run(
        [ONIONBALANCE_PYTHON, "-c", _LOAD, str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line.removesuffix(".onion") for line in result.stdout.split()]


def backends(count: int) -> list[str]:
    return [generate_key().address for _ in range(count)]


def test_onionbalance_reads_the_key_and_backends(tmp_path: Path) -> None:
    addresses = backends(3)
    made = write_balance(tmp_path / "ob", [addresses[0] + ".onion", *addresses[1:]])
    assert made.created and made.config_file == tmp_path / "ob" / CONFIG
    assert onionbalance_reads(tmp_path / "ob" / CONFIG) == [made.address, *addresses]
    for name in (FRONTEND_KEY, CONFIG, OB_CONFIG):
        assert stat.S_IMODE((tmp_path / "ob" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ob").stat().st_mode) == 0o700
    ob_line = f"MasterOnionAddress {made.address}.onion\n"
    assert (tmp_path / "ob" / OB_CONFIG).read_text("ascii") == ob_line


def test_the_frontend_key_is_kept_and_the_config_follows_the_backends(tmp_path: Path) -> None:
    first = write_balance(tmp_path, [])
    assert first.created and first.config_file is None and not (tmp_path / CONFIG).exists()
    key = (tmp_path / FRONTEND_KEY).read_bytes()
    two = backends(2)
    again = write_balance(tmp_path, two)
    assert not again.created and again.address == first.address
    assert (tmp_path / FRONTEND_KEY).read_bytes() == key
    assert onionbalance_reads(tmp_path / CONFIG) == [first.address, *two]
    one = write_balance(tmp_path, two[1:])
    assert onionbalance_reads(tmp_path / CONFIG) == [first.address, two[1]]
    assert one.address == first.address
    write_balance(tmp_path, [])
    assert not (tmp_path / CONFIG).exists()  # no stale list of backends left behind


def test_unusable_backends_are_refused(tmp_path: Path) -> None:
    good = backends(MAX_BACKENDS + 1)
    damaged = good[0][:-1] + ("a" if good[0][-1] != "a" else "b")  # checksum no longer matches
    for wrong, words in [
        (["xyz.onion"], "not a v3 onion address"),
        ([damaged], "not a v3 onion address"),
        ([good[0], good[0] + ".onion"], "given twice"),
        (good, f"at most {MAX_BACKENDS}"),
    ]:
        with pytest.raises(BalanceError, match=words):
            write_balance(tmp_path / "ob", wrong)
    assert not (tmp_path / "ob").exists()  # refused before anything was written
    made = write_balance(tmp_path / "ob", good[:MAX_BACKENDS])
    with pytest.raises(BalanceError, match="frontend's own address"):
        write_balance(tmp_path / "ob", [made.address])
    assert onionbalance_reads(tmp_path / "ob" / CONFIG)[1:] == good[:MAX_BACKENDS]


def test_a_damaged_or_readable_frontend_key_is_refused(tmp_path: Path) -> None:
    write_balance(tmp_path, [])
    key = tmp_path / FRONTEND_KEY
    os.chmod(key, 0o644)
    with pytest.raises(OnionKeyError, match="other users"):
        write_balance(tmp_path, [])
    os.chmod(key, 0o600)
    key.write_text(key.read_text("ascii").replace("PRIVATE KEY", "PUBLIC KEY"), "ascii")
    with pytest.raises(OnionKeyError, match="damaged"):
        write_balance(tmp_path, [])


@pytest.mark.tor
def test_a_backends_tor_accepts_its_lines_and_ob_config(tmp_path: Path) -> None:
    """tor itself (``--verify-config``, no network) reads ob_config and registers the frontend
    address as the instance's master; a wrong file is refused at the same step."""
    made = write_balance(tmp_path / "ob", backends(1))
    service = tmp_path / "hs"
    service.mkdir(mode=0o700)
    shutil.copy(made.ob_config_file, service / OB_CONFIG)
    torrc = tmp_path / "torrc"
    torrc.write_text(
        backend_torrc(service, 8080)
        + f"DataDirectory {tmp_path / 'data'}\nSocksPort 0\nDisableNetwork 1\n"
    )
    command = ["tor", "--verify-config", "--defaults-torrc", os.devnull, "-f", str(torrc)]
    checked = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert checked.returncode == 0, checked.stdout
    assert f"MasterOnionAddress {made.address}.onion registered" in checked.stdout
    (service / OB_CONFIG).write_text("MasterOnionAddress nothing.onion\n")
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert refused.returncode != 0 and "is invalid" in refused.stdout


def test_the_command_prints_the_address_and_the_backends_lines(tmp_path: Path) -> None:
    two = backends(2)
    argv = ["onion", "balance", "--out", str(tmp_path / "ob")]
    result = CliRunner().invoke(cli, [*argv, "--backend", two[0], "--backend", two[1] + ".onion"])
    assert result.exit_code == 0, result.output
    address = onionbalance_reads(tmp_path / "ob" / CONFIG)[0]
    assert f"Made the frontend key {tmp_path / 'ob' / FRONTEND_KEY}" in result.output
    assert f"Frontend address: http://{address}.onion/" in result.output
    assert "HiddenServiceOnionbalanceInstance 1" in result.output
    again = CliRunner().invoke(cli, argv)
    assert again.exit_code == 0 and "Kept the frontend key" in again.output
    assert f"http://{address}.onion/" in again.output and "No backend given" in again.output
    refused = CliRunner().invoke(cli, [*argv, "--backend", "nope"])
    assert refused.exit_code != 0 and "not a v3 onion address" in refused.output


# --- failover through the frontend address, in the private Tor network ----------------------


def onionbalance_status(socket_path: Path) -> dict[str, Any]:
    """What Onionbalance's status socket says (its instances and publication attempts)."""
    if not socket_path.exists():
        return {}
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        try:
            client.connect(str(socket_path))
        except OSError:
            return {}
        data = b""
        while piece := client.recv(65536):
            data += piece
    return json.loads(data) if data else {}


def instances_known(socket_path: Path) -> set[str]:
    """The backends whose descriptor Onionbalance has, with their introduction points."""
    status = onionbalance_status(socket_path)
    return {
        instance["onionAddress"].removesuffix(".onion")
        for service in status.get("services", [])
        for instance in service["instances"]
        if instance.get("introPointsNum")
    }


def add_backend_tor(network: TorNetwork, number: int, ob_config: Path, port: int) -> Node:
    """One more onion-service host in the (built, not started) network: a backend's own tor,
    its service on disk as an Onionbalance instance in front of ``port``."""
    host = network.onion_host
    nick = f"test{len(network.nodes):03d}back"
    node = Node(nick, "backend", network.root / nick)
    (node.directory / "keys").mkdir(mode=0o700, parents=True)
    os.chmod(node.directory, 0o700)
    service = node.directory / "service"
    service.mkdir(mode=0o700)
    shutil.copy(ob_config, service / OB_CONFIG)
    torrc = host.torrc.read_text().replace(str(host.directory), str(node.directory))
    torrc = torrc.replace(host.nick, nick)
    node.torrc.write_text(torrc + backend_torrc(service, port))
    network.nodes.append(node)
    return node


def backend_address(node: Node) -> str:
    def written() -> str | None:
        try:
            return (node.directory / "service" / "hostname").read_text().strip()
        except FileNotFoundError:
            return None

    return wait_for(f"{node.nick}'s onion address", written, 60).removesuffix(".onion")


def fetched(client: Node, address: str) -> bool:
    """Ask ``client`` to fetch the descriptor of ``address`` from the HSDirs (``HSFETCH``); whether
    it arrived.  The HS_DESC events are read raw: stem 1.8 predates some v3 fields."""
    outcome: queue.Queue[str] = queue.Queue()

    def handle(event: Any) -> None:
        parts = str(event).split()
        ours = len(parts) > 2 and parts[0] == "HS_DESC" and parts[2] == address
        if ours and parts[1] in ("RECEIVED", "FAILED"):
            outcome.put(parts[1])

    controller = client.controller()
    try:
        controller.add_event_listener(handle, stem.control.EventType.HS_DESC)
        controller.msg(f"HSFETCH {address}")
        try:
            return outcome.get(timeout=30) == "RECEIVED"
        except queue.Empty:
            return False
    finally:
        close_quietly(controller)


def built_circuits(node: Node, purpose: str) -> list[Any]:
    """``node``'s tor's built circuits of this purpose (stem's circuit events)."""
    controller = node.controller()
    try:
        circuits = controller.get_circuits()
    finally:
        close_quietly(controller)
    return [c for c in circuits if c.purpose == purpose and c.status == "BUILT"]


def open_circuits(node: Node, purpose: str) -> int:
    """How many built circuits of this purpose ``node``'s tor has."""
    return len(built_circuits(node, purpose))


def rendezvous_circuits(node: Node, state: str | None = None) -> dict[str, str]:
    """``node``'s tor's built client rendezvous circuits (in that rendezvous state if given): id
    -> a line saying where each is."""
    return {
        c.id: f"{c.id} {c.hs_state} {c.rend_query} via {len(c.path)} hops"
        for c in built_circuits(node, "HS_CLIENT_REND")
        if state in (None, c.hs_state)
    }


def close_circuits(node: Node, ids: set[str]) -> None:
    """Close these circuits of ``node``'s tor, as Tor Browser's "New Tor circuit for this
    site" does (one already gone is skipped)."""
    controller = node.controller()
    try:
        for circuit_id in ids:
            with contextlib.suppress(stem.InvalidRequest, stem.InvalidArguments):
                controller.close_circuit(circuit_id)
    finally:
        close_quietly(controller)


def serving_backend(backends: list[Node]) -> int:
    """Which backend has a rendezvous circuit to a reporter: the one the reporter's tor was
    introduced to (blagh keeps no access log to tell)."""
    serving = [n for n, node in enumerate(backends) if open_circuits(node, "HS_SERVICE_REND")]
    assert len(serving) == 1, serving
    return serving[0]


def report_over_tor(socks: int, frontend: str, description: str) -> None:
    """Send a report without JavaScript as a new Tor Browser session would."""
    reporter = TorBrowser(socks, frontend)
    token = reporter.token("/report")
    fields = [("form_token", token), ("category", "fraud"), ("description", description)]
    reply = reporter.post("/report", fields)
    assert reply.status == 303, reply.text


DESCRIPTOR_NOT_FOUND = 0xF0
TRY_AGAIN = {
    0x06: "timed out",
    DESCRIPTOR_NOT_FOUND: "descriptor not found",
    0xF2: "introduction failed",
    0xF3: "rendezvous failed",
    0xF7: "introduction timed out",
}
"""SOCKS errors tor gives when it could not reach an onion service this time: Tor Browser
shows its "unable to connect" page for them, and the reporter tries again.  Each comes when
the connection is opened, before any byte of a request is sent, so trying again cannot send
a report twice."""
ATTEMPTS = 4


def report_trying_again(
    socks: int, frontend: str, description: str, before_again: Callable[[int], object]
) -> int:
    """Send a report as a reporter would when Tor Browser cannot reach the site this time: try
    again, up to :data:`ATTEMPTS` times, after ``before_again(error code)``.  How many it
    took."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            report_over_tor(socks, frontend, description)
            return attempt
        except SocksError as error:
            if error.code not in TRY_AGAIN or attempt == ATTEMPTS:
                raise
            before_again(error.code)
    raise AssertionError("unreachable")


@pytest.mark.tor
@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
def test_a_backend_goes_down_and_reports_still_arrive_through_the_frontend(
    tmp_path: Path, postgres: Cluster
) -> None:
    """Two `blagh serve` backends on one PostgreSQL, each behind its own tor as an Onionbalance
    instance; Onionbalance publishes the frontend; a reporter's tor reaches the frontend address
    and sends a report without JavaScript.  The backend that took it is killed (its tor and its
    server, as when the machine goes down); the next report still arrives through the same
    address, and the analyst's pickup holds both."""
    analyst = generate_analyst_key()
    first = make_data_dir(tmp_path / "data1", analyst.public(), mode="off")
    set_config(first, "source_interface", default_language="en", workers=1)
    use_postgres(first, postgres.new_database("ob" + secrets.token_hex(6)))
    # The second machine: a copy of the first's data folder (same keys, same store).
    second = DataDir(Path(shutil.copytree(first.path, tmp_path / "data2", symlinks=True)))
    servers = []
    for number, data_dir in enumerate((first, second), 1):
        work = tmp_path / f"serve{number}"
        work.mkdir()
        servers.append(Serve(data_dir, work, "--tor", "off"))
    frontend_dir = tmp_path / "frontend"
    made = write_balance(frontend_dir, [])
    network = TorNetwork(tmp_path / "tornet")
    balancer: subprocess.Popen[bytes] | None = None
    try:
        for server in servers:
            server.wait_started()
        network.build()
        # Onionbalance's testnet mode assumes chutney's 20-second votes (its time periods and
        # shared-random runs are counted from them): vote at that pace.
        for node in network.authorities:
            node.torrc.write_text(
                node.torrc.read_text()
                .replace("V3AuthVotingInterval 10", "V3AuthVotingInterval 20")
                .replace(
                    "TestingV3AuthInitialVotingInterval 5", "TestingV3AuthInitialVotingInterval 20"
                )
            )
        backends_tor = [
            add_backend_tor(network, number, made.ob_config_file, server.port)
            for number, server in enumerate(servers, 1)
        ]
        network.start()
        network.wait_bootstrapped()
        addresses = [backend_address(node) for node in backends_tor]
        made = write_balance(frontend_dir, addresses)
        assert made.config_file is not None
        status_socket = tmp_path / "ob-status.sock"
        log = tmp_path / "onionbalance.log"
        with log.open("wb") as output:
            balancer = subprocess.Popen(
                [
                    "onionbalance",
                    "--is-testnet",
                    "-v",
                    "info",
                    "-s",
                    str(network.onion_host.control_socket),
                    "-c",
                    str(made.config_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ONIONBALANCE_STATUS_SOCKET_LOCATION": str(status_socket)},
            )

        def both_instances_known() -> bool:
            assert balancer is not None
            if balancer.poll() is not None:
                pytest.fail("onionbalance exited:\n" + log.read_text("utf-8", "replace"))
            return instances_known(status_socket) == set(addresses)

        try:
            wait_for("onionbalance has both backends", both_instances_known, 120, step=1)
            # Published once the reporter's tor can fetch the frontend descriptor (it keeps it:
            # the reports below use that copy).  Onionbalance first needs both backends'
            # descriptors from the test network's HSDirs, which has once taken over 120 s
            # (both instances "offline" all along): a condition, so the wait costs only then.
            wait_for("frontend descriptor", lambda: fetched(network.client, made.address), 300)
        except TimeoutError as error:
            pytest.fail(
                f"{error}:\n" + log.read_text("utf-8", "replace")[-4000:] + network.tail_logs()
            )
        socks = network.client.socksport
        tag = secrets.token_hex(6)
        report_over_tor(socks, made.address, f"before {tag}")
        took = serving_backend(backends_tor)
        joined = rendezvous_circuits(network.client, "HSCR_JOINED")
        down = backends_tor[took]
        assert down.process is not None
        down.process.kill()
        down.process.wait()
        servers[took].proc.kill()
        servers[took].proc.wait()
        # Its relays close the reporter's rendezvous circuit to it; a stream sent before that
        # news arrives would fail (a reporter would try again): send the next one after.
        # Only the circuit that carried the report counts: one still waiting from an earlier
        # attempt (its introduction lost) was never joined to the killed backend.
        try:
            wait_for(
                "the reporter's tor lost its circuit to the killed backend",
                lambda: not joined.keys() & rendezvous_circuits(network.client).keys(),
                60,
            )
        except TimeoutError as error:
            # Seen once in a CI run (which circuits were open, it did not say).  A reporter whose
            # page hangs on that circuit asks Tor Browser for a new circuit for the site; what
            # is tested here is what comes next: the frontend leads to the live backend.
            lingering = joined.keys() & rendezvous_circuits(network.client).keys()
            warnings.warn(
                f"{error}: still open {sorted(joined[c] for c in lingering)}; closed as a "
                "reporter's Tor Browser would",
                stacklevel=1,
            )
            close_circuits(network.client, lingering)

        # The next report, through the same address.  If the reporter's tor picks one of the
        # dead backend's introduction points in the second or two before its relays hear of
        # the crash, its introduction is lost: tor gives up on that rendezvous after about 90 s
        # and introduces itself to another backend, within the same request (measured: 92 s).
        # Or it reports the introduction as failed, or the connection as timed out (each seen
        # once in a full run): Tor Browser then shows its error page, and the reporter tries
        # again.
        # Descriptor not found (seen once in CI): the reporter's tor dropped the descriptor
        # after its introduction points failed, and the HSDirs it asked did not have it.  A
        # reporter tries again later; here, once the HSDirs answer for it again.
        def before_again(code: int) -> None:
            if code == DESCRIPTOR_NOT_FOUND:
                wait_for(
                    "the frontend's descriptor, again",
                    lambda: fetched(network.client, made.address),
                    240,
                    step=1,
                )

        report_trying_again(socks, made.address, f"after {tag}", before_again)
        assert serving_backend(backends_tor[1 - took : 2 - took]) == 0
    finally:
        if balancer is not None:
            balancer.terminate()
            try:
                balancer.wait(timeout=10)
            except subprocess.TimeoutExpired:  # its SIGTERM handler can hang in stem's close()
                balancer.kill()
                balancer.wait()
        network.stop()
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
    opened = pickup((first, second)[1 - took], analyst, tmp_path / "pickup.bundle")
    texts = b"".join(plain for items in opened.values() for plain in items)
    assert f"before {tag}".encode() in texts and f"after {tag}".encode() in texts
