"""Several source-interface servers behind one onion address (Onionbalance, onion/balance.py).

The files ``blagh onion balance`` writes are checked against the real consumers: Debian's
Onionbalance reads the key and the config (its own loader, in the system Python it runs on), and
tor validates a backend's torrc lines with the ob_config file in its service folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from blagh.cli import cli
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
