"""Helpers of the onion tests: a data folder with chosen settings, ``blagh`` as a child process,
and a small cookie-keeping browser that speaks HTTP over tor's SOCKS port.

A plain module, not a conftest: test_onion.py and test_onion_network.py import what they need.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from form_browser import FormBrowser
from tornet import free_port, socks_connect, wait_for

from blagh.config import read_config_file
from blagh.datadir import DataDir
from crypto.keys import AnalystPublicKey

BLAGH = Path(sys.executable).with_name("blagh")
ADDRESS = re.compile(r"http://([a-z2-7]{56})\.onion/")


def make_data_dir(path: Path, analyst: AnalystPublicKey, **tor: str | int) -> DataDir:
    """A data folder as `blagh init` makes it, with [tor] settings replaced."""
    data_dir = DataDir(path)
    data_dir.create([analyst])
    set_config(data_dir, "tor", **tor)
    return data_dir


def set_config(data_dir: DataDir, section: str, **values: str | int | bool) -> None:
    """Set settings of one section of the data folder's config.toml (commented ones too)."""
    text = data_dir.config_file.read_text("utf-8")
    head, marker, rest = text.partition(f"\n[{section}]\n")
    assert marker, section
    body, next_marker, tail = rest.partition("\n[")
    for name, value in values.items():
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, str):
            shown = f'"{value}"'
        else:
            shown = str(value)
        line = f"{name} = {shown}"
        body, count = re.subn(rf"(?m)^#? ?{name} = .*$", line, body, count=1)
        if not count:
            body += f"\n{line}\n"
    data_dir.config_file.write_text(head + marker + body + next_marker + tail, "utf-8")
    read_config_file(data_dir.config_file)  # still valid


def run_blagh(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLAGH, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def status_line(data_dir: DataDir, label: str) -> str:
    """The text of one line of `blagh status`."""
    result = run_blagh("status", "--data-dir", data_dir.path)
    for line in result.stdout.splitlines():
        if line.startswith(label + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {label!r} line in:\n{result.stdout}{result.stderr}")


class Serve:
    """``blagh serve`` as a child process, its output and log in files."""

    def __init__(self, data_dir: DataDir, work: Path, *args: str) -> None:
        self.out = work / "serve.out"
        self.err = work / "serve.err"
        self.port = free_port()
        command = [BLAGH, "serve", "--data-dir", str(data_dir.path), "--port", str(self.port)]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [*command, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    def output(self) -> str:
        return self.out.read_text("utf-8", "replace")

    def log(self) -> str:
        return self.err.read_text("utf-8", "replace")

    def wait_started(self) -> list[str]:
        """The onion addresses it printed, once it says the source interface is up."""

        def started() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"blagh serve exited:\n{self.output()}\n{self.log()}")
            return "Source interface: " in self.output() and self.answers()

        wait_for("blagh serve started", started, 30, step=0.05)
        return ADDRESS.findall(self.output())

    def answers(self) -> bool:
        """Whether gunicorn answers on its port (and so handles SIGINT and SIGTERM)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return True

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


# --- a browser over tor ------------------------------------------------------------------------


class _SocksConnection(http.client.HTTPConnection):
    def __init__(self, host: str, socks_port: int, timeout: float) -> None:
        super().__init__(host, 80, timeout=timeout)
        self.socks_port = socks_port

    def connect(self) -> None:
        self.sock = socks_connect(self.socks_port, self.host, self.port, self.timeout or 60)


class TorBrowser(FormBrowser):
    """One visitor of an onion site through tor's SOCKS port: keeps cookies, one request per
    connection (a new stream on the same circuit), follows no redirect."""

    def __init__(self, socks_port: int, onion: str) -> None:
        super().__init__()
        self.socks_port = socks_port
        self.onion = onion if onion.endswith(".onion") else onion + ".onion"

    def connection(self) -> http.client.HTTPConnection:
        return _SocksConnection(self.onion, self.socks_port, timeout=120)
