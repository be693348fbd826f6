"""The analyst workstation's figures at scale: a vault of 100,000 synthetic reports.

Run by ``bench/bench.py`` (``make bench``), or on its own: ``.venv/bin/python
bench/workstation_bench.py [REPORTS]``.  It makes a real vault (SQLCipher, the real schema and
its triggers), fills it directly with ``executemany`` (no bundles, no envelopes: what is timed
is what the analysts wait for, not the import), then measures:

1. full-text search latency (``search.inbox`` with a text query, first page with snippets), over
   a mix of frequent words, rare words, two words, a phrase and a prefix; p50 and p99;
2. the inbox page rendered by the app (test client, logged in): unfiltered, filtered, searched;
3. clustering: the connections page's query (every key shared by two reports or more, largest
   first), and the connections of one report.

Synthetic text: words drawn with a Zipf-like law from a 5,000-word vocabulary (the frequent
ones are in most reports, as "the" would be); links drawn from 20,000 sites written in the
spellings connections.py folds together.  It prints one table, with the goal beside each figure.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from crypto.keys import ServerSigningKey, generate_analyst_key, seal_key_file
from journalist_interface import connections, search
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from journalist_interface.search import InboxQuery
from journalist_interface.vault import Vault, create_vault

REPORTS = 100_000
PASSPHRASE = "bench passphrase"  # noqa: S105
VOCABULARY = 5_000
SITES = 20_000
PHRASES = 50_000
SEARCH_ROUNDS = 300
PAGE_ROUNDS = 40
GOAL_SEARCH_P99_MS = 50.0
CATEGORIES = ("terrorism", "sextortion", "harassment", "minors", "hate", "fraud", "hacking",
              "impersonation", "illegal_trade", "other")  # fmt: skip
STATUSES = ("new", "triaged", "in_progress", "escalated", "closed")
SPELLINGS = (
    "https://www.{site}/{path}/?utm_source=fb&fbclid=IwAR{n}",
    "http://{site}/{path}",
    "{site}/{path}/",
    "https://m.{site}/{path}?gclid={n}",
)


def words(count: int) -> list[str]:
    """A vocabulary of pronounceable made-up words (so no real word biases the figures)."""
    rng = random.Random(1)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(found)


def zipf_cumulative(count: int) -> list[float]:
    """Cumulative weights of a Zipf law (rank r drawn with weight 1/r), for random.choices."""
    total, cumulative = 0.0, []
    for rank in range(count):
        total += 1 / (rank + 1)
        cumulative.append(total)
    return cumulative


def fill(vault: Vault, count: int) -> dict[str, str]:
    """``count`` reports, a fifth with a message, keys for connections; returns sample words."""
    rng = random.Random(7)
    vocabulary = words(VOCABULARY)
    weights = zipf_cumulative(VOCABULARY)
    # Texts are made of phrases drawn from a pool, which is quicker than word by word and keeps
    # the words' frequencies Zipf-like.
    phrases = [
        " ".join(rng.choices(vocabulary, cum_weights=weights, k=rng.randint(6, 14)))
        for _ in range(PHRASES)
    ]
    sites = [f"{rng.choice(vocabulary)}-{i}.example" for i in range(SITES)]
    start = time.perf_counter()
    day0 = 20_000  # days since 1970: 2024-10-04
    reports, sources, items, keys = [], [], [], []
    for num in range(1, count + 1):
        report_id = f"{num:032x}"
        sources.append((report_id, None))
        text = " ".join(rng.choices(phrases, k=rng.randint(2, 5)))
        site = sites[int(rng.paretovariate(1.2)) % SITES]
        link = rng.choice(SPELLINGS).format(site=site, path=rng.choice(vocabulary), n=num)
        handle = "@" + rng.choice(vocabulary)
        day = time.strftime("%Y-%m-%d", time.gmtime((day0 + rng.randint(0, 365)) * 86400))
        reports.append(
            (
                num,
                report_id,
                report_id,
                day,
                rng.choice(CATEGORIES),
                1 if rng.random() < 0.05 else 0,
                text,
                json.dumps([link, handle]),
                rng.choice(STATUSES),
            )
        )
        for kind, value in connections.keys_of(link) | connections.keys_of(handle):
            keys.append((kind, value, num))
        if num % 5 == 0:
            message = " ".join(rng.choices(phrases, k=rng.randint(1, 2)))
            items.append((f"{num:031x}m", report_id, day, message))
    progress(f"made {count:,} reports in {time.perf_counter() - start:.1f} s")
    # In steps of their own, as imports are: one transaction per bundle, not one for a year.
    with vault.transaction() as db:
        db.executemany("INSERT INTO sources (id, public_key) VALUES (?, ?)", sources)
        db.executemany(
            "INSERT INTO reports (num, id, source_id, day, category, danger, description, links,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            reports,
        )
    progress(f"  reports stored {time.perf_counter() - start:.1f} s")
    for first in range(0, count, 10_000):
        with vault.transaction() as db:  # the trigger indexes each report
            db.execute(
                "UPDATE reports SET received = 1 WHERE num BETWEEN ? AND ?", (first, first + 9_999)
            )
    progress(f"  reports indexed {time.perf_counter() - start:.1f} s")
    for first in range(0, len(items), 10_000):
        with vault.transaction() as db:
            db.executemany(
                "INSERT INTO items (id, report_id, kind, day, seq, position, text, pickup)"
                " VALUES (?, ?, 'message', ?, 2, 0, ?, 'bench')",
                items[first : first + 10_000],
            )
    progress(f"  {len(items):,} messages stored and indexed {time.perf_counter() - start:.1f} s")
    with vault.transaction() as db:
        db.executemany(
            "INSERT OR IGNORE INTO report_keys (kind, value, report_num) VALUES (?, ?, ?)", keys
        )
        db.execute("UPDATE reports SET close_reason = 'bench' WHERE status = 'closed'")
    took = time.perf_counter() - start
    progress(f"filled {count:,} reports in {took:.1f} s")
    return {
        "frequent": vocabulary[0],
        "common": vocabulary[20],
        "middling": vocabulary[500],
        "rare": vocabulary[4_900],
    }


def timed(operation: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        operation()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(count: int = REPORTS, keep: Path | None = None) -> None:
    started = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="blagh-ws-bench-") as work:
        root = keep or Path(work)
        key = generate_analyst_key()
        key_file = root / "analyst.key"
        key_file.write_bytes(seal_key_file(key, PASSPHRASE, opslimit=1, memlimit=8 << 20))
        create_vault(root / "vault", key_file, ServerSigningKey.generate().public(), PASSPHRASE)
        with Vault(root / "vault", key) as vault:
            sample = fill(vault, count)
        # Opened again, as by a login after a large import: the query planner's statistics
        # are refreshed on opening (PRAGMA optimize).
        with Vault(root / "vault", key) as vault:
            queries = [
                sample["frequent"],
                sample["common"],
                sample["middling"],
                sample["rare"],
                f"{sample['common']} {sample['middling']}",
                f'"{sample["frequent"]} {sample["common"]}"',
                sample["middling"][:3] + "*",
                "nothing-matches-this",
            ]
            for query in queries:  # warm the page cache once
                search.inbox(vault, InboxQuery(text=query))
            progress("search latency")
            latencies: list[float] = []
            for round_ in range(SEARCH_ROUNDS):
                query = queries[round_ % len(queries)]
                latencies += timed(lambda q=query: search.inbox(vault, InboxQuery(text=q)), 1)
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            rows.append(
                (
                    f"search, {count:,} reports (p50 / p99)",
                    f"{p50:.1f} / {p99:.1f} ms",
                    f"p99 < {GOAL_SEARCH_P99_MS:.0f} ms",
                    "PASS" if p99 < GOAL_SEARCH_P99_MS else "FAIL",
                )
            )
            per_query = {
                q: statistics.median(timed(lambda q=q: search.inbox(vault, InboxQuery(text=q)), 5))
                for q in queries
            }
            slowest = max(per_query, key=lambda q: per_query[q])
            rows.append(
                ("  slowest query (median)", f"{per_query[slowest]:.1f} ms", f"“{slowest}”", "")
            )

            progress("clustering")
            cluster_times = timed(lambda: connections.clusters(vault), 3)
            found, total = connections.clusters(vault)
            rows.append(
                (
                    "clusters: every shared key, largest first",
                    f"{statistics.median(cluster_times):.0f} ms",
                    f"{total:,} clusters, largest {found[0].size if found else 0}",
                    "",
                )
            )
            one = timed(lambda: connections.of_report(vault, f"{1:032x}"), 20)
            rows.append(("connections of one report", f"{statistics.median(one):.1f} ms", "", ""))

        progress("inbox pages through the app")
        app = create_app(WorkstationConfig(vault=root / "vault"))
        client = app.test_client()
        client.post("/login", data={"passphrase": PASSPHRASE})
        try:
            for label, path in (
                ("inbox page, default sort", "/"),
                ("inbox page, open + category, newest", "/?status=open&category=fraud&sort=newest"),
                ("inbox page, page 500", "/?page=500"),
                ("inbox page, searched", f"/?q={sample['common']}"),
            ):
                client.get(path)
                times = timed(lambda p=path: client.get(p), PAGE_ROUNDS)
                rows.append(
                    (
                        label,
                        f"{percentile(times, 0.5):.1f} / {percentile(times, 0.99):.1f} ms",
                        "p50 / p99",
                        "",
                    )
                )
            stats_times = timed(lambda: client.get("/statistics"), 5)
            rows.append(("statistics page", f"{statistics.median(stats_times):.0f} ms", "", ""))
        finally:
            app.extensions["workstation"].sessions.close()

    print("Analyst workstation at scale\n")
    widths = [max(len(row[i]) for row in [("figure", "measured", "goal / note", ""), *rows])
              for i in range(4)]  # fmt: skip
    for row in [("figure", "measured", "goal / note", ""), tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    print(f"\n(workstation benchmark ran in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else REPORTS,
        Path(sys.argv[2]) if len(sys.argv) > 2 else None,  # keep the vault there, to look into
    )
