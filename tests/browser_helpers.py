"""Real-browser test set-up: ``blagh serve`` under gunicorn on loopback, and Debian's Chromium.

A plain module, not a conftest: tests/test_browser*.py import what they need.  Everything is
real: a data folder made by ``blagh init``, gunicorn started by ``blagh serve --tor off``, a
SQLCipher store read back the way the workstation would (the analyst's key opens what arrived),
and Chromium driven by Playwright's sync API.  Playwright cannot download its own browsers
here: it drives ``/usr/bin/chromium`` (the ``chromium`` Debian package, installed by ``make``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Protocol

from gunicorn_helpers import free_port
from playwright.sync_api import Error as PlaywrightError

from blagh.datadir import DataDir
from blagh.payloads import decode_document, split_attachment
from crypto.envelope import open_envelope
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.app import open_store
from source_interface.store import Report, Store

ROOT = Path(__file__).resolve().parents[1]
BLAGH = Path(sys.executable).with_name("blagh")
CHROMIUM = Path("/usr/bin/chromium")
HOST = "127.0.0.1"
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VENDOR = ROOT / "source_interface" / "static" / "vendor"

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
NO_WASM = "--js-flags=--jitless"
"""Chromium without the WebAssembly object, as Tor Browser's Safer level has it.  V8's
``--noexpose_wasm`` no longer hides it in Chromium 156 (``typeof WebAssembly`` stays
"object"); ``--jitless`` does, since WebAssembly needs a compiler.  Tests check it is gone."""

START_SECONDS = 30.0


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None; they fail (not skip) on it."""
    if not CHROMIUM.exists():
        return "Chromium is missing: `apt-get install chromium` (make test does it)."
    if not (VENDOR / "libsodium-sumo.mjs").is_file():
        return "libsodium.js is not in the static folder: run `make install` (it copies it)."
    if not AXE.is_file():
        return "node_modules/axe-core is missing: run `npm ci` (make test does it)."
    return None


def make_data_dir(path: Path, analyst: AnalystKey, workers: int = 2) -> DataDir:
    """A data folder made by ``blagh init``: English by default, ``workers`` gunicorn workers."""
    subprocess.run(
        [BLAGH, "init", "--data-dir", path, "--analyst-key-line", analyst.public().to_line()],
        check=True,
        capture_output=True,
    )
    data_dir = DataDir(path)
    config = data_dir.config_file.read_text("utf-8")
    config, count = re.subn(r"(?m)^workers = \d+$", f"workers = {workers}", config)
    config, count2 = re.subn(r'(?m)^default_language = "ar"$', 'default_language = "en"', config)
    assert count == 1 and count2 == 1
    data_dir.config_file.write_text(config, "utf-8")
    return data_dir


class Server:
    """``blagh serve`` (gunicorn) on a free loopback port; output kept in a log file."""

    def __init__(self, data_dir: DataDir, work: Path) -> None:
        self.data_dir = data_dir
        self.log_path = work / "gunicorn.log"
        self.tmp = work / "gunicorn-tmp"
        self.tmp.mkdir(exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        where = ["--data-dir", str(self.data_dir.path), "--host", HOST, "--port", str(self.port)]
        env = dict(os.environ, TMPDIR=str(self.tmp))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [BLAGH, "serve", *where, "--tor", "off"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"blagh serve exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"blagh serve not ready in {START_SECONDS} s:\n{self.log()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            connection = HTTPConnection(HOST, self.port, timeout=2)
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@dataclass
class Site:
    """One running source interface, and the analyst who reads what it stores."""

    data_dir: DataDir
    analyst: AnalystKey
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """The server's store, opened beside the running workers (SQLCipher in WAL mode)."""
        store = open_store(self.data_dir)
        try:
            yield store
        finally:
            store.close()

    def report_ids(self) -> set[str]:
        with self.store() as store:
            rows = store.index._db.execute("SELECT id FROM reports").fetchall()
        return {row[0] for row in rows}

    def new_report(self, before: set[str]) -> Report:
        """The one report stored since ``before`` was taken."""
        with self.store() as store:
            rows = store.index._db.execute("SELECT id, source_id FROM reports").fetchall()
            new = [(rid, sid) for rid, sid in rows if rid not in before]
            assert len(new) == 1, f"expected one new report, found {len(new)}"
            report = store.index.report(new[0][1], new[0][0])
            assert report is not None
            return report

    def open_report(self, report: Report) -> OpenedReport:
        """What the workstation reads from a report: its fields and its files, by name."""
        identity = [self.analyst.encryption_secret]
        opened = OpenedReport(report)
        with self.store() as store:
            for item in report.items:
                plaintext = open_envelope(store.read_blob(item.blob), identity)
                if item.kind == "fields":
                    opened.fields = decode_document(plaintext, "report")
                elif item.kind == "file":
                    description, data = split_attachment(plaintext)
                    opened.files[description["name"]] = (description["type"], data)
                elif item.kind in ("message", "reply"):
                    opened.messages.append(decode_document(plaintext, item.kind))
        return opened


@contextlib.contextmanager
def running_site(prefix: str) -> Iterator[Site]:
    """``blagh serve`` on a fresh data folder with one new analyst: a test module's site."""
    analyst = generate_analyst_key()
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        data_dir = make_data_dir(Path(work) / "data", analyst)
        server = Server(data_dir, Path(work))
        server.start()
        try:
            yield Site(data_dir, analyst, server)
        finally:
            server.stop()


@dataclass
class OpenedReport:
    report: Report
    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)


class RequestLog:
    """Every request a page makes: method, URL and body, for scanning after the fact."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []

    def attach(self, page: Any) -> None:
        page.on("request", self._record)

    def _record(self, request: Any) -> None:
        body = request.post_data_buffer or b""
        self.requests.append((request.method, request.url, body))
        self.headers.append(request.headers)

    def containing(self, needles: Sequence[bytes]) -> list[tuple[str, str, bytes]]:
        """Requests whose URL or body holds any of ``needles``."""
        return [
            entry
            for entry in self.requests
            if any(n in entry[2] or n in entry[1].encode() for n in needles)
        ]


def launch(playwright: Any, *extra_args: str) -> Any:
    """Debian's Chromium, headless, offline-friendly."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], headless=True
    )


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class Tab(Protocol):
    """What a scenario does in a page, the same in Chromium (:class:`ChromiumTab`) and in
    Firefox (firefox_helpers.FirefoxTab): CSS selectors, paths relative to the site."""

    name: str

    @property
    def javascript(self) -> bool: ...
    @property
    def url(self) -> str: ...
    def goto(self, path: str) -> None: ...
    def fill(self, css: str, text: str) -> None: ...
    def check(self, css: str) -> None: ...
    def select(self, css: str, value: str) -> None: ...
    def click(self, css: str) -> None: ...
    def press(self, css: str) -> None: ...
    def set_files(self, css: str, files: Sequence[dict[str, Any]]) -> None: ...
    def wait_for_url(self, pattern: str, timeout: float = 60.0) -> None: ...
    def wait_visible(self, css: str, timeout: float = 60.0) -> None: ...
    def wait_attached(self, css: str, timeout: float = 60.0) -> None: ...
    def count(self, css: str) -> int: ...
    def text(self, css: str) -> str: ...
    def value(self, css: str) -> str: ...
    def attribute(self, css: str, name: str) -> str | None: ...
    def is_visible(self, css: str) -> bool: ...
    def back(self) -> None: ...


class ChromiumTab:
    """:class:`Tab` over a Playwright page (its context made with the site's ``base_url``)."""

    name = "chromium"

    def __init__(self, page: Any, javascript: bool = True) -> None:
        self.page = page
        self._javascript = javascript
        self._pressed_at: dict[str, tuple[float, float]] = {}

    @property
    def javascript(self) -> bool:
        return self._javascript

    @property
    def url(self) -> str:
        return str(self.page.url)

    def goto(self, path: str) -> None:
        self.page.goto(path)

    def fill(self, css: str, text: str) -> None:
        self.page.fill(css, text)

    def check(self, css: str) -> None:
        self.page.check(css)

    def select(self, css: str, value: str) -> None:
        self.page.select_option(css, value)

    def click(self, css: str) -> None:
        self.page.click(css)

    def press(self, css: str) -> None:
        """A click that waits for nothing: the mouse, pressed over the element.  (Playwright's
        own click waits for a navigation under way to finish first, and so does finding an
        element: where it was is remembered from the first press.)"""
        if css not in self._pressed_at:
            element = self.page.locator(css).first
            element.scroll_into_view_if_needed()
            box = element.bounding_box()
            assert box is not None, css
            self._pressed_at[css] = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        self.page.mouse.click(*self._pressed_at[css])

    def set_files(self, css: str, files: Sequence[dict[str, Any]]) -> None:
        self.page.set_input_files(css, list(files))

    def wait_for_url(self, pattern: str, timeout: float = 60.0) -> None:
        """Playwright's wait, which gives up on a navigation the page dropped for another
        (a form sent again): the wait then goes on for the one that replaced it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.page.wait_for_url(
                    pattern, timeout=max(1.0, deadline - time.monotonic()) * 1000
                )
                return
            except PlaywrightError as error:
                if "ERR_ABORTED" not in str(error) or time.monotonic() > deadline:
                    raise

    def wait_visible(self, css: str, timeout: float = 60.0) -> None:
        self.page.locator(css).first.wait_for(state="visible", timeout=timeout * 1000)

    def wait_attached(self, css: str, timeout: float = 60.0) -> None:
        self.page.locator(css).first.wait_for(state="attached", timeout=timeout * 1000)

    def count(self, css: str) -> int:
        return int(self.page.locator(css).count())

    def text(self, css: str) -> str:
        return str(self.page.locator(css).first.inner_text()).strip()

    def value(self, css: str) -> str:
        return str(self.page.locator(css).first.input_value())

    def attribute(self, css: str, name: str) -> str | None:
        found = self.page.locator(css).first.get_attribute(name)
        return None if found is None else str(found)

    def is_visible(self, css: str) -> bool:
        return bool(self.page.locator(css).first.is_visible())

    def back(self) -> None:
        self.page.go_back()
