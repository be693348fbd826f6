"""`blagh status` and the health check against a real `blagh serve --tor off` (issue 13):
up or down told by the data folder's lock (a killed server reads as down), one server per data
folder, the health listener on its own loopback port only, `--json`, exit codes."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from gunicorn_helpers import BLAGH, HOST, Browser, Gunicorn, free_port, make_data_dir, submit_report

from blagh.datadir import DataDir
from blagh.serverstate import LAST_ERROR_FILE, STATE_FILE, LastError
from crypto.keys import AnalystKey, generate_analyst_key


def blagh(*args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [BLAGH, *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )


def set_health_port(data_dir: DataDir, port: int) -> None:
    config = data_dir.config_file.read_text("utf-8")
    config, count = re.subn(r"(?m)^# health_port = \d+$", f"health_port = {port}", config)
    assert count == 1
    data_dir.config_file.write_text(config, "utf-8")


@pytest.fixture(scope="module")
def analyst() -> AnalystKey:
    return generate_analyst_key()


@pytest.fixture
def served(tmp_path: Path, analyst: AnalystKey) -> Iterator[tuple[Gunicorn, int]]:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    health = free_port()
    set_health_port(data_dir, health)
    server = Gunicorn(data_dir, tmp_path, workers=1)
    try:
        server.start()
        yield server, health
    finally:
        server.stop()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_status_tells_the_truth_with_tor_off(served: tuple[Gunicorn, int]) -> None:
    server, health = served
    data = server.data_dir.path
    assert submit_report(Browser(server.port), "one report").status == 303
    result = blagh("status", "--data-dir", data)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["blagh serve"].strip().startswith(f"running (process {server.proc.pid}) since ")
    assert lines["source"].strip() == f"http://127.0.0.1:{server.port}/, answering"
    assert lines["tor mode"].strip() == "off"
    assert lines["proof-of-work"].strip() == "off: no onion service"
    assert lines["pending items"].strip() == "1 for the workstation"
    assert lines["last pickup"].strip() == "none acknowledged yet"
    assert "MiB, above the floor of 2048 MiB" in lines["free disk"]
    assert lines["last error"].strip() == "none"

    result = blagh("status", "--data-dir", data, "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["running"] is True and report["pid"] == server.proc.pid
    assert report["tor_mode"] == "off" and report["configured_tor_mode"] == "launch"
    assert report["store"]["pending_items"] == 1
    assert report["health"] == {"url": f"http://127.0.0.1:{health}/health", "http_status": 200}
    assert report["problems"] == []
    # Days only: nothing finer than a day about anything.
    assert not re.search(r"\d\d:\d\d", result.stdout)
    state = data / STATE_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_health_only_on_its_own_loopback_port(served: tuple[Gunicorn, int]) -> None:
    server, health = served
    code, body = get(health, "/health")
    assert code == 200
    report = json.loads(body)
    assert report["ok"] is True and report["pending_items"] == 0
    assert report["writes_ok"] is True  # a write went through the shared writer
    assert report["disk_floor_mb"] == 2048
    # Not through the onion (or clearnet) listener: an ordinary 404 there.
    assert get(server.port, "/health")[0] == 404
    # And the health port serves nothing of the app.
    assert get(health, "/")[0] == 404


def test_a_second_serve_on_the_same_folder_is_refused(
    served: tuple[Gunicorn, int], tmp_path: Path
) -> None:
    server, _ = served
    for mode in ("off", "offline", "launch"):
        result = blagh(
            "serve", "--data-dir", server.data_dir.path, "--port", free_port(), "--tor", mode
        )
        assert result.returncode == 1
        assert result.stderr == (
            f"blagh: error: another blagh serve is already running on {server.data_dir.path} "
            f"(process {server.proc.pid}): one data folder serves one server. Stop it first "
            "(systemctl stop, or Ctrl-C), or see `blagh status`\n"
        )
    assert Browser(server.port).get("/").status == 200


def test_a_killed_server_reads_as_down(tmp_path: Path, analyst: AnalystKey) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    server = Gunicorn(data_dir, tmp_path, workers=1)
    server.start()
    try:
        processes = [server.master, *(psutil.Process(p) for p in server.worker_pids())]
        for process in processes:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=30)
        assert (data_dir.path / STATE_FILE).exists()  # left behind by the killed server
        result = blagh("status", "--data-dir", data_dir.path)
        assert result.returncode == 3, result.stdout + result.stderr
        assert result.stdout.splitlines()[0] == "blagh serve:   not running"
        assert "tor mode:      launch (configured)" in result.stdout
        # And a new server starts on the folder at once.
        server.proc = None
        server.start()
        assert blagh("status", "--data-dir", data_dir.path).returncode == 0
    finally:
        server.stop()


def test_last_error_is_shown_with_a_day_only(tmp_path: Path, analyst: AnalystKey) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    handler = LastError()
    logger = logging.getLogger("source_interface.test_status")
    logger.addHandler(handler)
    try:
        logger.error("the blob folder is not writable (%s)", "EACCES")
    finally:
        logger.removeHandler(handler)
    handler.flush_to(data_dir.path)
    written = data_dir.path / LAST_ERROR_FILE
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert set(json.loads(written.read_text())) == {"day", "logger", "message"}
    result = blagh("status", "--data-dir", data_dir.path)
    assert result.returncode == 3
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("last error:")]
    assert re.fullmatch(
        r"last error:    \d{4}-\d\d-\d\d: the blob folder is not writable \(EACCES\)", line
    )


def test_below_the_disk_floor_is_a_problem(tmp_path: Path, analyst: AnalystKey) -> None:
    """Running with a problem: exit status 4, a "problem" line, the health check 503."""
    data_dir = make_data_dir(
        tmp_path / "data", analyst, workers=1, limits={"free_space_floor_mb": 1024 * 1024}
    )
    health = free_port()
    set_health_port(data_dir, health)
    server = Gunicorn(data_dir, tmp_path, workers=1)
    server.start()
    try:
        result = blagh("status", "--data-dir", data_dir.path)
        assert result.returncode == 4, result.stdout + result.stderr
        assert "BELOW the floor of 1048576 MiB" in result.stdout
        assert "problem:       free disk space is below [limits] free_space_floor_mb" in (
            result.stdout
        )
        code, body = get(health, "/health")
        assert code == 503 and json.loads(body)["disk_ok"] is False
    finally:
        server.stop()


def test_status_of_a_folder_never_served_creates_nothing(
    tmp_path: Path, analyst: AnalystKey
) -> None:
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    before = sorted(p.name for p in data_dir.path.iterdir())
    result = blagh("status", "--data-dir", data_dir.path, "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["running"] is False and report["tor_mode"] is None
    assert report["store"] == {"error": "none yet: blagh serve has never run on this folder"}
    assert sorted(p.name for p in data_dir.path.iterdir()) == before
