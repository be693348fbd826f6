"""Helpers of the onion tests: a data folder with chosen settings, ``blagh`` as a child process,
and a small cookie-keeping browser that speaks HTTP over tor's SOCKS port.

A plain module, not a conftest: test_onion.py and test_onion_network.py import what they need.
"""

from __future__ import annotations

import http.client
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
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


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Upload:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


class _SocksConnection(http.client.HTTPConnection):
    def __init__(self, host: str, socks_port: int, timeout: float) -> None:
        super().__init__(host, 80, timeout=timeout)
        self.socks_port = socks_port

    def connect(self) -> None:
        self.sock = socks_connect(self.socks_port, self.host, self.port, self.timeout or 60)


FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CODENAME = re.compile(r'<p class="codename"[^>]*>([^<]+)</p>')
MESSAGE_FORM = re.compile(r'action="/followup/([0-9a-f]+)/message"')


class TorBrowser:
    """One visitor of an onion site through tor's SOCKS port: keeps cookies, one request per
    connection (a new stream on the same circuit), follows no redirect."""

    def __init__(self, socks_port: int, onion: str) -> None:
        self.socks_port = socks_port
        self.onion = onion if onion.endswith(".onion") else onion + ".onion"
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Reply:
        headers: dict[str, str] = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if content_type:
            headers["Content-Type"] = content_type
        connection = _SocksConnection(self.onion, self.socks_port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for line in reply.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(
        self, path: str, fields: Sequence[tuple[str, str]], files: Sequence[Upload] = ()
    ) -> Reply:
        content_type, body = multipart(fields, files)
        return self.request("POST", path, body, content_type)

    def token(self, path: str) -> str:
        """GET a page with a form and return its anti-forgery token (setting its cookie)."""
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status)
        found = FORM_TOKEN.search(reply.text)
        assert found, path
        return found.group(1)


def multipart(fields: Sequence[tuple[str, str]], files: Sequence[Upload]) -> tuple[str, bytes]:
    """``(content type, body)`` of a form as a browser without JavaScript sends it."""
    boundary = "----blagh" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for upload in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{upload.filename}"\r\nContent-Type: {upload.content_type}\r\n\r\n'.encode()
            + upload.content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)
