"""Staying up under slow Tor clients and a lone attacker, through a real gunicorn.

These tests run ``blagh serve`` (gevent workers, source_interface/worker.py) on loopback and
attack it as issue 10 describes: connections trickling headers or bodies, more connections
than a worker holds, floods of logins.  Each checks what an honest visitor sees meanwhile (the
landing page within a second, a report with a file going through), that no worker dies, and
that the server is idle again afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from form_browser import Upload
from gunicorn_helpers import HOST, Browser, Gunicorn, make_data_dir, submit_report
from slow_clients import MB, SlowClients, SlowLoad, probe

from crypto.keys import AnalystKey, generate_analyst_key

pytestmark = pytest.mark.serial  # what a visitor waits for: no other test's load meanwhile

PROBE_LIMIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def analyst() -> AnalystKey:
    return generate_analyst_key()


@pytest.fixture
def serve(tmp_path: Path, analyst: AnalystKey) -> Iterator[Callable[..., Gunicorn]]:
    """Start ``blagh serve`` with ``workers`` workers (2) and the given ``[limits]``; stopped
    afterwards."""
    started: list[Gunicorn] = []

    def start(workers: int = 2, **limits: int) -> Gunicorn:
        data_dir = make_data_dir(tmp_path / "data", analyst, workers=workers, limits=limits)
        server = Gunicorn(data_dir, tmp_path, workers=workers)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


class Prober(threading.Thread):
    """An honest visitor loading the landing page every ``interval`` seconds until stopped."""

    def __init__(self, port: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            started = time.monotonic()
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                connection.close()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except OSError as error:
                self.failures.append(repr(error))
            self.latencies.append(time.monotonic() - started)

    def stop(self) -> None:
        self.halt.set()
        self.join()

    def check(self) -> None:
        assert len(self.latencies) >= 5, "the prober hardly ran"
        assert self.failures == []
        worst = max(self.latencies)
        assert worst < PROBE_LIMIT_SECONDS, (
            f"landing page took {worst:.2f} s (median {statistics.median(self.latencies):.3f} s)"
        )


def worker_processes(server: Gunicorn) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in server.worker_pids()]


def open_connections(server: Gunicorn) -> int:
    """Established TCP connections the workers hold on the server's port."""
    count = 0
    for process in worker_processes(server):
        for connection in process.net_connections(kind="tcp"):
            established = connection.status == psutil.CONN_ESTABLISHED
            if established and connection.laddr.port == server.port:
                count += 1
    return count


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


# --- slow clients ----------------------------------------------------------------------------


def test_slow_clients_do_not_take_the_site_down(serve: Callable[..., Gunicorn]) -> None:
    """500 connections trickling headers and 100 trickling upload bodies at 1–50 KB/s, held
    for 30 s: every landing-page probe answers within a second, an honest report with a 1 MB
    file is stored, no worker dies; then the slow clients are dropped or finish, and the
    workers hold no connection any more."""
    server = serve()
    workers = server.worker_pids()
    load = SlowLoad(server.port, header_clients=500, upload_clients=100, duration=30)
    with SlowClients(load) as clients:
        reply = submit_report(
            Browser(server.port), "during the slow clients", [Upload("a.bin", os.urandom(MB))]
        )
        assert reply.status == 303
        held = open_connections(server)
        seen = probe(server.port, duration=28, interval=0.25)
    result = clients.result()
    assert held >= 550, f"the slow clients were held, not refused ({held})"
    assert result.not_connected() == 0, result.summary()
    assert seen.failures == [], seen.summary()
    assert seen.count >= 40 and seen.slowest < PROBE_LIMIT_SECONDS, seen.summary()
    assert server.worker_pids() == workers, "no worker died"
    wait_until(lambda: open_connections(server) == 0, 30, "the workers let go of every client")
    assert Browser(server.port).get("/").status == 200


def test_a_trickled_body_or_header_is_dropped(serve: Callable[..., Gunicorn]) -> None:
    """Below the minimum body rate (1 KB/s here over 3-second windows), or with headers not
    done in time, a client is dropped and what it sent is not stored; an upload above the
    rate is held as long as it keeps it."""
    server = serve(header_timeout_seconds=3, body_rate_window_seconds=3)
    load = SlowLoad(
        server.port,
        header_clients=10,
        upload_clients=20,
        upload_rate=(100, 3000),
        duration=12,
    )
    with SlowClients(load) as clients:
        result = clients.result()
    trickled = [fate for fate in result.of("upload") if fate.rate <= 700]
    honest = [fate for fate in result.of("upload") if fate.rate >= 1500]
    assert trickled and honest
    assert all(fate.closed_at is not None for fate in trickled), result.summary()
    assert all(fate.closed_at is None for fate in honest), result.summary()
    assert result.closed_by_server("headers") == 10, result.summary()
    assert max(result.close_times("headers")) < 12
    blobs = server.data_dir.path / "store" / "blobs"
    wait_until(lambda: not any((blobs / "tmp").iterdir()), 30, "dropped uploads discarded")
    assert [path for path in blobs.iterdir() if path.is_file()] == [], "nothing was stored"


# --- floods of logins ------------------------------------------------------------------------


def _flood(port: int, stop: threading.Event, login: Callable[[Browser], object]) -> None:
    browser = Browser(port)
    while not stop.is_set():
        with contextlib.suppress(OSError):
            login(browser)


def _bad_token_login(browser: Browser) -> object:
    return browser.post("/login", [("form_token", "x" * 43), ("codename", "a b c d e f g")])


def _argon2_login(browser: Browser) -> object:
    browser.cookies.pop("blagh_flash", None)  # the last refusal's message, for a fresh form
    token = browser.token("/login")
    words = " ".join(["abacus"] * 7)
    return browser.post("/login", [("form_token", token), ("codename", words)])


def test_login_floods_do_not_delay_the_landing_page(serve: Callable[..., Gunicorn]) -> None:
    """16 clients sending logins with a bad form token and 8 sending codenames that need an
    argon2id derivation each: the landing page keeps answering within a second, and an
    honest report goes through."""
    server = serve()
    stop = threading.Event()
    floods = [
        threading.Thread(target=_flood, args=(server.port, stop, _bad_token_login))
        for _ in range(16)
    ] + [threading.Thread(target=_flood, args=(server.port, stop, _argon2_login)) for _ in range(8)]
    prober = Prober(server.port)
    workers = server.worker_pids()
    for thread in floods:
        thread.start()
    prober.start()
    try:
        stop.wait(10)
        reply = submit_report(
            Browser(server.port), "during a login flood", [Upload("a.bin", os.urandom(100_000))]
        )
        assert reply.status == 303
    finally:
        stop.set()
        prober.stop()
        for thread in floods:
            thread.join()
    prober.check()
    assert server.worker_pids() == workers, "no worker died"


# --- the connection cap ----------------------------------------------------------------------


def _busy_page(port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def test_past_the_connection_cap_a_visitor_gets_the_busy_page(
    serve: Callable[..., Gunicorn],
) -> None:
    """With the worker holding its cap of connections (clients that never finish their
    headers), a new visitor gets the short 503 page at once, in the four languages; once the
    holders go, the site answers normally again."""
    cap = 16
    server = serve(workers=1, max_connections_per_worker=cap, header_timeout_seconds=120)
    holders = []
    try:
        for _ in range(cap):
            holder = socket.create_connection((HOST, server.port))
            holder.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            holders.append(holder)
        wait_until(lambda: open_connections(server) == cap, 30, "the worker took them all")
        status, body = _busy_page(server.port)
        assert status == 503
        assert "The site is too busy right now. Nothing of this request was saved." in body
        assert "Le site est trop sollicité" in body and "الموقع مشغول" in body
        assert "El sitio está saturado" in body
    finally:
        for holder in holders:
            holder.close()
    wait_until(lambda: open_connections(server) == 0, 30, "the holders' connections closed")
    assert _busy_page(server.port)[0] == 200
