"""No-JS 1 KB reports per second and p99, on the SQLCipher store and on the PostgreSQL store,
in the same run (issue 16).

Run on its own: ``scripts/offline.sh .venv/bin/python bench/store_backend_bench.py``.  Each
backend gets a fresh ``blagh serve`` (the default config: its workers) measured exactly as
bench/source_bench.py measures reports; PostgreSQL is a throw-away cluster made like the
tests' (tests/postgres_helpers.py), with fsync and synchronous_commit on, on a unix socket.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from postgres_helpers import cluster
from source_bench import bench_reports, running_server, table


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
            rows.append(
                [
                    label,
                    f"{result.per_second:.0f}",
                    f"{result.p50_ms:.1f}",
                    f"{result.p99_ms:.1f}",
                    str(result.errors),
                ]
            )
    echo("No-JS 1 KB reports through gunicorn on loopback, per store backend\n")
    echo(table(["store", "reports/s", "p50 ms", "p99 ms", "errors"], rows))


if __name__ == "__main__":
    main()
