"""End to end over a private Tor network (tests/tornet.py): real onion circuits on 127.0.0.1.

``blagh serve`` runs as it would on a server whose system tor it attaches to (``[tor] mode =
"attach"``, the onion-service host's control socket): it publishes the source interface with
the proof-of-work defence, and the pickup service with client authorisation.  A reporter's tor
client then reaches the source interface by its onion address only, over SOCKS: the landing
page, a report with a file sent without JavaScript, and a codename login.

The pickup API itself does not exist yet (issue 5): the pickup service is published in front of
a tiny HTTP server that the test starts, which is all client authorisation needs to be tested.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM, Upload
from onion_helpers import (
    Serve,
    TorBrowser,
    make_data_dir,
    run_blagh,
    set_config,
    status_line,
)
from tornet import (
    Node,
    SocksError,
    TorNetwork,
    free_port,
    running_network,
    socks_connect,
    wait_for,
)

from blagh.datadir import DataDir
from crypto.envelope import open_envelope
from crypto.keys import AnalystKey, generate_analyst_key
from onion.errors import OnionError
from onion.keys import generate_key
from onion.tor import StreamLimit, Tor, close_controller

pytestmark = [pytest.mark.tor, pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")]

PICKUP_MARKER = b"pickup-" + secrets.token_hex(8).encode()


@pytest.fixture(scope="module")
def tor_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorNetwork]:
    """3 authorities, 3 relays, an onion-service host and a client, bootstrapped (~30 s).

    One network for all the tests here, stopped after the last of them: module-scoped rather
    than session-scoped, so its eight tor processes do not run through the rest of the suite.
    """
    with running_network(tmp_path_factory.mktemp("tornet")) as network:
        yield network


class _PickupStandIn(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PICKUP_MARKER)))
        self.end_headers()
        self.wfile.write(PICKUP_MARKER)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    data_dir: DataDir
    analyst: AnalystKey
    server: Serve
    source: str
    pickup: str
    client_key_file: Path
    network: TorNetwork


@pytest.fixture(scope="module")
def site(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("onion-site")
    analyst = generate_analyst_key()
    data_dir = make_data_dir(
        work / "data",
        analyst.public(),
        mode="attach",
        control_socket=str(tor_network.onion_host.control_socket),
    )
    set_config(data_dir, "source_interface", default_language="en", workers=2)
    stand_in = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PickupStandIn)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    set_config(data_dir, "pickup", enabled=True, listen_port=stand_in.server_address[1])
    key_file = work / "station-1.auth_private"
    added = run_blagh(
        "onion", "client", "add", "station-1", "--data-dir", data_dir.path, "--out", key_file
    )
    assert added.returncode == 0, added.stderr

    server = Serve(data_dir, work)
    try:
        source, pickup = server.wait_started()
        for address in (source, pickup):
            tor_network.wait_uploaded(address)
        yield Site(data_dir, analyst, server, source, pickup, key_file, tor_network)
    finally:
        code = server.stop()
        stand_in.shutdown()
    assert code == 0, server.log()
    controller = tor_network.onion_host.controller()
    try:  # removed on a clean stop
        left = controller.get_info("onions/detached", "")
    finally:
        close_controller(controller)
    assert source not in left and pickup not in left


def test_landing_page_through_the_onion_address(site: Site) -> None:
    reply = TorBrowser(site.network.client.socksport, site.source).get("/")
    assert reply.status == 200
    assert "<form" in reply.text or "/report" in reply.text
    assert "Server" not in reply.headers
    assert "Content-Security-Policy" in reply.headers


def test_report_with_a_file_and_codename_login_without_javascript(site: Site) -> None:
    socks = site.network.client.socksport
    tag = secrets.token_hex(8)
    photo = os.urandom(300_000)
    reporter = TorBrowser(socks, site.source)
    token = reporter.token("/report")
    reply = reporter.post(
        "/report",
        [
            ("form_token", token),
            ("category", "fraud"),
            ("description", f"over tor {tag}"),
            ("keep_codename", "yes"),
        ],
        [Upload("screenshot.jpg", photo, "image/jpeg")],
    )
    assert (reply.status, reply.location()) == (303, "/report/codename")
    page = reporter.get("/report/codename")
    shown = CODENAME.search(page.text)
    token_found = FORM_TOKEN.search(page.text)
    assert page.status == 200 and shown and token_found
    codename = shown.group(1)
    reply = reporter.post(
        "/report/codename", [("form_token", token_found.group(1)), ("codename", codename)]
    )
    assert (reply.status, reply.location()) == (303, "/followup?saved=1")

    # Later, a new Tor Browser session: the codename opens the report.
    visitor = TorBrowser(socks, site.source)
    token = visitor.token("/login")
    reply = visitor.post("/login", [("form_token", token), ("codename", codename)])
    assert (reply.status, reply.location()) == (303, "/followup")
    home = visitor.get("/followup")
    assert home.status == 200
    assert len(MESSAGE_FORM.findall(home.text)) == 1
    assert "1 file attached" in home.text

    # What arrived is sealed: the analyst opens the description and the photo.
    opened = analyst_plaintexts(site.data_dir, site.analyst)
    assert any(f"over tor {tag}".encode() in p for p in opened)
    assert any(photo in p for p in opened)


def analyst_plaintexts(data_dir: DataDir, analyst: AnalystKey) -> list[bytes]:
    """Every envelope of the blob store, opened with the analyst's key."""
    blobs = data_dir.path / "store" / "blobs"
    return [
        open_envelope(path.read_bytes(), [analyst.encryption_secret])
        for path in blobs.iterdir()
        if path.is_file()
    ]


def test_pickup_service_needs_the_client_key(site: Site) -> None:
    socks = site.network.client.socksport
    with pytest.raises(SocksError) as caught:
        socks_connect(socks, f"{site.pickup}.onion", 80)
    assert caught.value.code == 0xF4  # "onion service needs client authorization"

    # The transfer station's tor gets the line `blagh onion client add` wrote.
    line = site.client_key_file.read_text().strip()
    address, kind, algorithm, _key = line.split(":")
    assert (address, kind, algorithm) == (site.pickup, "descriptor", "x25519")
    client = site.network.client
    auth_file = client.directory / "onion-auth" / "station-1.auth_private"
    auth_file.write_text(line + "\n")
    auth_file.chmod(0o600)
    client.reload()  # tor reads its ClientOnionAuthDir again
    sock = wait_for("the pickup service with the key", lambda: try_connect(client, site.pickup), 90)
    with sock:
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {site.pickup}.onion\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(PICKUP_MARKER)


def try_connect(client: Node, address: str) -> socket.socket | None:
    """A stream to ``address`` through ``client``, or None where a reporter's next try could
    succeed: 0xF4 while tor may still be decrypting the descriptor with a new client key; 0xF0
    when the directories it asked did not hold the descriptor (the test network's consensus,
    and with it which directories hold a descriptor, changes every 10 s), after which the
    client forgets which directories it asked, or it would not ask them again for 15 minutes."""
    try:
        return socks_connect(client.socksport, f"{address}.onion", 80)
    except SocksError as error:
        if error.code == 0xF0:
            client.new_identity()
        elif error.code != 0xF4:
            raise
        return None


def test_proof_of_work_is_on_and_reported(site: Site) -> None:
    assert status_line(site.data_dir, "proof-of-work") == "on (queue rate 250/s, burst 2500)"
    assert status_line(site.data_dir, "source onion") == (
        f"http://{site.source}.onion/ -> 127.0.0.1:{site.server.port}, published"
    )
    assert status_line(site.data_dir, "pickup onion").endswith(
        ", published, 1 authorised client(s)"
    )
    assert status_line(site.data_dir, "tor state") == "bootstrapped 100% (Done)"
    assert "proof-of-work defence on (queue rate 250/s, burst 2500)" in site.server.log()
    # tor's own word: the onion-service host set up the defence for a descriptor.
    host_log = site.network.onion_host.log("info.log")
    assert re.search(r"initialize_pow_defenses\(\): Generating both PoW seeds", host_log)
    assert "update_all_descriptors_pow_params()" in host_log


def test_a_circuit_asking_for_more_streams_than_allowed_is_closed(
    tor_network: TorNetwork,
) -> None:
    """MaxStreams with MaxStreamsCloseCircuit, as blagh adds the source interface, proven by
    its effect: with a cap of 2, a client's third stream over its circuit makes the service's
    tor tear the circuit down, and the two streams it held go with it."""
    held: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                held.append(listener.accept()[0])  # kept open: only tor may end them

    threading.Thread(target=accept, daemon=True).start()
    target = f"127.0.0.1:{listener.getsockname()[1]}"
    tor = Tor.attach(socket=tor_network.onion_host.control_socket)
    key = generate_key()
    opened: list[socket.socket] = []
    try:
        tor.add_onion(
            key.add_onion_argument(),
            [(80, target)],
            expected=key.address,
            streams=StreamLimit(per_circuit=2, close_circuit=True),
        )
        tor_network.wait_uploaded(key.address)
        socks = tor_network.client.socksport
        client = tor_network.client
        opened.append(wait_for("a first stream", lambda: try_connect(client, key.address), 90))
        opened.append(socks_connect(socks, f"{key.address}.onion", 80))
        wait_for("both streams at the service", lambda: len(held) == 2 or None, 30)

        with contextlib.suppress(OSError):  # refused, or accepted then closed with the rest
            opened.append(socks_connect(socks, f"{key.address}.onion", 80))
        for sock in opened[:2]:
            sock.settimeout(60)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b"", "tor closed the stream with its circuit"
        assert len(held) == 2, "the third stream never reached the service"
        assert re.search(
            r"Maximum streams per circuit limit reached on rendezvous circuit \d+ for service "
            r".*Circuit has 2 out of 2 streams\. Closing circuit",
            tor_network.onion_host.log("info.log"),
        )
    finally:
        for sock in opened + held:
            sock.close()
        listener.close()
        with contextlib.suppress(OnionError):
            tor.remove_onion(key.address)
        tor.close()
