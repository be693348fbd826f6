"""The clearnet listener beside the onion one (docs/clearnet.md), through real gunicorn.

``blagh serve --tor off`` runs with ``[clearnet]`` on: a TCP listener, then a unix socket.  The
header rules are checked on both listeners, with the same forged headers sent to each: only the
clearnet listener honours ``X-Forwarded-Proto``, and only its answers carry
``Strict-Transport-Security``, ``Onion-Location``, ``Secure`` cookies and the Tor Browser note.
"""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn_helpers import Gunicorn, free_port, make_data_dir

from crypto.keys import generate_analyst_key

ONION = "a" * 52 + "bcdq.onion"
FORGED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "Forwarded": "for=x"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def get(
    connection: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> tuple[int, http.client.HTTPMessage, str]:
    connection.request("GET", path, headers=headers)
    answer = connection.getresponse()
    body = answer.read().decode("utf-8")
    connection.close()
    return answer.status, answer.headers, body


def serve_with_clearnet(tmp_path: Path, listen: str) -> Gunicorn:
    data_dir = make_data_dir(tmp_path / "data", generate_analyst_key(), workers=1)
    config = data_dir.config_file.read_text("utf-8")
    config = re.sub(
        r"(?ms)^\[clearnet\]\n.*?(?=^\[retention\])",
        f'[clearnet]\nenabled = true\nlisten = "{listen}"\n'
        f'public_url = "https://report.example.org"\nonion_address = "{ONION}"\n\n',
        config,
    )
    data_dir.config_file.write_text(config, "utf-8")
    server = Gunicorn(data_dir, tmp_path, workers=1)
    server.start()
    return server


@pytest.fixture
def tcp_server(tmp_path: Path) -> Iterator[tuple[Gunicorn, int]]:
    port = free_port()
    server = serve_with_clearnet(tmp_path, f"127.0.0.1:{port}")
    try:
        yield server, port
    finally:
        server.stop()


def test_only_the_clearnet_listener_honours_the_proxy(tcp_server: tuple[Gunicorn, int]) -> None:
    server, clearnet_port = tcp_server

    status, headers, body = get(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), "/?lang=fr", FORGED
    )
    assert status == 200
    assert headers["Strict-Transport-Security"] is None
    assert headers["Onion-Location"] is None
    assert "Tor Browser" not in body.split("<h1>")[0]  # no clearnet note before the title
    cookies = headers.get_all("Set-Cookie") or []
    assert any(c.startswith("lang=fr") for c in cookies)
    assert not any("Secure" in c for c in cookies), cookies  # the forged proto ignored

    status, headers, body = get(
        http.client.HTTPConnection("127.0.0.1", clearnet_port, timeout=10),
        "/report?lang=fr&x=%0Ay",
        FORGED,
    )
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["Onion-Location"] == f"http://{ONION}/report?lang=fr&x=%0Ay"
    cookies = headers.get_all("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies), cookies
    # The language choice ends with the browser session: no Expires, no Max-Age.
    [lang] = [c for c in cookies if c.startswith("lang=")]
    assert not re.search(r"(?i)expires|max-age", lang)


def test_the_landing_page_says_the_onion_address_is_safer(
    tcp_server: tuple[Gunicorn, int],
) -> None:
    server, clearnet_port = tcp_server
    proxied = {"X-Forwarded-Proto": "https"}
    _, _, page = get(http.client.HTTPConnection("127.0.0.1", clearnet_port, timeout=10), "/", {})
    assert ONION in page and "torproject.org" in page
    _, _, onion_page = get(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), "/", proxied
    )
    assert ONION not in onion_page and "gettor@torproject.org" not in onion_page


def test_a_proxy_speaking_plain_http_gets_no_secure_cookie(
    tcp_server: tuple[Gunicorn, int],
) -> None:
    """The scheme is the proxy's word, on that listener only: without it, no Secure cookie
    (which a browser on plain HTTP would drop, and the reporter could not log in)."""
    _, clearnet_port = tcp_server
    _, headers, _ = get(
        http.client.HTTPConnection("127.0.0.1", clearnet_port, timeout=10), "/?lang=en", {}
    )
    cookies = headers.get_all("Set-Cookie") or []
    assert cookies and not any("Secure" in c for c in cookies)


def test_a_unix_socket_listener(tmp_path: Path) -> None:
    path = tmp_path / "clearnet.sock"
    server = serve_with_clearnet(tmp_path, f"unix:{path}")
    try:
        status, headers, _ = get(UnixConnection(str(path)), "/?lang=ar", FORGED)
        assert status == 200
        assert headers["Onion-Location"] == f"http://{ONION}/?lang=ar"
        cookies = headers.get_all("Set-Cookie") or []
        assert cookies and all("Secure" in c for c in cookies)
        _, headers, _ = get(
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), "/?lang=ar", FORGED
        )
        assert headers["Onion-Location"] is None
        assert not any("Secure" in c for c in headers.get_all("Set-Cookie") or [])
    finally:
        server.stop()
