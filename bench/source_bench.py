"""The source interface's figures, through a real gunicorn (``blagh serve``) on loopback.

Run by ``bench/bench.py`` (``make bench``), or on its own: ``.venv/bin/python
bench/source_bench.py``.  It starts ``blagh serve`` on a fresh data folder (the default config
but for a 1,100 MiB upload limit) and measures:

1. reports per second: a 1 KB report, no files, no codename kept (so no argon2id), REPORTS
   requests from CLIENTS threads, each on its own keep-alive connection; p50 and p99 latency;
2. the peak resident memory of any worker while one 1 GiB upload streams in (the body is
   generated on the fly, 1 MiB at a time; workers' RSS is polled with psutil);
3. the weight of the landing and report pages, HTML plus the CSS and images they reference,
   in the heaviest of their languages, and how many requests they would make to other hosts.

It prints one table, with the goal beside each figure.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import ClassVar
from urllib.parse import urljoin, urlsplit

import psutil

from blagh.config import read_config_file
from blagh.datadir import DataDir
from crypto.keys import generate_analyst_key

HOST = "127.0.0.1"
BLAGH = Path(sys.executable).with_name("blagh")
KB, MB, MIB, GIB = 10**3, 10**6, 1 << 20, 1 << 30

REPORTS = 300
"""Timed report submissions (after WARMUP untimed ones)."""
WARMUP = 20
CLIENTS = 6
"""Client threads, each with its own keep-alive connection."""
DESCRIPTION_BYTES = 1 * KB

UPLOAD_BYTES = 1 * GIB
UPLOAD_LIMIT_MIB = 1100
"""max_upload_mb for the bench: the 1 GiB file plus its multipart framing must fit."""
RSS_POLL_SECONDS = 0.02

GOAL_WORKER_RSS = 100 * MB
GOAL_PAGE_BYTES = 30 * KB
PAGES = (("landing page", "/"), ("report page", "/report"))
LANGUAGES = ("ar", "fr", "en", "es")

START_SECONDS = 30.0


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(
    work: Path, store_dsn: str | None = None, data_dir: DataDir | None = None
) -> Iterator[tuple[int, psutil.Process]]:
    """``blagh serve`` on a fresh data folder; yields its port and master process.  With
    ``store_dsn``, on the PostgreSQL store of that database (bench/store_backend_bench.py); with
    ``data_dir``, on that folder as it is (a second server sharing the first one's keys)."""
    if data_dir is None:
        data_dir = DataDir(work / "data")
        data_dir.create([generate_analyst_key().public()])
        config = data_dir.config_file.read_text("utf-8")
        config, count = re.subn(
            r"(?m)^max_upload_mb = \d+$", f"max_upload_mb = {UPLOAD_LIMIT_MIB}", config
        )
        assert count == 1, "config.toml has no max_upload_mb line"
        if store_dsn is not None:
            config = config.replace('backend = "sqlcipher"', 'backend = "postgresql"', 1)
            config = config.replace('dsn = ""', f'dsn = "{store_dsn}"', 1)
        data_dir.config_file.write_text(config, "utf-8")
    workers = read_config_file(data_dir.config_file).source_interface.workers
    port = free_port()
    where = ["--data-dir", str(data_dir.path), "--host", HOST, "--port", str(port)]
    command = [str(BLAGH), "serve", *where, "--tor", "off"]
    log = work / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    master = psutil.Process(proc.pid)
    started = [master]
    try:
        deadline = time.monotonic() + START_SECONDS
        while len(worker_pids(master)) < workers or not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"blagh serve did not start:\n{log.read_text()}")
            time.sleep(0.05)
        started += master.children()
        yield port, master
    finally:
        if proc.poll() is None:
            started += master.children()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for process in started:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def _answers(port: int) -> bool:
    try:
        return Client(port).get("/")[0] == 200
    except OSError:
        return False


def worker_pids(master: psutil.Process) -> list[int]:
    """The master's children that are gunicorn workers (forked: same executable), but for the
    index's shared writer (source_interface/writer_arbiter.py)."""
    workers = []
    for child in master.children():
        with suppress(psutil.Error):  # exited meanwhile
            if child.exe() == master.exe() and not is_shared_writer(child):
                workers.append(child.pid)
    return workers


def is_shared_writer(process: psutil.Process) -> bool:
    """Whether ``process`` is a ``blagh serve``'s shared writer: it holds ``writer.sock``."""
    with suppress(psutil.Error):
        return any(
            isinstance(c.laddr, str) and c.laddr.endswith("/writer.sock")
            for c in process.net_connections("unix")
        )
    return False


def shared_writer(master: psutil.Process) -> psutil.Process | None:
    for child in master.children():
        if is_shared_writer(child):
            return child
    return None


# ---------------------------------------------------------------------------------------------
# A keep-alive HTTP client that keeps cookies
# ---------------------------------------------------------------------------------------------


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection(HOST, port, timeout=120)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if content_type:
            headers["Content-Type"] = content_type
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.connection.close()  # the server closed an idle keep-alive: once more
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        data = response.read()
        for line in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        return response.status, data, response.headers

    def get(self, path: str) -> tuple[int, bytes, http.client.HTTPMessage]:
        return self.request("GET", path)

    def form_token(self) -> str:
        status, page, _ = self.get("/report")
        found = re.search(rb'name="form_token" value="([^"]+)"', page)
        assert status == 200 and found, status
        return found.group(1).decode()


def multipart(fields: dict[str, str]) -> tuple[str, bytes]:
    boundary = "----blaghbench" + secrets.token_hex(8)
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def report_fields(token: str) -> dict[str, str]:
    words = secrets.token_hex(DESCRIPTION_BYTES)[:DESCRIPTION_BYTES]
    description = " ".join(words[i : i + 9] for i in range(0, DESCRIPTION_BYTES, 10))
    return {
        "form_token": token,
        "category": "fraud",
        "description": description,
        "keep_codename": "no",
    }


# ---------------------------------------------------------------------------------------------
# 1. Reports per second
# ---------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def bench_reports(port: int | Sequence[int]) -> Throughput:
    """REPORTS submissions shared among CLIENTS threads, after WARMUP untimed ones.  Given
    several ports, the clients are split evenly among them (a local load split)."""
    ports = [port] if isinstance(port, int) else list(port)
    clients = [Client(ports[i % len(ports)]) for i in range(CLIENTS)]
    tokens = [client.form_token() for client in clients]
    for i in range(WARMUP):
        content_type, body = multipart(report_fields(tokens[i % CLIENTS]))
        clients[i % CLIENTS].request("POST", "/report", body, content_type)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    quota = [REPORTS // CLIENTS + (1 if i < REPORTS % CLIENTS else 0) for i in range(CLIENTS)]

    def run(index: int) -> None:
        nonlocal errors
        client, token = clients[index], tokens[index]
        for _ in range(quota[index]):
            content_type, body = multipart(report_fields(token))
            started = time.perf_counter()
            status, _, headers = client.request("POST", "/report", body, content_type)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 303 or headers.get("Location") != "/report/received":
                    errors += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Throughput(len(latencies) / wall, cuts[49] * 1000, cuts[98] * 1000, errors)


# ---------------------------------------------------------------------------------------------
# 2. Worker memory while 1 GiB streams in
# ---------------------------------------------------------------------------------------------


@dataclass
class UploadMemory:
    baseline_rss: int
    peak_rss: int
    rss_at_quarters: list[int]
    sent_seconds: float
    seconds: float
    status: int


class RssPoller:
    """Polls the workers' resident set sizes in a thread; keeps the largest seen."""

    def __init__(self, master: psutil.Process) -> None:
        self.master = master
        self.peak = 0
        self.latest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        largest = 0
        for pid in worker_pids(self.master):
            with suppress(psutil.NoSuchProcess):
                largest = max(largest, psutil.Process(pid).memory_info().rss)
        return largest

    def _run(self) -> None:
        while not self._stop.wait(RSS_POLL_SECONDS):
            self.latest = self.sample()
            self.peak = max(self.peak, self.latest)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_upload(port: int, master: psutil.Process) -> UploadMemory:
    """One report with a 1 GiB file, its body made 1 MiB at a time as it is sent."""
    client = Client(port)
    token = client.form_token()
    boundary = "----blaghbench" + secrets.token_hex(8)
    head = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in report_fields(token).items()
        )
        + f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    piece = os.urandom(MIB)
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    with RssPoller(master) as poller:
        baseline = poller.sample()
        quarters = []
        started = time.perf_counter()
        connection.putrequest("POST", "/report")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(len(head) + UPLOAD_BYTES + len(tail)))
        connection.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in client.cookies.items()))
        connection.endheaders()
        connection.send(head)
        pieces = UPLOAD_BYTES // MIB
        for index in range(pieces):
            connection.send(piece)
            if (index + 1) % (pieces // 4) == 0:
                quarters.append(poller.sample())
        connection.send(tail)
        sent = time.perf_counter() - started
        response = connection.getresponse()
        response.read()
        seconds = time.perf_counter() - started
    connection.close()
    return UploadMemory(baseline, poller.peak, quarters, sent, seconds, response.status)


# ---------------------------------------------------------------------------------------------
# 3. Page weight
# ---------------------------------------------------------------------------------------------


class _Resources(HTMLParser):
    """What a browser would fetch to show a page: stylesheets, images, scripts, frames…"""

    FETCHED: ClassVar[set[tuple[str, str]]] = {
        ("link", "href"),
        ("img", "src"),
        ("script", "src"),
        ("iframe", "src"),
        ("source", "src"),
        ("video", "src"),
        ("audio", "src"),
        ("object", "data"),
        ("embed", "src"),
        ("input", "src"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "link" and (values.get("rel") or "") not in ("stylesheet", "icon", "preload"):
            return
        for element, attribute in self.FETCHED:
            if tag == element and values.get(attribute):
                self.urls.append(str(values[attribute]))
        if values.get("style"):
            self.urls += _css_urls(str(values["style"]))


def _css_urls(css: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", css)
    urls += re.findall(r"@import\s+['\"]([^'\"]+)['\"]", css)
    return [u for u in urls if not u.startswith("data:")]


@dataclass
class PageWeight:
    label: str
    language: str
    html: int
    resources: int
    third_party: list[str]

    @property
    def total(self) -> int:
        return self.html + self.resources


def page_weight(port: int, label: str, path: str, language: str) -> PageWeight:
    """HTML plus every same-origin resource it (and its CSS) references, each fetched once."""
    origin = f"http://{HOST}:{port}"
    client = Client(port)
    client.get(f"/?lang={language}")  # the language picker, as a visitor would use it
    status, html, _ = client.get(f"{path}?lang={language}")
    assert status == 200, (path, status)
    parser = _Resources()
    parser.feed(html.decode("utf-8"))
    queue = [urljoin(origin + path, url) for url in parser.urls]
    seen: set[str] = set()
    third_party: list[str] = []
    resources = 0
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            third_party.append(url)
            continue
        status, body, headers = client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        assert status == 200, (url, status)
        resources += len(body)
        if "css" in headers.get("Content-Type", ""):
            queue += [urljoin(url, u) for u in _css_urls(body.decode("utf-8"))]
    return PageWeight(label, language, len(html), resources, third_party)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def measure() -> list[list[str]]:
    with (
        tempfile.TemporaryDirectory(prefix="blagh-source-bench-") as work,
        running_server(Path(work)) as (port, master),
    ):
        workers = len(worker_pids(master))
        weights = [
            max((page_weight(port, label, path, lang) for lang in LANGUAGES), key=lambda w: w.total)
            for label, path in PAGES
        ]
        rate = bench_reports(port)
        upload = bench_upload(port, master)

    rows = [
        [
            f"reports/s (1 KB, no files; {CLIENTS} clients, {REPORTS} requests, {workers} workers)",
            f"{rate.per_second:,.0f}",
            "(figure)",
            verdict(rate.errors == 0) + (f" ({rate.errors} errors)" if rate.errors else ""),
        ],
        ["  latency p50", f"{rate.p50_ms:,.1f} ms", "(figure)", ""],
        ["  latency p99", f"{rate.p99_ms:,.1f} ms", "(figure)", ""],
        [
            "worker peak RSS, 1 GiB upload streaming",
            f"{upload.peak_rss / MB:,.1f} MB",
            f"< {GOAL_WORKER_RSS / MB:.0f} MB, flat",
            verdict(upload.peak_rss < GOAL_WORKER_RSS and upload.status == 303),
        ],
        [
            "  RSS before / at 25-50-75-100 %",
            f"{upload.baseline_rss / MB:.1f} / "
            + "-".join(f"{q / MB:.1f}" for q in upload.rss_at_quarters)
            + " MB",
            "flat",
            verdict(max(upload.rss_at_quarters) - min(upload.rss_at_quarters) < 10 * MB),
        ],
        [
            "  upload through gunicorn, sealed and fsynced",
            f"{UPLOAD_BYTES / MB / upload.seconds:,.0f} MB/s (HTTP {upload.status}; body sent "
            f"in {upload.sent_seconds:.1f} s, answer {upload.seconds - upload.sent_seconds:.1f} s "
            "later)",
            "(figure)",
            "",
        ],
    ]
    for weight in weights:
        rows.append(
            [
                f"{weight.label} weight (HTML + CSS; heaviest language: {weight.language})",
                f"{weight.total / KB:.1f} KB "
                f"({weight.html / KB:.1f} + {weight.resources / KB:.1f})",
                f"< {GOAL_PAGE_BYTES / KB:.0f} KB",
                verdict(weight.total < GOAL_PAGE_BYTES),
            ]
        )
        rows.append(
            [
                f"  {weight.label} requests to other hosts",
                " ".join([str(len(weight.third_party)), *weight.third_party]),
                "0",
                verdict(not weight.third_party),
            ]
        )
    return rows


def main(echo: Callable[[str], None] = print) -> None:
    """Measure, then print the table (KB = 10^3 bytes, MB = 10^6 bytes)."""
    started = time.perf_counter()
    rows = measure()
    echo("Source interface through gunicorn on loopback (KB = 10^3 B, MB = 10^6 B)\n")
    echo(table(["figure", "value", "goal", "verdict"], rows))
    echo(f"\n(source interface benchmark ran in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
