"""The slow-client load generator itself (tests/slow_clients.py), against a tiny server whose
behaviour is known: the availability tests and the bench trust its counts, so they are checked
here once.

The server answers a complete ``GET`` at once, drops a request whose headers are still not
finished after HEADER_LIMIT bytes with a 408 (as a header timeout would), and reads uploads
forever, counting their bytes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from slow_clients import SlowClients, SlowLoad, probe, upload_rates

HEADER_LIMIT = 40
"""Bytes of unfinished headers the tiny server takes before it answers 408 and closes."""


class TinyServer:
    def __init__(self) -> None:
        self.port = 0
        self.upload_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = await reader.read(1024)
                if not chunk:
                    return
                received += chunk
                if len(received) > HEADER_LIMIT and b"\r\n\r\n" not in received:
                    writer.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
                    return
            if received.startswith(b"GET "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            self.upload_bytes += len(received)
            while chunk := await reader.read(65536):
                self.upload_bytes += len(chunk)
        finally:
            writer.close()

    def __enter__(self) -> TinyServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def tiny() -> Iterator[TinyServer]:
    with TinyServer() as server:
        yield server


def test_rates_are_spread_across_the_range() -> None:
    load = SlowLoad(1, upload_clients=5, upload_rate=(1_000, 50_000))
    assert upload_rates(load) == [1_000, 13_250, 25_500, 37_750, 50_000]
    assert upload_rates(SlowLoad(1, upload_clients=1, upload_rate=(1_000, 50_000))) == [50_000]


def test_it_counts_what_the_server_closed_and_what_it_still_holds(tiny: TinyServer) -> None:
    load = SlowLoad(
        tiny.port,
        header_clients=6,
        upload_clients=3,
        upload_rate=(20_000, 40_000),
        duration=2.0,
        header_bytes=8,
        header_interval=0.02,
    )
    with SlowClients(load) as clients:
        assert clients.ready["connected"] == 9
        seen = probe(tiny.port, count=5, interval=0.05)
        result = clients.result()  # the whole duration: the load ends by itself

    assert seen.ok(1.0) and seen.count == 5, seen.summary()
    assert result.closed_by_server("headers") == 6, result.summary()
    assert result.statuses("headers") == {"408": 6}
    assert all(0 < t < 2.0 for t in result.close_times("headers"))
    assert result.still_open("upload") == 3 and result.closed_by_server("upload") == 0
    assert result.not_connected() == 0 and result.finished() == 0
    assert result.held == pytest.approx(2.0, abs=0.5)
    # Each upload sent its request head and multipart prefix, then its file at its own pace:
    # never faster, and not much slower on an idle loopback.
    for fate in result.of("upload"):
        assert 0.5 * fate.rate * result.held < fate.sent < 1_000 + fate.rate * result.held, fate
    assert tiny.upload_bytes > 0


def test_probe_counts_a_closed_port_as_failures() -> None:
    with TinyServer() as server:
        port = server.port
    seen = probe(port, count=3, interval=0.01, timeout=1.0)
    assert seen.count == 3 and len(seen.failures) == 3
    assert not seen.ok() and seen.p99 == float("inf")
