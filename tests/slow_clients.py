"""Slow clients, as Tor gives them and as an attacker makes them, and an honest visitor beside them.

A plain module, not a conftest, standard library only: the availability tests and the benchmark
(``bench/availability_bench.py``) both use it.  What it does to a server on 127.0.0.1:

- *header tricklers* open a connection and send a request line and headers a few bytes at a
  time, never finishing them: a server that gives each connection a thread is full after a
  handful of these;
- *slow uploads* send a ``POST /report`` with a large ``Content-Length`` and a valid-looking
  multipart body (a form token that passes the double-submit check, then a file part) at a set
  rate, 1 to 50 KB/s as Tor clients do: the honest shape of a 20 MB video at Tor speed;
- :func:`probe` is the honest visitor: ``GET /`` on a fresh connection, again and again, timed.

The load runs in one asyncio loop, in a child process when used through :class:`SlowClients`
(the usual way), so the prober's timings never wait on the load's interpreter lock.  Everything
is bounded: each connect has a timeout, the load is held ``duration`` seconds once every
connection is open, and then every connection is closed by this side.  The result says, for
each connection, whether the server closed it (and when, and with what status line if it
answered) or whether it was still open at the end.

    with SlowClients(SlowLoad(port, header_clients=500, upload_clients=100, duration=30)) as load:
        seen = probe(port, duration=28)
    result = load.result()
    assert seen.failures == 0 and seen.p99 < 1.0
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

HOST = "127.0.0.1"
FORM_COOKIE = "blagh_form"
"""The double-submit cookie of the report form (source_interface/sessions.py: CSRF_COOKIE).

Any 43-character token is valid as long as the cookie and the field agree, so the uploads make
up their own, with no request beforehand: an attacker would do the same."""

KB = 10**3
MB = 10**6

Kind = Literal["headers", "upload"]


@dataclass(frozen=True)
class SlowLoad:
    """What to hold against a server: how many slow connections of each kind, how fast, how long.

    ``upload_rate`` is a range of bytes per second: upload *i* of *M* runs at a rate spread
    evenly across it (both ends included), so ``(1_000, 50_000)`` gives every Tor-like speed
    from 1 to 50 KB/s and ``(50_000, 50_000)`` gives them all 50 KB/s.  ``upload_bytes`` is the
    file size announced (the body's Content-Length adds the form fields and the multipart
    framing): large enough that no upload finishes within ``duration`` unless meant to, and
    below the server's ``max_upload_mb`` so it is not refused at once.
    """

    port: int
    header_clients: int = 0
    upload_clients: int = 0
    upload_rate: tuple[int, int] = (1 * KB, 50 * KB)
    upload_bytes: int = 20 * MB
    duration: float = 30.0
    """Seconds the load is held once every connection is open (or has failed to open)."""
    header_bytes: int = 3
    """Bytes a header trickler sends each ``header_interval`` seconds."""
    header_interval: float = 1.0
    tick: float = 0.25
    """An upload sends ``rate × tick`` bytes every ``tick`` seconds."""
    connect_timeout: float = 10.0
    parallel_connects: int = 64
    """Connections being opened at once: a burst of thousands of SYNs overflows any backlog."""
    path: str = "/report"
    host: str = HOST


@dataclass
class Fate:
    """What became of one slow connection.  Times are seconds since the load was ready."""

    kind: Kind
    rate: int = 0
    """Bytes per second (uploads) or bytes per interval (header tricklers)."""
    connected: bool = False
    sent: int = 0
    closed_at: float | None = None
    """When the server closed the connection (or reset it); None if it never did."""
    status: str = ""
    """The status line the server sent before closing, if any (e.g. "HTTP/1.1 408 ...")."""
    finished: bool = False
    """An upload sent its whole body and got an answer (only if ``duration`` allowed it)."""
    error: str = ""
    """Why the connection could not be opened, if it could not."""


@dataclass
class LoadResult:
    """Every connection's fate, and counts for the assertions a test makes."""

    load: dict[str, Any]
    ready_after: float
    """Seconds it took to open every connection (the ramp)."""
    held: float
    """Seconds the load was then held (``duration``, or less if stopped early)."""
    fates: list[Fate] = field(default_factory=list)

    def of(self, kind: Kind | None = None) -> list[Fate]:
        return [f for f in self.fates if kind is None or f.kind == kind]

    def not_connected(self, kind: Kind | None = None) -> int:
        """Connections that never opened (refused, or timed out in the SYN backlog)."""
        return sum(not f.connected for f in self.of(kind))

    def closed_by_server(self, kind: Kind | None = None) -> int:
        return sum(f.closed_at is not None and not f.finished for f in self.of(kind))

    def still_open(self, kind: Kind | None = None) -> int:
        """Connections the server was still holding when this side closed them at the end."""
        return sum(f.connected and f.closed_at is None for f in self.of(kind))

    def finished(self, kind: Kind | None = None) -> int:
        return sum(f.finished for f in self.of(kind))

    def close_times(self, kind: Kind | None = None) -> list[float]:
        """When the server closed connections (seconds after ready), sorted."""
        return sorted(f.closed_at for f in self.of(kind) if f.closed_at is not None)

    def statuses(self, kind: Kind | None = None) -> Counter[str]:
        """How often each status code (e.g. "408", "503") came back before a close."""
        return Counter(f.status.split(" ")[1] for f in self.of(kind) if f.status.count(" "))

    def summary(self) -> str:
        """One line per kind, for a failing assertion's message or the bench's log."""
        lines = []
        kinds: tuple[Kind, ...] = ("headers", "upload")
        for kind in kinds:
            fates = self.of(kind)
            if not fates:
                continue
            times = self.close_times(kind)
            when = f" (closes at {times[0]:.1f}…{times[-1]:.1f} s)" if times else ""
            lines.append(
                f"{kind}: {len(fates)} asked, {self.not_connected(kind)} never connected, "
                f"{self.closed_by_server(kind)} closed by the server{when}, "
                f"{self.finished(kind)} finished, {self.still_open(kind)} still open; "
                f"statuses {dict(self.statuses(kind))}"
            )
        return "\n".join(lines)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        fates = [Fate(**fate) for fate in data.pop("fates")]
        return cls(**data, fates=fates)


# ---------------------------------------------------------------------------------------------
# The honest visitor
# ---------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """Latencies of the probes that got an answer, and what went wrong with the others."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies) + len(self.failures)

    def quantile(self, fraction: float) -> float:
        """A latency quantile in seconds, a failed probe counting as infinitely slow."""
        if not self.count:
            return float("inf")
        ordered = sorted(self.latencies) + [float("inf")] * len(self.failures)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    @property
    def slowest(self) -> float:
        return self.quantile(1.0)

    def ok(self, limit: float = 1.0) -> bool:
        """Every probe answered 200, and the slowest within ``limit`` seconds."""
        return not self.failures and set(self.statuses) == {200} and self.slowest < limit

    def summary(self) -> str:
        if not self.latencies:
            return f"{self.count} probes, all failed: {Counter(self.failures)}"
        return (
            f"{self.count} probes: p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, "
            f"max {max(self.latencies) * 1000:.0f} ms, statuses {dict(self.statuses)}, "
            f"{len(self.failures)} failed {dict(Counter(self.failures))}"
        )


def probe(
    port: int,
    *,
    duration: float = 10.0,
    count: int | None = None,
    interval: float = 0.2,
    timeout: float = 5.0,
    path: str = "/",
    host: str = HOST,
) -> ProbeResult:
    """``GET path`` on a fresh connection every ``interval`` seconds, as a new visitor would.

    Stops after ``duration`` seconds or ``count`` probes, whichever comes first.  A probe that
    gets no whole answer within ``timeout`` seconds (or an error) is a failure.  Runs in the
    calling thread; pacing is by start time, so a slow answer delays the next probe only if
    it takes longer than ``interval``.
    """
    result = ProbeResult()
    started = time.monotonic()
    due = started
    while time.monotonic() - started < duration and (count is None or result.count < count):
        with contextlib.suppress(ValueError):
            time.sleep(max(0.0, due - time.monotonic()))
        due += interval
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        t0 = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            result.failures.append(type(error).__name__)
        else:
            elapsed = time.perf_counter() - t0
            if elapsed > timeout:
                result.failures.append("TimeoutError")
            else:
                result.latencies.append(elapsed)
                result.statuses[response.status] += 1
        finally:
            connection.close()
    return result


# ---------------------------------------------------------------------------------------------
# The load, in one asyncio loop
# ---------------------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit.

    Thousands of sockets do not fit in the usual soft limit of 1,024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


def upload_rates(load: SlowLoad) -> list[int]:
    """Each upload's rate in bytes per second, spread evenly across ``load.upload_rate``."""
    low, high = load.upload_rate
    count = load.upload_clients
    if count <= 1:
        return [high] * count
    return [round(low + (high - low) * i / (count - 1)) for i in range(count)]


def _upload_head(load: SlowLoad) -> tuple[bytes, bytes, bytes]:
    """The request head, the multipart prefix (fields, then the file part's header) and tail."""
    token = secrets.token_urlsafe(32)  # 43 characters: what the double-submit check wants
    boundary = "----slowclient" + secrets.token_hex(8)
    fields = {
        "form_token": token,
        "category": "fraud",
        "description": "A video of what happened.",
        "keep_codename": "no",
    }
    prefix = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        + f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="video.mp4"'
        "\r\nContent-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST {load.path} HTTP/1.1\r\nHost: {load.host}:{load.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(prefix) + load.upload_bytes + len(tail)}\r\n"
        f"Cookie: {FORM_COOKIE}={token}\r\n\r\n"
    ).encode()
    return head, prefix, tail


def _endless_headers(load: SlowLoad) -> bytes:
    """The start of a request whose headers never end: a request line, then header lines."""
    lines = [f"GET / HTTP/1.1\r\nHost: {load.host}:{load.port}\r\n"]
    lines += [f"X-Slow-{n}: {'a' * 40}\r\n" for n in range(90)]
    return "".join(lines).encode()


class _Connection:
    """One slow connection: a writer that paces itself, a reader that notices the server."""

    def __init__(self, fate: Fate, clock: _Clock) -> None:
        self.fate = fate
        self.clock = clock
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.closed = asyncio.Event()

    async def open(self, load: SlowLoad, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(load.host, load.port), load.connect_timeout
                )
            except (OSError, TimeoutError) as error:
                self.fate.error = type(error).__name__
                return
        self.fate.connected = True

    async def watch(self) -> None:
        """Wait for the server to answer or hang up; note when, and its status line."""
        assert self.reader is not None
        received = b""
        try:
            while chunk := await self.reader.read(4096):
                if len(received) < 200:
                    received += chunk
        except OSError:
            pass
        self.fate.closed_at = self.clock.now()
        self.fate.status = received.split(b"\r\n", 1)[0].decode("latin-1") if received else ""
        self.closed.set()

    async def send(self, data: bytes) -> bool:
        """Write and wait for the socket buffer; False once the server has gone."""
        if self.closed.is_set() or self.writer is None:
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError:
            return False
        self.fate.sent += len(data)
        return True

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class _Clock:
    """Seconds since the load was ready (negative during the ramp)."""

    def __init__(self) -> None:
        self.ready = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.ready, 3)


async def _trickle_headers(connection: _Connection, load: SlowLoad, stop: asyncio.Event) -> None:
    data = _endless_headers(load)
    offset = 0
    while offset < len(data) and not stop.is_set():
        if not await connection.send(data[offset : offset + load.header_bytes]):
            return
        offset += load.header_bytes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), load.header_interval)


async def _upload(
    connection: _Connection, load: SlowLoad, rate: int, piece: bytes, stop: asyncio.Event
) -> None:
    head, prefix, tail = _upload_head(load)
    if not await connection.send(head + prefix):
        return
    per_tick = max(1, int(rate * load.tick))
    left = load.upload_bytes
    loop = asyncio.get_running_loop()
    due = loop.time()
    while left and not stop.is_set():
        due += load.tick
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        if stop.is_set():
            return
        size = min(per_tick, left)
        start = secrets.randbelow(len(piece) - size) if len(piece) > size else 0
        if not await connection.send(piece[start : start + size]):
            return
        left -= size
    if not left and await connection.send(tail):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.closed.wait(), 60)
        connection.fate.finished = connection.fate.status.startswith("HTTP/")


async def run_load(
    load: SlowLoad,
    stop: asyncio.Event | None = None,
    on_ready: Any = None,
) -> LoadResult:
    """Open every connection, hold the load ``load.duration`` seconds, close everything.

    ``stop`` ends the hold early; ``on_ready(result_so_far)`` is called once every connection
    has been opened (or has failed to), which is when the hold starts.
    """
    raise_fd_limit()
    stop = stop or asyncio.Event()
    clock = _Clock()
    started = time.monotonic()
    gate = asyncio.Semaphore(load.parallel_connects)
    fates = [Fate("headers", load.header_bytes) for _ in range(load.header_clients)]
    fates += [Fate("upload", rate) for rate in upload_rates(load)]
    connections = [_Connection(fate, clock) for fate in fates]
    piece = os.urandom(256 * 1024)
    result = LoadResult(asdict(load), 0.0, 0.0, fates)
    # Interleave the kinds while opening, so neither gets the first slots of a small server.
    order = sorted(range(len(connections)), key=lambda i: (i % max(1, load.header_clients), i))
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(connections[i].open(load, gate) for i in order))
        clock.ready = time.monotonic()
        result.ready_after = round(clock.ready - started, 3)
        for connection in connections:
            if not connection.fate.connected:
                continue
            tasks.append(asyncio.create_task(connection.watch()))
            if connection.fate.kind == "headers":
                tasks.append(asyncio.create_task(_trickle_headers(connection, load, stop)))
            else:
                work = _upload(connection, load, connection.fate.rate, piece, stop)
                tasks.append(asyncio.create_task(work))
        if on_ready is not None:
            on_ready(result)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), load.duration)
        stop.set()
    finally:
        result.held = round(time.monotonic() - clock.ready, 3)
        for connection in connections:
            connection.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


def hold(load: SlowLoad) -> LoadResult:
    """Run the load in this thread, to the end (for callers that probe from elsewhere)."""
    return asyncio.run(run_load(load))


# ---------------------------------------------------------------------------------------------
# The load in a child process
# ---------------------------------------------------------------------------------------------


class SlowClients:
    """The load in a child process, as a context manager: entered once every connection is open.

    Leaving the block before ``duration`` is up stops the load at once (SIGTERM: the child
    closes its connections and reports); :meth:`result` waits for the end and gives the fates.
    The child is killed if it does not report within ``duration`` plus a margin.
    """

    MARGIN_SECONDS = 60.0

    def __init__(self, load: SlowLoad) -> None:
        self.load = load
        self.ready: dict[str, Any] = {}
        self._process: subprocess.Popen[str] | None = None
        self._result: LoadResult | None = None

    def __enter__(self) -> SlowClients:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(asdict(self.load)))
        self._process.stdin.close()
        self._process.stdin = None  # so that communicate() does not touch it again
        line = self._process.stdout.readline()  # the child's connect timeouts bound this
        if not line:
            self._process.wait()
            raise RuntimeError(
                f"the slow clients exited before starting ({self._process.returncode})"
            )
        self.ready = json.loads(line)
        return self

    def stop(self) -> None:
        """End the hold now; the child still reports what happened."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def result(self) -> LoadResult:
        """Wait for the load to end (``duration`` after entry at most) and return its result."""
        if self._result is None:
            assert self._process is not None
            try:
                out, _ = self._process.communicate(timeout=self.load.duration + self.MARGIN_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                raise
            if self._process.returncode != 0 or not out.strip():
                raise RuntimeError(f"the slow clients failed ({self._process.returncode})")
            self._result = LoadResult.from_json(json.loads(out))
        return self._result

    def __exit__(self, *_: object) -> None:
        if self._process is None:
            return
        self.stop()
        if self._process.poll() is None or self._result is None:
            with contextlib.suppress(Exception):
                self.result()
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def _child() -> None:
    """Read a SlowLoad as JSON on stdin; print a ready line, then the result, as JSON lines."""
    spec = json.loads(sys.stdin.read())
    spec["upload_rate"] = tuple(spec["upload_rate"])
    load = SlowLoad(**spec)

    def ready(result: LoadResult) -> None:
        opened = sum(f.connected for f in result.fates)
        print(
            json.dumps(
                {
                    "connected": opened,
                    "failed": len(result.fates) - opened,
                    "ramp_seconds": result.ready_after,
                }
            ),
            flush=True,
        )

    async def main() -> LoadResult:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await run_load(load, stop, ready)

    result = asyncio.run(main())
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    _child()
