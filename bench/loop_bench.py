"""The workstation's import: a 1,000-report pickup bundle, verified and decrypted into a vault.

Run by ``bench/bench.py`` (``make bench``), or on its own: ``.venv/bin/python
bench/loop_bench.py``.  It fills a fresh server store the way the source interface does (each
report's fields sealed to the analyst and to its reporter, who kept a codename; one attachment of
ATTACHMENT_BYTES random bytes sealed to the analyst; blobs written and fsynced, rows in SQLCipher),
builds the pickup bundle with the server's own builder (what ``blagh export-bundle`` and the
pickup API serve), then times:

1. ours: ``journalist_interface.importer.import_bundle`` into a fresh vault, everything it does:
   the signature and every SHA-256, the documents opened and stored in SQLCipher, the attachments
   opened as a stream and copied (still envelopes) into the vault's blob folder, fsynced;
2. the same import with ``os.fsync`` made a no-op, to show what the disk's durability costs
   (on a VM's virtual disk, most of it) and what is left for the cryptography and its glue;
3. the limit: ``crypto.envelope.open_envelope`` on the same envelopes, already in memory.

Best of ROUNDS rounds each, a fresh vault per round.  It prints one table, ours beside raw.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from blagh.bundles import BundleReader
from blagh.datadir import DataDir
from blagh.payloads import attachment_header, encode_document
from crypto.envelope import generate_keypair, open_envelope, seal
from crypto.keys import AnalystKey, ServerVerifyKey, generate_analyst_key, seal_key_file
from journalist_interface.importer import import_bundle
from journalist_interface.vault import Vault, create_vault
from source_interface.app import open_store
from source_interface.pickup.bundles import PickupBundles, copy_to_new_file
from source_interface.store import BlobRef, Store

KB, MB = 10**3, 10**6
REPORTS = 1_000
ATTACHMENT_BYTES = 100 * KB
ROUNDS = 3
PASSPHRASE = "bench passphrase"  # noqa: S105 (a throw-away key file)
KEY_FILE_LIMITS = {"opslimit": 1, "memlimit": 8 << 20}
"""argon2id at its lowest accepted cost: opening the key file is not what is measured."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    analyst: AnalystKey
    key_file: Path
    server_key: ServerVerifyKey
    items: int
    envelope_bytes: int
    plaintext_bytes: int
    build_seconds: float


def _blob(store: Store, data: bytes) -> BlobRef:
    pending = store.new_blob()
    pending.write(data)
    return pending.commit()


def build_bundle(work: Path) -> Bundle:
    """A server store holding REPORTS reports, and its pickup bundle."""
    started = time.perf_counter()
    analyst = generate_analyst_key()
    directory = DataDir(work / "data")
    directory.create([analyst.public()])
    store = open_store(directory)
    plaintext = 0
    try:
        for number in range(REPORTS):
            _secret, public = generate_keypair()  # the reporter's, from their codename
            source = store.create_source(secrets.token_bytes(32), public)
            fields = encode_document(
                "report",
                {
                    "category": "fraud",
                    "danger": number % 10 == 0,
                    "description": f"Report {number}: a fake shop took my money. " * 8,
                    "links": [f"https://shop{number}.example/pay"],
                    "platform": "Instagram",
                    "seen_on": "2025-03-10",
                    "identity": None,
                    "attachments": ["screenshot.png"],
                },
            )
            attachment = attachment_header("screenshot.png", "image/png") + os.urandom(
                ATTACHMENT_BYTES
            )
            plaintext += len(fields) + len(attachment)
            items = [
                ("fields", _blob(store, seal(fields, [analyst.public().encryption, public]))),
                ("file", _blob(store, seal(attachment, [analyst.public().encryption]))),
            ]
            store.add_report(source.id, items)
        signing_key = directory.read_server_signing_key()
        current = PickupBundles(store, [analyst.public()], signing_key).open_current()
        path = work / "pickup.bundle"
        with current.file:
            copy_to_new_file(current.file, path)
    finally:
        store.close()
    key_file = work / "analyst.key"
    key_file.write_bytes(seal_key_file(analyst, PASSPHRASE, **KEY_FILE_LIMITS))
    server_key = signing_key.public()
    with BundleReader(path, [server_key.verify], "blagh-pickup") as reader:
        sizes = [item["size"] for item in reader.manifest["items"]]
    return Bundle(
        path,
        analyst,
        key_file,
        server_key,
        len(sizes),
        sum(sizes),
        plaintext,
        time.perf_counter() - started,
    )


def time_import(bundle: Bundle, path: Path, *, fsync: bool = True) -> float:
    """Seconds to import the bundle into a fresh vault (made and opened outside the timing)."""
    create_vault(path, bundle.key_file, bundle.server_key, PASSPHRASE)
    with (
        Vault(path, bundle.analyst) as vault,
        mock.patch("os.fsync", os.fsync if fsync else _no_fsync),
    ):
        started = time.perf_counter()
        result = import_bundle(vault, bundle.path)
        seconds = time.perf_counter() - started
    assert (result.new_reports, result.new_items, result.unreadable) == (
        REPORTS,
        bundle.items,
        0,
    ), result
    return seconds


def _no_fsync(_fd: int) -> None:
    pass


def time_raw_open(bundle: Bundle) -> float:
    """Seconds to open every envelope of the bundle with open_envelope, from memory."""
    with BundleReader(bundle.path, [bundle.server_key.verify], "blagh-pickup") as reader:
        envelopes = [reader.read_item(item["id"]) for item in reader.manifest["items"]]
    keys = [bundle.analyst.encryption_secret]
    started = time.perf_counter()
    for envelope in envelopes:
        open_envelope(envelope, keys)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Timings:
    ours: float
    no_fsync: float
    raw: float


def measure(echo: Callable[[str], None]) -> tuple[Bundle, Timings]:
    with tempfile.TemporaryDirectory(prefix="blagh-loop-bench-") as folder:
        work = Path(folder)
        echo(f"loop: filling a server store with {REPORTS:,} reports and building the bundle")
        bundle = build_bundle(work)
        ours = no_fsync = raw = float("inf")
        for number in range(ROUNDS):
            echo(f"loop: round {number + 1} of {ROUNDS}: import, import without fsync, raw open")
            ours = min(ours, time_import(bundle, work / f"vault-{number}"))
            no_fsync = min(no_fsync, time_import(bundle, work / f"quick-{number}", fsync=False))
            raw = min(raw, time_raw_open(bundle))
        return bundle, Timings(ours, no_fsync, raw)


def rows(bundle: Bundle, timings: Timings) -> list[list[str]]:
    columns = (timings.ours, timings.no_fsync, timings.raw)

    def figures(show: Callable[[float], str]) -> list[str]:
        ratios = (timings.raw / timings.ours, timings.raw / timings.no_fsync)
        return [*map(show, columns), *(f"{ratio:.0%}" for ratio in ratios)]

    return [
        ["reports/s", *figures(lambda seconds: f"{REPORTS / seconds:,.0f}")],
        [
            "MB/s of envelopes",
            *figures(lambda seconds: f"{bundle.envelope_bytes / MB / seconds:,.0f}"),
        ],
        ["seconds for the bundle", *figures(lambda seconds: f"{seconds:.2f}")[:3], "", ""],
    ]


def table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *body]
    return "\n".join(
        "| "
        + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        + " |"
        for r in lines
    )


FOOTNOTE = """
{reports:,} reports, each its fields (sealed to the analyst and to the reporter) and one \
{attachment_kb} KB attachment:
{items:,} envelopes, {envelope_mb:,.1f} MB ({plaintext_mb:,.1f} MB of plaintext); best of \
{rounds} rounds, a fresh vault each.
The import checks the signature and every SHA-256, stores the documents in SQLCipher (one
transaction) and copies each attachment, still an envelope opened once as a stream, into the
vault's blob folder with an fsync of the file and of the folder; "no fsync" is the same with
os.fsync a no-op. Raw opens the same envelopes from memory. Filling the store and building the
bundle took {build_seconds:.0f} s (not timed)."""


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(echo: Callable[[str], None] = progress) -> None:
    started = time.perf_counter()
    bundle, timings = measure(echo)
    print(
        f"Workstation import of a {REPORTS:,}-report pickup bundle vs raw open_envelope "
        "(MB = 10^6 B)\n"
    )
    print(
        table(
            [
                "figure",
                "import (ours)",
                "ours, no fsync",
                "raw open_envelope",
                "ours/raw",
                "no fsync/raw",
            ],
            rows(bundle, timings),
        )
    )
    print(
        FOOTNOTE.format(
            reports=REPORTS,
            attachment_kb=ATTACHMENT_BYTES // KB,
            items=bundle.items,
            envelope_mb=bundle.envelope_bytes / MB,
            plaintext_mb=bundle.plaintext_bytes / MB,
            rounds=ROUNDS,
            build_seconds=bundle.build_seconds,
        )
    )
    print(f"\n(loop benchmark ran in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
