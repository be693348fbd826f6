"""onion/: keys, client authorisation, and real tor daemons with their network disabled.

The tests marked ``tor`` run tor itself, always with ``DisableNetwork 1`` (``--tor offline``, or
a lone tor from tests/tornet.py): tor contacts nobody, yet creates onion services and gives
their addresses, so address stability, key files, client keys, control-port authentication
and what ends up in the logs are all checked against the real thing.  The end-to-end tests over
a private Tor network are in test_onion_network.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from onion_helpers import Serve, make_data_dir, run_blagh, set_config, status_line
from tornet import free_port, lone_tor

from blagh.cli import cli
from blagh.config import TorConfig, read_config_file
from blagh.datadir import DataDir
from crypto.envelope import public_key
from crypto.keys import AnalystPublicKey
from onion.clients import add_client, new_client, read_clients, remove_client
from onion.errors import (
    ClientError,
    ControlError,
    OnionError,
    OnionKeyError,
    TorNotInstalled,
    TorStartError,
    redact,
)
from onion.keys import (
    generate_key,
    is_onion_address,
    load_or_create_key,
    read_key_file,
    write_key_file,
)
from onion.service import OnionServices, describe, read_status
from onion.tor import Tor


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keys ---------------------------------------------------------------------------------------


def test_generated_keys_have_valid_distinct_addresses(tmp_path: Path) -> None:
    keys = [generate_key() for _ in range(5)]
    assert len({k.address for k in keys}) == 5
    for key in keys:
        assert is_onion_address(key.hostname) and is_onion_address(key.address)
        assert key.add_onion_argument().startswith("ED25519-V3:")
        assert len(base64.b64decode(key.add_onion_argument()[11:])) == 64
        assert key.add_onion_argument() not in repr(key)
    broken = keys[0].address[:-2] + ("ab" if keys[0].address[-2:] != "ab" else "cd")
    assert not is_onion_address(broken)


def test_key_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "onion" / "source.key"
    key, made = load_or_create_key(path)
    assert made
    assert mode_of(path) == 0o600 and mode_of(path.parent) == 0o700
    assert read_key_file(path) == key
    assert load_or_create_key(path) == (key, False)
    assert f"address: {key.hostname}" in path.read_text()
    with pytest.raises(FileExistsError):
        write_key_file(path, generate_key())  # never overwritten
    assert [p.name for p in path.parent.iterdir()] == ["source.key"]  # no temporary file left


def test_key_file_problems_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "source.key"
    key, _ = load_or_create_key(path)

    path.chmod(0o644)
    with pytest.raises(OnionKeyError, match=r"can be read or changed by other users \(mode 0644\)"):
        read_key_file(path)
    path.chmod(0o600)

    text = path.read_text()
    path.write_text(text.replace(key.address, generate_key().address))
    assert read_key_file(path).address != key.address  # caught by tor: see the tor tests

    for damaged in ("", "address: x.onion\nkey: ED25519-V3:AAAA\n", text.replace("key:", "kee:")):
        path.write_text(damaged)
        with pytest.raises(OnionKeyError, match="is damaged: it is not an onion service key"):
            read_key_file(path)
    secret = key.add_onion_argument()
    path.write_text(text.replace(secret, secret[:-8] + "!!!!!!=="))
    with pytest.raises(OnionKeyError) as caught:
        read_key_file(path)
    assert secret[11:30] not in str(caught.value)

    path.unlink()
    path.mkdir(mode=0o700)
    with pytest.raises(OnionKeyError, match=r"cannot read|not a regular file"):
        read_key_file(path)


# --- client authorisation ---------------------------------------------------------------------


def test_client_keys_pair_up_and_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "pickup-clients"
    assert read_clients(path) == []
    address = generate_key().address
    made = add_client(path, "station-1")
    second = add_client(path, "station-2")
    assert mode_of(path) == 0o600
    assert read_clients(path) == [made.client, second.client]

    line = made.auth_private_line(address + ".onion")
    host, kind, algorithm, private = line.split(":")
    assert (host, kind, algorithm) == (address, "descriptor", "x25519")
    raw_private = base64.b32decode(private + "====")
    raw_public = base64.b32decode(made.client.public_key + "====")
    assert len(raw_private) == 32 and public_key(raw_private) == raw_public
    assert private not in path.read_text()  # the server keeps only public halves

    with pytest.raises(ClientError, match="already exists"):
        add_client(path, "station-1")
    for bad in ("", "-x", "a b", "x" * 41, "é"):
        with pytest.raises(ClientError, match="not a usable client name"):
            new_client(bad)
    assert remove_client(path, "station-1") == made.client
    assert read_clients(path) == [second.client]
    with pytest.raises(ClientError, match=r"no client named 'station-1' \(clients: station-2\)"):
        remove_client(path, "station-1")

    path.write_text("station-3 descriptor:x25519:tooshort\n")
    path.chmod(0o600)
    with pytest.raises(OnionKeyError, match="line 1: not a client line"):
        read_clients(path)


# --- errors and redaction ---------------------------------------------------------------------


def test_redact_hides_keys_cookies_and_passwords_but_not_addresses() -> None:
    key = generate_key()
    blob = key.add_onion_argument()
    cookie = os.urandom(32).hex()
    client = new_client("x")
    text = (
        f"ADD_ONION {blob} Flags=Detach Port=80,127.0.0.1:8080 "
        f"ClientAuthV3={client.client.public_key}\n"
        f"250-ServiceID={key.address}\n250-PrivateKey={blob}\n"
        f'AUTHENTICATE {cookie}\nAUTHENTICATE "hunter2"\n'
        f"{client.auth_private_line(key.address)}\nsee http://{key.hostname}/ now"
    )
    clean = redact(text)
    for secret in (blob[11:], cookie, "hunter2", client.private_key):
        assert secret not in clean
    assert f"http://{key.hostname}/ now" in clean
    assert "Port=80,127.0.0.1:8080" in clean


def test_tor_not_installed_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(TorNotInstalled) as caught:
        Tor.launch(tmp_path / "tor", network=False, tor_command="no-such-tor-here")
    assert "sudo apt-get install tor" in str(caught.value)
    assert 'mode = "off"' in str(caught.value)


def test_tor_with_network_is_refused_in_tests(tmp_path: Path) -> None:
    """Belt and braces: a test can never start a tor that would reach the public network."""
    with pytest.raises(TorStartError, match="never reach the public Tor network"):
        Tor.launch(tmp_path / "tor", network=True)


def test_port_in_use_is_one_clear_line(
    tmp_path: Path, analyst_public_key: AnalystPublicKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="off")
    with socket_listening() as port:
        result = CliRunner().invoke(
            cli, ["serve", "--data-dir", str(data_dir.path), "--port", str(port)]
        )
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"blagh: error: port {port} on 127.0.0.1 is already in use, maybe by another blagh "
        "serve; stop the program using it, or choose another port (--port, or "
        "[source_interface] listen_port)"
    ]


class socket_listening:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- a real tor, network disabled -------------------------------------------------------------


def tor_processes_of(pid: int) -> list[psutil.Process]:
    """tor processes whose owning controller is ``pid`` (as stem's take_ownership sets it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "tor" and str(pid) in cmdline:
            found.append(process)
    return found


@pytest.mark.tor
def test_address_stable_across_restarts(
    tmp_path: Path, analyst_public_key: AnalystPublicKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="offline")
    config = read_config_file(data_dir.config_file).tor
    addresses = []
    for _ in range(2):
        services = OnionServices(config, data_dir, mode="offline", source_target="127.0.0.1:8080")
        status = services.start()
        try:
            assert services.tor is not None
            (source,) = status.services
            assert services.tor.detached_onions() == [source.address]
            assert not status.network and status.pow.enabled
            assert read_status(data_dir) == status
            addresses.append(source.address)
            tor_pid = services.tor.process_id
        finally:
            services.stop()
        assert tor_pid is not None and not psutil.pid_exists(tor_pid)
        assert read_status(data_dir) is None
    assert addresses[0] == addresses[1] == read_key_file(data_dir.source_onion_key_file).address
    assert mode_of(data_dir.source_onion_key_file) == 0o600
    for folder in (data_dir.onion_dir, data_dir.tor_dir):
        assert mode_of(folder) == 0o700


@pytest.mark.tor
def test_a_key_file_that_does_not_match_its_address_is_refused(
    tmp_path: Path, analyst_public_key: AnalystPublicKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="offline")
    key, _ = load_or_create_key(data_dir.source_onion_key_file)
    other = generate_key().address
    text = data_dir.source_onion_key_file.read_text()
    data_dir.source_onion_key_file.write_text(text.replace(key.address, other))
    services = OnionServices(
        TorConfig(mode="offline"), data_dir, mode="offline", source_target="127.0.0.1:8080"
    )
    with pytest.raises(OnionError) as caught:
        services.start()
    assert f"not {other}.onion as its key file says: the key file is damaged" in str(caught.value)
    assert key.add_onion_argument()[11:] not in str(caught.value)
    assert services.tor is None and read_status(data_dir) is None


@pytest.mark.tor
def test_stale_detached_service_is_replaced(
    tmp_path: Path, analyst_public_key: AnalystPublicKey
) -> None:
    """Attached to a tor that outlives us, a crash leaves the detached service behind: the next
    start replaces it (same key, same address) instead of failing on the collision."""
    with lone_tor(tmp_path / "system-tor") as system_tor:
        data_dir = make_data_dir(
            tmp_path / "data",
            analyst_public_key,
            mode="attach",
            control_socket=str(system_tor.control_socket),
        )
        config = read_config_file(data_dir.config_file).tor
        crashed = OnionServices(config, data_dir, mode="attach", source_target="127.0.0.1:8080")
        address = crashed.start().services[0].address
        assert crashed.tor is not None
        crashed.tor.close()  # no DEL_ONION: as if the process had been killed
        data_dir.onion_status_file.unlink()

        again = OnionServices(config, data_dir, mode="attach", source_target="127.0.0.1:8080")
        try:
            assert again.start().services[0].address == address
            assert again.tor is not None and again.tor.detached_onions() == [address]
        finally:
            again.stop()
        probe = Tor.attach(socket=system_tor.control_socket)
        try:
            assert probe.detached_onions() == []  # removed on a clean stop
        finally:
            probe.close()


@pytest.mark.tor
def test_wrong_control_password_is_a_clear_error(
    tmp_path: Path, analyst_public_key: AnalystPublicKey
) -> None:
    port = free_port()
    password = "correct horse battery staple"  # noqa: S105
    with lone_tor(tmp_path / "system-tor", control_port=port, password=password):
        with pytest.raises(ControlError) as caught:
            Tor.attach(port=port, password="wrong password")  # noqa: S106
        assert str(caught.value) == (
            f"tor's control port 127.0.0.1:{port} refused the control password: check that "
            "[tor] control_password_file holds the password whose hash is tor's "
            "HashedControlPassword"
        )
        with pytest.raises(ControlError, match="asks for a password: put it in a file"):
            Tor.attach(port=port)
        tor = Tor.attach(port=port, password=password)
        try:
            assert tor.version
        finally:
            tor.close()

        # Through the command: one line, nothing else, and never the password.
        data_dir = make_data_dir(
            tmp_path / "data", analyst_public_key, mode="attach", control_port=port
        )
        password_file = tmp_path / "control-password"
        password_file.write_text("not it\n")
        password_file.chmod(0o600)
        set_config(data_dir, "tor", control_password_file=str(password_file))
        result = run_blagh("serve", "--data-dir", data_dir.path, "--port", str(free_port()))
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"blagh: error: tor's control port 127.0.0.1:{port} refused the control password: "
            "check that [tor] control_password_file holds the password whose hash is tor's "
            "HashedControlPassword\n"
        )
        password_file.chmod(0o644)
        result = run_blagh("serve", "--data-dir", data_dir.path, "--port", str(free_port()))
        assert "can be read or changed by other users (mode 0644)" in result.stderr

    closed = free_port()
    with pytest.raises(ControlError) as caught:
        Tor.attach(port=closed)
    assert str(caught.value) == (
        f"cannot connect to tor's control port 127.0.0.1:{closed} (connection refused): is tor "
        f"running, with ControlPort {closed} in its torrc?"
    )
    with pytest.raises(
        ControlError, match=r"\(no such socket\): is tor running, with ControlSocket"
    ):
        Tor.attach(socket=tmp_path / "nowhere" / "control")


@pytest.fixture
def serving(tmp_path: Path, analyst_public_key: AnalystPublicKey) -> Iterator[tuple[DataDir, Path]]:
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="offline")
    set_config(data_dir, "pickup", enabled=True, listen_port=free_port())
    yield data_dir, tmp_path


@pytest.mark.tor
def test_serve_offline_status_and_clean_stop(
    serving: tuple[DataDir, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """`blagh serve` with tor offline: the address is printed, `blagh status` reports the
    service and the proof-of-work defence, and Ctrl-C stops gunicorn and tor."""
    data_dir, work = serving
    set_config(data_dir, "pickup", enabled=False)
    server = Serve(data_dir, work)
    try:
        (address,) = server.wait_started()
        assert address == read_key_file(data_dir.source_onion_key_file).address
        assert server.output().splitlines() == [
            f"Onion service: http://{address}.onion/  (tor's network is disabled: created, "
            "not published)",
            f"Source interface: http://127.0.0.1:{server.port}/  (Ctrl-C stops it)",
        ]
        status = run_blagh("status", "--data-dir", data_dir.path)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].startswith(f"blagh serve:   running (process {server.proc.pid}) since ")
        assert lines[1] == f"source:        http://127.0.0.1:{server.port}/, answering"
        assert lines[2] == "tor mode:      offline"
        assert lines[3].startswith("tor:           tor (started by blagh, network disabled)")
        assert lines[4] == "tor state:     bootstrapped 0% (Starting)"
        assert lines[5] == (
            f"source onion:  http://{address}.onion/ -> 127.0.0.1:{server.port}, created; "
            "not published: tor's network is disabled"
        )
        assert lines[6] == "proof-of-work: on (queue rate 250/s, burst 2500)"
        assert lines[7] == "pickup onion:  not published"
        assert len(tor_processes_of(server.proc.pid)) == 1
    finally:
        code = server.stop()
    assert code == 0, server.log()
    assert tor_processes_of(server.proc.pid) == []
    assert "onion services removed" in server.log()
    assert "proof-of-work defence on (queue rate 250/s, burst 2500)" in server.log()
    assert "tor: Bootstrapped 0% (starting): Starting" in server.log()  # tor's log, passed on
    secret = read_key_file(data_dir.source_onion_key_file).add_onion_argument()[11:]
    assert secret[:20] not in server.log() + server.output()
    status = run_blagh("status", "--data-dir", data_dir.path)
    assert status.returncode == 3
    assert status.stdout.splitlines()[0] == "blagh serve:   not running"

    # The same address next time.
    server = Serve(data_dir, work)
    try:
        assert server.wait_started() == [address]
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert tor_processes_of(server.proc.pid) == []


@pytest.mark.tor
def test_client_keys_add_and_remove(serving: tuple[DataDir, Path]) -> None:
    """`blagh onion client add|remove|list`, before and while the server runs: tor's own reply
    to ADD_ONION (the ClientAuthV3 keys it took) is what status reports."""
    data_dir, work = serving
    out = work / "station-1.auth_private"
    added = run_blagh(
        "onion", "client", "add", "station-1", "--data-dir", data_dir.path, "--out", out
    )
    assert added.returncode == 0, added.stderr
    assert mode_of(out) == 0o600
    pickup = read_key_file(data_dir.pickup_onion_key_file).address
    assert out.read_text().startswith(f"{pickup}:descriptor:x25519:")
    assert "It takes effect when blagh serve next starts." in added.stdout

    server = Serve(data_dir, work)
    try:
        source, pickup_printed = server.wait_started()
        assert pickup_printed == pickup != source
        assert "Pickup onion service: " in server.output()
        assert (
            pickup_line(data_dir) == f"http://{pickup}.onion/ -> 127.0.0.1:{pickup_port(data_dir)}"
        )
        assert "1 authorised client(s)" in status_line(data_dir, "pickup onion")

        second = run_blagh("onion", "client", "add", "station-2", "--data-dir", data_dir.path)
        assert second.returncode == 0, second.stderr
        line = re.search(r"^([a-z2-7]{56}):descriptor:x25519:([A-Z2-7]{52})$", second.stdout, re.M)
        assert line and line.group(1) == pickup
        assert "The running server now authorises 2 client(s)." in second.stdout
        assert "2 authorised client(s)" in status_line(data_dir, "pickup onion")

        listed = run_blagh("onion", "client", "list", "--data-dir", data_dir.path)
        names = [row.split()[0] for row in listed.stdout.splitlines()]
        assert names == ["station-1", "station-2"]
        assert line.group(2) not in listed.stdout  # only public keys are kept

        removed = run_blagh("onion", "client", "remove", "station-1", "--data-dir", data_dir.path)
        assert removed.returncode == 0, removed.stderr
        assert "The running server now authorises 1 client(s)." in removed.stdout
        assert "1 authorised client(s)" in status_line(data_dir, "pickup onion")
        again = run_blagh("onion", "client", "remove", "station-1", "--data-dir", data_dir.path)
        assert again.returncode == 1
        assert again.stderr == ("blagh: error: no client named 'station-1' (clients: station-2)\n")
        last = run_blagh("onion", "client", "remove", "station-2", "--data-dir", data_dir.path)
        assert "withdrew the pickup service: it has no client left" in last.stdout
        assert status_line(data_dir, "pickup onion") == "not published"
    finally:
        assert server.stop() == 0
    assert tor_processes_of(server.proc.pid) == []


def pickup_line(data_dir: DataDir) -> str:
    return status_line(data_dir, "pickup onion").split(", ")[0]


def pickup_port(data_dir: DataDir) -> int:
    return read_config_file(data_dir.config_file).pickup.listen_port


@pytest.mark.tor
def test_nothing_secret_is_logged(
    tmp_path: Path, analyst_public_key: AnalystPublicKey, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged (ours, tor's, and stem's even at its TRACE level), every error message
    and the status file: no onion key, client key or control cookie in any of them."""
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="offline")
    made = add_client(data_dir.pickup_clients_file, "station-1")
    config = read_config_file(data_dir.config_file).tor
    caplog.set_level(1)
    stem_logger = logging.getLogger("stem")
    level = stem_logger.level
    stem_logger.setLevel(1)  # as if someone turned stem's TRACE logging on
    messages: list[str] = []
    try:
        services = OnionServices(
            config,
            data_dir,
            mode="offline",
            source_target="127.0.0.1:8080",
            pickup_target="127.0.0.1:8081",
        )
        status = services.start()
        assert services.tor is not None and len(status.services) == 2
        source_key = read_key_file(data_dir.source_onion_key_file)
        # tor refuses a command that carries a key: the error must not quote it.
        with pytest.raises(OnionError) as caught:
            services.tor.add_onion(
                source_key.add_onion_argument(), [(80, "no-such-target")], expected="x"
            )
        messages.append(str(caught.value))
        assert "tor refused adding an onion service" in messages[-1]
        cookie = (data_dir.tor_dir / "control_auth_cookie").read_bytes()
        status_text = data_dir.onion_status_file.read_text()
        services.stop()
    finally:
        stem_logger.setLevel(level)
    assert any(r.name.startswith("stem") for r in caplog.records), "stem's TRACE was captured"
    assert any("Bootstrapped 0%" in r.getMessage() for r in caplog.records), "tor's log too"
    logged = "\n".join(
        [r.getMessage() for r in caplog.records] + [caplog.text, status_text, *messages]
    )
    pickup_key = read_key_file(data_dir.pickup_onion_key_file)
    secrets = {
        "source key": source_key.add_onion_argument()[11:],
        "source key (base32)": base64.b32encode(source_key.expanded).decode(),
        "pickup key": pickup_key.add_onion_argument()[11:],
        "client private key": made.private_key,
        "cookie": cookie.hex(),
        "cookie (upper)": cookie.hex().upper(),
    }
    for name, secret in secrets.items():
        assert secret not in logged, name
        assert secret[:24] not in logged, name
    assert source_key.address in logged  # the public address is said, though


@pytest.mark.tor
def test_tor_start_failures_are_clear(tmp_path: Path, analyst_public_key: AnalystPublicKey) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst_public_key, mode="offline")
    data_dir.tor_dir.write_text("not a folder")
    services = OnionServices(
        TorConfig(mode="offline"), data_dir, mode="offline", source_target="127.0.0.1:8080"
    )
    with pytest.raises(TorStartError, match=r"^cannot create tor's data folder .*tor: "):
        services.start()
    data_dir.tor_dir.unlink()

    deep = tmp_path / ("d" * 100)
    with pytest.raises(TorStartError, match="too long for a unix socket"):
        Tor.launch(deep, network=False)

    # Another process already serves this data folder.
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        data_dir.onion_dir.mkdir(mode=0o700, exist_ok=True)
        stale = {
            "pid": helper.pid,
            "mode": "offline",
            "tor": "t",
            "tor_version": "0",
            "network": False,
            "control_socket": None,
            "control_port": None,
            "pow": {"enabled": False},
            "services": [],
        }
        data_dir.onion_status_file.write_text(json.dumps(stale))
        data_dir.onion_status_file.chmod(0o600)
        with pytest.raises(OnionError, match=f"already running on .* \\(process {helper.pid}\\)"):
            services.start()
        assert describe(TorConfig(mode="offline"), data_dir, read_status(data_dir))[0][0] == "tor"
    finally:
        helper.kill()
        helper.wait()
    deadline = time.monotonic() + 5
    while read_status(data_dir) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
