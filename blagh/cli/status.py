"""``blagh status``, and what ``blagh serve`` leaves for it (docs/monitoring.md).

Whether a server runs is asked of its lock (blagh/serverstate.py), never of a pid in a file: a
killed server's state file must not read as "running".  Everything else is read live: the
onion state from tor, the pending items and last pickup day from the store, free disk from the
file system; the last error from the file the workers' housekeeping writes.  Nothing in it
identifies a reporter: counts and days only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from blagh.cli.common import host_port, load_data_dir
from blagh.config import Config
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from blagh.serverstate import (
    LAST_ERROR_FILE,
    STATE_FILE,
    ServerLock,
    read_json,
    running_pid,
    today,
    write_json,
)

EXIT_RUNNING = 0
EXIT_DEGRADED = 4
EXIT_NOT_RUNNING = 3
"""``blagh status`` exit codes: 0 running and healthy, 4 running with a problem (the source
interface not answering, the disk below the floor, an onion service missing from tor), 3 not
running (LSB's code); 1 when status itself fails (a bad config), 2 for a usage error."""


@contextmanager
def serving(directory: DataDir, config: Config, mode: str, host: str, port: int) -> Iterator[None]:
    """Hold the data folder's lock while ``blagh serve`` runs, with its state file written at
    start and removed at stop (by this process only: gunicorn's workers unwind this too)."""
    lock = ServerLock(directory.path)
    lock.acquire()
    owner = os.getpid()
    health = config.source_interface.health_port
    state = {
        "pid": owner,
        "mode": mode,
        "source": f"http://{host_port(host, port)}/",
        "health": f"http://{host_port(host, health)}/health" if health else None,
        "clearnet": config.clearnet.listen if config.clearnet.enabled else None,
        "started_day": today(),
    }
    path = directory.path / STATE_FILE
    write_json(path, state)
    try:
        yield
    finally:
        if os.getpid() == owner:
            with contextlib.suppress(OSError):
                path.unlink()
            lock.release()


def _get(url_host: str, port: int, path: str) -> tuple[int, bytes] | None:
    connection = http.client.HTTPConnection(url_host, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(64 * 1024)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def collect(directory: DataDir, config: Config) -> dict[str, Any]:
    """Everything ``blagh status`` says, as the dictionary ``--json`` prints."""
    from onion.errors import OnionError
    from onion.service import describe, read_status
    from source_interface.diskspace import FreeSpace

    pid = running_pid(directory.path)
    state = read_json(directory.path / STATE_FILE) if pid else None
    state = state or {}
    site = config.source_interface
    host, port = site.listen_host, site.listen_port
    source_url = state.get("source") or f"http://{host_port(host, port)}/"
    where = source_url.removeprefix("http://").rstrip("/")
    host, _, number = where.rpartition(":")
    answer = _get(host.strip("[]"), int(number), "/")
    report: dict[str, Any] = {
        "running": pid is not None,
        "pid": pid if pid and pid > 0 else None,
        "started_day": state.get("started_day"),
        "source": {
            "url": source_url,
            "answering": answer is not None and answer[0] < 500,
            "http_status": answer[0] if answer else None,
        },
        "tor_mode": state.get("mode") if pid else None,
        "configured_tor_mode": config.tor.mode,
        "problems": [],
    }
    health_url = state.get("health")
    if health_url:
        hwhere = health_url.removeprefix("http://").removesuffix("/health")
        hhost, _, hport = hwhere.rpartition(":")
        reply = _get(hhost.strip("[]"), int(hport), "/health")
        report["health"] = {"url": health_url, "http_status": reply[0] if reply else None}
    mode = report["tor_mode"]
    if pid and mode and mode != "off":
        try:
            onion = read_status(directory)
            lines = describe(config.tor, directory, onion)
        except OnionError as error:
            lines = [("tor state", str(error))]
            onion = None
        report["onion"] = {label: text for label, text in lines}
        if onion is not None:
            report["pow"] = {"enabled": onion.pow.enabled, "describe": onion.pow.describe()}
        if any("missing from tor" in text or "not reachable" in text for _, text in lines):
            report["problems"].append("an onion service or tor is not answering")
    else:
        report["pow"] = {
            "enabled": False,
            "describe": "off: no onion service" if pid else "off: blagh serve is not running",
        }
    space = FreeSpace(directory.path, config.limits.free_space_floor_mb * 1024 * 1024)
    if not (directory.path / "store" / "index.db").exists():
        # Never served: say so rather than create a store just to count nothing in it.
        report["store"] = {"error": "none yet: blagh serve has never run on this folder"}
    else:
        _add_store(report, directory, space)
    report["last_error"] = read_json(directory.path / LAST_ERROR_FILE)
    if pid and not report["source"]["answering"]:
        report["problems"].append("the source interface is not answering")
    return report


def _add_store(report: dict[str, Any], directory: DataDir, space: Any) -> None:
    from source_interface.app import open_store
    from source_interface.health import snapshot

    try:
        store = open_store(directory)
    except BlaghError as error:
        report["store"] = {"error": str(error)}
        report["problems"].append("the store cannot be opened")
    else:
        try:
            report["store"] = snapshot(store, space)
        finally:
            store.close()
        if not report["store"]["disk_ok"]:
            report["problems"].append("free disk space is below [limits] free_space_floor_mb")


def _lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    if report["running"]:
        since = f" since {report['started_day']}" if report["started_day"] else ""
        who = f"process {report['pid']}" if report["pid"] else "another user's process"
        served = f"running ({who}){since}"
    else:
        served = "not running"
    source = report["source"]
    answering = "answering" if source["answering"] else "not answering"
    if source["http_status"] and not source["answering"]:
        answering = f"answering with errors (HTTP {source['http_status']})"
    lines = [("blagh serve", served), ("source", f"{source['url']}, {answering}")]
    if "health" in report:
        code = report["health"]["http_status"]
        lines.append(("health", f"{report['health']['url']}, {code or 'not answering'}"))
    mode = report["tor_mode"] or f"{report['configured_tor_mode']} (configured)"
    lines.append(("tor mode", mode))
    lines += list(report.get("onion", {}).items())
    if "onion" not in report:
        lines.append(("proof-of-work", report["pow"]["describe"]))
    store = report["store"]
    if "error" in store:
        lines.append(("store", store["error"]))
    else:
        lines.append(("pending items", f"{store['pending_items']} for the workstation"))
        lines.append(("last pickup", store["last_pickup_day"] or "none acknowledged yet"))
        floor = "above" if store["disk_ok"] else "BELOW"
        lines.append(
            (
                "free disk",
                f"{store['disk_free_mb']} MiB, {floor} the floor of {store['disk_floor_mb']} MiB",
            )
        )
    error = report["last_error"]
    if error:
        lines.append(("last error", f"{error.get('day')}: {error.get('message')}"))
    else:
        lines.append(("last error", "none"))
    for problem in report["problems"]:
        lines.append(("problem", problem))
    return lines


@click.command(short_help="Say whether blagh serve runs, and how it is doing.")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The data directory made by `blagh init`; its config.toml is used.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")
@click.pass_context
def status(ctx: click.Context, data_dir: Path, as_json: bool) -> None:
    """Say whether `blagh serve` runs on DIR (whatever its tor mode), whether the source
    interface answers, the state of tor and the onion services (addresses, proof-of-work,
    pickup clients), the items waiting for the workstation, the last day it acknowledged any,
    free disk against [limits] free_space_floor_mb, and the last error the server logged.

    \b
    Exit status:
      0  running, nothing wrong
      4  running, with a problem (listed on the "problem" lines)
      3  not running
      1  status could not be read (the message says why); 2 a usage error
    """

    directory, config = load_data_dir(data_dir)
    report = collect(directory, config)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        lines = _lines(report)
        width = max(len(label) for label, _ in lines) + 1
        for label, text in lines:
            click.echo(f"{label + ':':<{width}} {text}")
    if not report["running"]:
        ctx.exit(EXIT_NOT_RUNNING)
    if report["problems"]:
        ctx.exit(EXIT_DEGRADED)
    ctx.exit(EXIT_RUNNING)
