"""The clearnet set-up end to end: Debian's nginx with docs/clearnet.nginx.conf, a certificate
from a CA made here, ``blagh serve`` with ``[clearnet]`` on, and real browsers over https://.

Chromium (Playwright) trusts the one server key (``--ignore-certificate-errors-spki-list``);
Firefox ESR (Marionette) trusts the test CA, put in its profile's NSS database with certutil.
Both are told that the site's name is 127.0.0.1.  Reports are sent with JavaScript off (the
form posts plaintext, sealed by the server as it arrives: a 20 MB file) and on; each arrives
and opens with the analyst's key, nothing of it is on any disk nginx or gunicorn write to, and
nginx's temporary folders (unwritable: a write would fail the upload) stay empty.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    ChromiumTab,
    Server,
    Site,
    Tab,
    launch,
    make_data_dir,
    missing_requirements,
)
from firefox_helpers import Firefox, FirefoxTab, missing_firefox, wait_until
from gunicorn_helpers import free_port
from playwright.sync_api import Browser, Playwright, sync_playwright
from proxy_helpers import HOST, NAME, CertificateAuthority, Nginx, missing_nginx
from report_scenarios import (
    MIB,
    check_arrived,
    fill_report,
    marker,
    report_files,
    submit_report,
    type_back_in_the_page,
    wait_for_sealing,
)

from crypto.keys import generate_analyst_key

ONION = "a" * 52 + "bcdq.onion"
ENGINES = ["chromium", "firefox"]
FIREFOX_PREFS: dict[str, object] = {
    "network.dns.forceResolve": HOST,  # the site's name is this machine
    "network.trr.mode": 5,
    "security.OCSP.enabled": 0,
}


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    problem = missing_requirements() or missing_firefox() or missing_nginx()
    if problem:
        pytest.fail(problem)
    with tempfile.TemporaryDirectory(prefix="blagh-proxy-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def ca(work: Path) -> CertificateAuthority:
    return CertificateAuthority(work / "ca")


@pytest.fixture(scope="module")
def site_and_proxy(work: Path, ca: CertificateAuthority) -> Iterator[tuple[Site, Nginx]]:
    """``blagh serve`` with its clearnet listener, and nginx in front of it."""
    analyst = generate_analyst_key()
    data_dir = make_data_dir(work / "data", analyst, workers=1)
    clearnet_port = free_port()
    proxy = Nginx(ca, clearnet_port)
    config = data_dir.config_file.read_text("utf-8")
    config, count = re.subn(
        r"(?ms)^\[clearnet\]\n.*?(?=^\[retention\])",
        f'[clearnet]\nenabled = true\nlisten = "{HOST}:{clearnet_port}"\n'
        f'public_url = "{proxy.url}"\nonion_address = "{ONION}"\n\n',
        config,
    )
    assert count == 1
    data_dir.config_file.write_text(config, "utf-8")
    server = Server(data_dir, work)
    server.start()
    try:
        proxy.start()
        try:
            yield Site(data_dir, analyst, server), proxy
        finally:
            proxy.stop()
            proxy.remove()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium(ca: CertificateAuthority) -> Iterator[Browser]:
    with sync_playwright() as driver:
        playwright: Playwright = driver
        browser = launch(
            playwright,
            f"--ignore-certificate-errors-spki-list={ca.server_spki_sha256()}",
            f"--host-resolver-rules=MAP {NAME} {HOST}",
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def firefoxes(ca: CertificateAuthority) -> Iterator[Callable[[bool], Firefox]]:
    """Firefox with JavaScript on or off, each started when first asked for, the test CA in
    its profile."""
    started: dict[bool, Firefox] = {}

    def get(javascript: bool) -> Firefox:
        if javascript not in started:
            browser = Firefox(javascript, FIREFOX_PREFS)
            ca.trust_in_nss(browser.profile)
            started[javascript] = browser.start()
        return started[javascript]

    yield get
    for browser in started.values():
        browser.close()


TabMaker = Callable[[str, bool], Tab]


@pytest.fixture
def open_tab(
    site_and_proxy: tuple[Site, Nginx],
    chromium: Browser,
    firefoxes: Callable[[bool], Firefox],
) -> Iterator[TabMaker]:
    """``open_tab(engine, javascript)``: a fresh tab with no cookie, on the https:// site."""
    _, proxy = site_and_proxy
    contexts = []

    def make(engine: str, javascript: bool) -> Tab:
        if engine == "chromium":
            context = chromium.new_context(base_url=proxy.url, java_script_enabled=javascript)
            contexts.append(context)
            return ChromiumTab(context.new_page(), javascript)
        browser = firefoxes(javascript)
        browser.clear_cookies()
        return browser.tab(proxy.url)

    yield make
    for context in contexts:
        context.close()


def browser_cookies(tab: Tab) -> list[dict[str, Any]]:
    """The cookies the browser holds for the site, as it stored them."""
    if isinstance(tab, ChromiumTab):
        return list(tab.page.context.cookies())
    assert isinstance(tab, FirefoxTab)
    return list(tab.client.get_cookies())


def page_protocol(tab: Tab) -> str:
    """The HTTP version the page came over, as the browser's script sees it (JavaScript on)."""
    script = "return performance.getEntriesByType('navigation')[0].nextHopProtocol"
    if isinstance(tab, ChromiumTab):
        return str(tab.page.evaluate(f"() => {{ {script} }}"))
    assert isinstance(tab, FirefoxTab)
    return str(tab.client.execute_script(script, sandbox=None))


def check_secure_cookies(tab: Tab) -> None:
    cookies = browser_cookies(tab)
    assert cookies, "the site set no cookie"
    assert all(cookie["secure"] for cookie in cookies), cookies
    # Nothing outlives the browser session (a seized phone must not show the visit).
    assert all(cookie.get("expires", cookie.get("expiry", -1)) in (-1, None) for cookie in cookies)


def check_nothing_on_disk(site: Site, proxy: Nginx, work: Path, mark: str) -> None:
    """No temporary file in nginx's folders, and the report's plaintext in no file that nginx
    or gunicorn wrote (their folders, the data folder, the logs)."""
    assert proxy.temp_files() == []
    control = work / "control"
    control.write_bytes(os.urandom(100_000) + mark.encode() + os.urandom(10))
    try:
        assert scan(mark.encode(), [proxy.folder, work]) == [control]
    finally:
        control.unlink()


def scan(needle: bytes, roots: list[Path]) -> list[Path]:
    """Every regular file under ``roots`` holding ``needle``."""
    found = []
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    continue
                tail = b""
                with path.open("rb") as f:
                    while piece := f.read(1 << 20):
                        if needle in tail + piece:
                            found.append(path)
                            break
                        tail = piece[-len(needle) :]
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_report_without_javascript_through_the_proxy(
    open_tab: TabMaker, site_and_proxy: tuple[Site, Nginx], work: Path, engine: str
) -> None:
    """The no-JS path: the form's plaintext, 20 MB of file with it, streamed through nginx to
    Blagh, which seals it as it arrives."""
    site, proxy = site_and_proxy
    tab = open_tab(engine, False)
    tab.goto("/report")
    assert tab.url.startswith(f"https://{NAME}:")
    mark = marker()
    files = report_files(mark, big=20 * 1000 * 1000)
    before = site.report_ids()
    fill_report(tab, mark, files, keep_codename=False)
    submit_report(tab)
    tab.wait_for_url("**/report/received", timeout=180)
    check_arrived(site, before, mark, files)
    check_secure_cookies(tab)
    check_nothing_on_disk(site, proxy, work, mark)


@pytest.mark.parametrize("engine", ENGINES)
def test_report_sealed_in_the_page_through_the_proxy(
    open_tab: TabMaker, site_and_proxy: tuple[Site, Nginx], work: Path, engine: str
) -> None:
    site, proxy = site_and_proxy
    tab = open_tab(engine, True)
    tab.goto("/report")
    wait_for_sealing(tab)
    assert page_protocol(tab) == "h2"  # the example's HTTP/2, streamed like HTTP/1.1
    mark = marker()
    files = report_files(mark, big=3 * MIB)
    before = site.report_ids()
    fill_report(tab, mark, files, keep_codename=True)
    submit_report(tab)
    type_back_in_the_page(tab)
    check_arrived(site, before, mark, files)
    check_secure_cookies(tab)
    check_nothing_on_disk(site, proxy, work, mark)


def test_chromium_sees_hsts_and_onion_location(
    open_tab: TabMaker, site_and_proxy: tuple[Site, Nginx]
) -> None:
    tab = open_tab("chromium", False)
    assert isinstance(tab, ChromiumTab)
    response = tab.page.goto("/report?lang=fr")
    assert response is not None and response.status == 200
    headers = response.all_headers()
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["onion-location"] == f"http://{ONION}/report?lang=fr"
    check_secure_cookies(tab)


def test_firefox_sees_hsts_and_onion_location(
    open_tab: TabMaker, site_and_proxy: tuple[Site, Nginx]
) -> None:
    tab = open_tab("firefox", True)
    assert isinstance(tab, FirefoxTab)
    tab.goto("/report?lang=ar")  # a page whose policy lets its scripts fetch from the site
    seen = tab.client.execute_script(
        "return fetch('/report?lang=ar').then(r => [r.status, "
        "r.headers.get('Strict-Transport-Security'), r.headers.get('Onion-Location')])",
        sandbox=None,
    )
    assert seen == [200, "max-age=31536000", f"http://{ONION}/report?lang=ar"]
    wait_until(lambda: browser_cookies(tab), "the language cookie")
    check_secure_cookies(tab)


# ---------------------------------------------------------------------------------------------
# What nginx sends upstream, seen by a recording upstream instead of Blagh
# ---------------------------------------------------------------------------------------------


class RecordingUpstream:
    """A loopback server that records one request's head and the body bytes as they come, and
    answers once the body is whole."""

    def __init__(self, body_length: int) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.body_length = body_length
        self.head = b""
        self.body = bytearray()
        self.first_part = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            self.head, _, rest = data.partition(b"\r\n\r\n")
            self.body += rest
            while len(self.body) < self.body_length:
                if len(self.body) >= self.body_length // 4:
                    self.first_part.set()
                piece = connection.recv(65536)
                if not piece:
                    break
                self.body += piece
            self.first_part.set()
            connection.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        self.done.set()

    def headers(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            found.setdefault(name.strip().lower(), []).append(value.strip())
        return found

    def close(self) -> None:
        self.listener.close()


def test_nginx_streams_the_body_and_sends_no_client_address(
    work: Path, ca: CertificateAuthority
) -> None:
    """Half of a 4 MiB body reaches the upstream while the client still holds the other half
    (no request buffering), over HTTP/1.1, with X-Forwarded-Proto set by nginx and every
    client-address header the client forged removed.  The error log names no client."""
    length = 4 * MIB
    upstream = RecordingUpstream(length)
    proxy = Nginx(ca, upstream.port)
    proxy.start()
    try:
        context = ssl.create_default_context(cafile=str(ca.ca))
        with (
            socket.create_connection((HOST, proxy.port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            tls.sendall(
                f"POST /report HTTP/1.1\r\nHost: {NAME}\r\nContent-Length: {length}\r\n"
                "X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n"
                "Forwarded: for=203.0.113.9\r\nX-Forwarded-Proto: http\r\n"
                "X-Forwarded-Host: evil.example\r\n\r\n".encode()
            )
            body = os.urandom(length)
            tls.sendall(body[: length // 2])
            assert upstream.first_part.wait(30), "nginx held the body back"
            tls.sendall(body[length // 2 :])
            answer = tls.recv(4096)
        assert upstream.done.wait(30)
        assert answer.startswith(b"HTTP/1.1 204")
        assert bytes(upstream.body) == body
        assert upstream.head.split(b"\r\n")[0] == b"POST /report HTTP/1.1"
        headers = upstream.headers()
        assert headers["x-forwarded-proto"] == ["https"]
        assert headers["host"] == [NAME]
        for name in ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host"):
            assert name not in headers, name
        assert "203.0.113.9" not in upstream.head.decode("latin-1")
        assert proxy.temp_files() == []

        # Plain HTTP, on its own port, only sends the browser to HTTPS.
        with socket.create_connection((HOST, proxy.http_port), timeout=30) as plain:
            plain.sendall(f"GET /report?x=1 HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            head = plain.recv(4096).decode("latin-1")
            assert head.startswith("HTTP/1.1 301 ")
            assert f"\r\nLocation: https://{NAME}/report?x=1\r\n" in head

        # Plain HTTP to the TLS port, and a body past client_max_body_size: errors nginx logs
        # (at "info" and "error", with "client: 127.0.0.1") anywhere but here.
        with socket.create_connection((HOST, proxy.port), timeout=30) as plain:
            plain.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            assert b" 400 " in plain.recv(4096)
        with (
            socket.create_connection((HOST, proxy.port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            tls.sendall(
                f"POST / HTTP/1.1\r\nHost: {NAME}\r\nContent-Length: {600 * MIB}\r\n\r\n".encode()
            )
            assert b" 413 " in tls.recv(4096)
    finally:
        proxy.stop()
        upstream.close()
    try:
        assert proxy.error_log.exists()
        assert "client" not in proxy.log() and HOST not in proxy.log()
    finally:
        proxy.remove()
