"""The pickup API's cost as the store grows: a request with nothing changed, and a build.

Run on its own: ``.venv/bin/python bench/pickup_bench.py [REPORTS ...]`` (default 1,000 and
100,000).  For each size it fills a fresh server store directly (one source, one report and one
small ``fields`` item per report, rows inserted in one transaction, blob files written without
fsync: filling is not what is measured), then times with the server's own builder
(:class:`PickupBundles`, what the pickup API and ``blagh export-bundle`` use):

1. the first request: the pickup bundle built from nothing;
2. a request with nothing changed since (the bundle already built): best of ROUNDS;
3. a request after one new report (a new bundle is built).

It prints one table, one row per size.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from crypto.keys import ServerSigningKey, generate_analyst_key
from crypto.manifest import sha256_hex
from source_interface.pickup.bundles import PickupBundles
from source_interface.store import Store
from source_interface.store.index import new_id, today

ITEM_BYTES = 1024
ROUNDS = 5
SIZES = (1_000, 100_000)


def fill(store: Store, reports: int, item_bytes: int = ITEM_BYTES) -> None:
    """``reports`` reports of one undelivered ``fields`` item each, straight into the store."""
    day = today()
    rows_sources, rows_reports, rows_items = [], [], []
    for _ in range(reports):
        source, report, item = new_id(), new_id(), new_id()
        data = os.urandom(item_bytes)
        name = secrets.token_hex(16)
        (store.blobs.root / name).write_bytes(data)
        rows_sources.append((source, secrets.token_bytes(32), secrets.token_bytes(32), day))
        rows_reports.append((report, source, day, 1))
        rows_items.append((item, report, "fields", name, len(data), sha256_hex(data), day, 1))
    with store.index.transaction() as db:
        db.executemany(
            "INSERT INTO sources (id, verifier, public_key, day) VALUES (?, ?, ?, ?)",
            rows_sources,
        )
        db.executemany(
            "INSERT INTO reports (id, source_id, day, seq) VALUES (?, ?, ?, ?)", rows_reports
        )
        db.executemany(
            "INSERT INTO items (id, report_id, kind, blob, size, sha256, day, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows_items,
        )


def _timed(bundles: PickupBundles) -> float:
    started = time.perf_counter()
    bundle = bundles.open_current()
    elapsed = time.perf_counter() - started
    bundle.file.close()
    return elapsed


def measure(reports: int, work: Path) -> tuple[float, float, float]:
    store = Store(work / f"store-{reports}", secrets.token_bytes(32))
    try:
        fill(store, reports)
        bundles = PickupBundles(
            store, [generate_analyst_key().public()], ServerSigningKey.generate()
        )
        build = _timed(bundles)
        cached = min(_timed(bundles) for _ in range(ROUNDS))
        fill(store, 1)
        rebuild = _timed(bundles)
    finally:
        store.close()
    return build, cached, rebuild


def main(sizes: list[int]) -> None:
    print(f"{'reports':>9}  {'first build':>12}  {'unchanged':>12}  {'after 1 new':>12}")
    with tempfile.TemporaryDirectory() as work:
        for reports in sizes:
            build, cached, rebuild = measure(reports, Path(work))
            print(
                f"{reports:>9,}  {build * 1e3:>10.1f}ms  {cached * 1e3:>10.2f}ms"
                f"  {rebuild * 1e3:>10.1f}ms"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or list(SIZES))
