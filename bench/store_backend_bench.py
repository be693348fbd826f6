"""No-JS 1 KB reports per second and p99, on the SQLCipher store, on the PostgreSQL store, and
on two servers sharing one PostgreSQL store behind a local load split, in the same run (issue 16).

Run on its own: ``scripts/offline.sh .venv/bin/python bench/store_backend_bench.py``.  Each
backend gets a fresh ``blagh serve`` (the default config: its workers) measured exactly as
bench/source_bench.py measures reports; PostgreSQL is a throw-away cluster made like the
tests' (tests/postgres_helpers.py), with fsync and synchronous_commit on, on a unix socket.
The two servers are two ``blagh serve`` processes on copies of one data folder (the same keys,
as two machines behind Onionbalance would have), the clients split evenly between them: on one
2-core machine they share the CPU, so this shows the cost of the split, not a second machine's
capacity.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from postgres_helpers import cluster
from source_bench import Throughput, bench_reports, running_server, table

from blagh.datadir import DataDir


def main(echo: Callable[[str], None] = print) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="blagh-store-bench-") as folder, cluster() as pg:
        work = Path(folder)
        for label, dsn in (
            ("SQLCipher + files", None),
            ("PostgreSQL", pg.new_database("b" + secrets.token_hex(6))),
        ):
            here = work / label.split()[0].lower()
            here.mkdir()
            with running_server(here, dsn) as (port, _master):
                result = bench_reports(port)
            rows.append(_row(label, result))
        dsn = pg.new_database("b" + secrets.token_hex(6))
        first, second = work / "pair-a", work / "pair-b"
        first.mkdir()
        second.mkdir()
        with running_server(first, dsn) as (port_a, _master_a):
            # The keys and config, not the local in-flight folders or the first server's lock.
            shutil.copytree(
                first / "data",
                second / "data",
                ignore=shutil.ignore_patterns("store", "uploads", "serve.lock", "*.json"),
            )
            with running_server(second, data_dir=DataDir(second / "data")) as (port_b, _):
                result = bench_reports([port_a, port_b])
        rows.append(_row("2 servers, one PostgreSQL", result))
    echo("No-JS 1 KB reports through gunicorn on loopback, per store backend\n")
    echo(table(["store", "reports/s", "p50 ms", "p99 ms", "errors"], rows))


def _row(label: str, result: Throughput) -> list[str]:
    return [
        label,
        f"{result.per_second:.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        str(result.errors),
    ]


if __name__ == "__main__":
    main()
