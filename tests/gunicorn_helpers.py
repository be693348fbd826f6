"""A real ``blagh serve`` (gunicorn) for tests: a data folder, the process, a small client.

Shared by the gunicorn tests (tests/test_source_gunicorn.py) and the availability tests
(tests/test_availability.py).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest
from form_browser import FormBrowser, Reply, Upload

from blagh.config import read_config_file
from blagh.datadir import DataDir
from crypto.keys import AnalystKey

BLAGH = Path(sys.executable).with_name("blagh")
HOST = "127.0.0.1"
START_SECONDS = 30.0


def make_data_dir(
    path: Path, analyst: AnalystKey, workers: int, limits: dict[str, int] | None = None
) -> DataDir:
    """A data folder made by ``blagh init``, its config set to ``workers`` gunicorn workers
    and the given ``[limits]`` settings."""
    line = analyst.public().to_line()
    subprocess.run(
        [BLAGH, "init", "--data-dir", path, "--analyst-key-line", line],
        check=True,
        capture_output=True,
    )
    data_dir = DataDir(path)
    config = data_dir.config_file.read_text("utf-8")
    config, count = re.subn(r"(?m)^workers = \d+$", f"workers = {workers}", config)
    assert count == 1
    for name, value in (limits or {}).items():
        config, count = re.subn(rf"(?m)^{name} = \d+$", f"{name} = {value}", config)
        assert count == 1, name
    data_dir.config_file.write_text(config, "utf-8")
    return data_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Gunicorn:
    """``blagh serve`` as a child process, its output in a file, its temp and home folders
    pointed at dedicated folders (so that they can be scanned)."""

    def __init__(self, data_dir: DataDir, work: Path, workers: int) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.tmp = work / "gunicorn-tmp"
        self.home = work / "gunicorn-home"
        self.cwd = work / "gunicorn-cwd"
        self.log_path = work / "gunicorn.log"
        for folder in (self.tmp, self.home, self.cwd):
            folder.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.shared_writer = read_config_file(data_dir.config_file).store.backend != "postgresql"
        """Whether the server runs a shared writer (not with the PostgreSQL backend)."""
        self.port = 0
        self._started: list[psutil.Process] = []
        self._writers: set[int] = set()

    def start(self) -> None:
        assert self.proc is None
        self.port = free_port()
        env = dict(os.environ, TMPDIR=str(self.tmp), HOME=str(self.home))
        env.pop("XDG_RUNTIME_DIR", None)
        where = ["--data-dir", str(self.data_dir.path), "--host", HOST, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [BLAGH, "serve", *where, "--tor", "off"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
            )
        self._started.append(psutil.Process(self.proc.pid))
        self.wait_ready(set())

    @property
    def master(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def worker_pids(self) -> set[int]:
        """The live gunicorn workers: the master's children forked from it (same executable),
        but for the index's shared writer."""
        master = self.master
        forked = {child for child in master.children() if _exe(child) == master.exe()}
        return {child.pid for child in forked if not _is_writer(child, self.writer_socket)}

    @property
    def writer_socket(self) -> str:
        return str(self.data_dir.path / "store" / "writer.sock")

    def writer_pid(self) -> int | None:
        """The index's shared writer (source_interface/writer_arbiter.py): the master's child
        that holds the writer's socket."""
        for child in self.master.children():
            if _is_writer(child, self.writer_socket):
                return child.pid
        return None

    def wait_ready(self, not_these: set[int]) -> set[int]:
        """Poll until all workers are up (none of ``not_these``) and ``GET /`` answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"blagh serve exited ({self.proc.returncode}):\n{self.log()}")
            pids = self.worker_pids()
            writer = self.writer_pid()
            if (
                len(pids) == self.workers
                and not pids & not_these
                and (writer is not None or not self.shared_writer)
                and writer not in not_these
                and self._answers()
            ):
                self._started.extend(psutil.Process(pid) for pid in pids)
                if writer is not None:
                    self._writers.add(writer)
                return pids
            if time.monotonic() > deadline:
                pytest.fail(f"blagh serve not ready in {START_SECONDS} s:\n{self.log()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return Browser(self.port).get("/").status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the master and wait; SIGKILL whatever this fixture started that lingers."""
        writer = self.writer_pid() if self.proc is not None else None
        if writer is not None:
            self._writers.add(writer)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        outlived = [pid for pid in self._writers if running(pid)]
        for pid in outlived:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        self._writers.clear()
        assert not outlived, "the master left its shared writer running"
        assert not Path(self.writer_socket).exists(), "the master left the writer's socket"
        for process in self._started:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    process.kill()
            except psutil.NoSuchProcess:
                pass
        self._started.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited; a reparented one waits for its reaper)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_writer(process: psutil.Process, socket_path: str) -> bool:
    try:
        return any(c.laddr == socket_path for c in process.net_connections("unix"))
    except psutil.Error:
        return False


def _exe(process: psutil.Process) -> str | None:
    """The process's executable; None once it has exited (or is a zombie)."""
    try:
        exe: str = process.exe()
        return exe
    except psutil.Error:
        return None


class Browser(FormBrowser):
    """One visitor: keeps cookies, sends one request per connection, follows nothing."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers)
        self.port = port

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=60)


def report_fields(token: str, description: str, **more: str) -> list[tuple[str, str]]:
    fields = {"form_token": token, "category": "fraud", "description": description}
    fields |= more
    return list(fields.items())


def submit_report(
    browser: Browser, description: str, files: Sequence[Upload] = (), **more: str
) -> Reply:
    token = browser.token("/report")
    return browser.post("/report", report_fields(token, description, **more), files)
