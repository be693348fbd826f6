"""Blagh's benchmark: what sealing costs, next to its limit and to what SecureDrop uses.

Run by ``make bench`` (offline, in a loopback-only network namespace).  It prints three tables
and a verdict line per goal:

1. the envelope (``crypto/envelope.py``, streaming API) against raw libsodium secretstream on
   the same data fed the same way: the envelope cannot beat raw (beyond noise), so the ratio
   says how much the format and its Python glue cost;
2. the envelope against gpg with a Curve25519 key, SecureDrop's tool, wall-clock per process;
3. the argon2id derivations Blagh runs (codename, analyst key file) against PyNaCl's own
   "sensitive" default, which is what a caller gets by forgetting to pass limits;

then the source interface's own table (``bench/source_bench.py``): reports per second through
gunicorn, a worker's memory while 1 GiB streams in, and the weight of the pages.  Then issue
10's availability figures (``bench/availability_bench.py``): how many slow uploads the server
holds with the landing page still prompt, reports per second beside a bare Flask app, CPU per
report, and costs at 1,000 and 100,000 stored reports.  Then the
JavaScript path's (``bench/browser_bench.py``): sealing a 50 MB file in Chromium beside Python,
the bytes of JavaScript the report page downloads, and the first- and repeat-visit weight of the
landing and report pages (every language, JavaScript on and off) beside SecureDrop's and
OnionShare's figures.  Last, the workstation's
(``bench/loop_bench.py``): importing a 1,000-report pickup bundle into a vault, against the raw
envelope open rate.  And known-content matching (``bench/matching_bench.py``): fingerprinting
images in the sandbox, PDQ hashing beside Meta's figure, matching against 1,000,000 PDQ hashes.

Throughput is MB/s of plaintext, MB = 10^6 bytes.  Data is fed in 1 MiB pieces, as reads from a
file or a socket would come, to sinks that discard, so only the cryptography and its glue are
timed, never the disk.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crypto import baseline, codename, keys
from crypto.envelope import EnvelopeReader, EnvelopeWriter, generate_keypair

KB = 10**3
MB = 10**6
MIB = 1 << 20
SIZES = (1 * KB, 1 * MB, 256 * MB)
"""Payloads: a one-line report, a photo, a long video."""

PIECE_SIZE = 1 * MIB
"""How much each update() is fed: a typical read from a file or socket."""

RAW_CHUNK = 64 * 1024
"""Raw secretstream chunk size, the same as the envelope's, so the comparison is like for like."""

GOAL_SIZE = 256 * MB
"""The payload the throughput goals are judged at: large enough for fixed costs to vanish."""

GOAL_RAW_FRACTION = 0.85
"""Goal: envelope seal and open at least 85% of raw secretstream at GOAL_SIZE."""

GOAL_GPG_FACTOR = 3.0
"""Goal: envelope seal and open at least 3x gpg's throughput (default settings, as SecureDrop)."""

GOAL_CODENAME_MS = 1000.0
"""Goal: a codename derivation well under a second (it runs per no-JS login; crypto/codename.py)."""

ROUND_SECONDS = 0.1
"""A timed round repeats the operation until it lasts this long, so tiny payloads time well."""

MIN_ROUNDS, MAX_ROUNDS = 5, 9
"""Best of at least MIN_ROUNDS rounds, more while within the time budget below."""

MEASURE_BUDGET_SECONDS = 3.0
"""Stop adding rounds past this, keeping ``make bench`` within about three minutes."""

GPG_BIG_ROUNDS = 2
"""gpg with compression takes ~10 s on 256 MB: two rounds, not MIN_ROUNDS, at that size."""

ARGON2_RUNS = 5
"""argon2id timings are the median of this many derivations."""

GPG_UID = "bench <bench@example.invalid>"
GPG_VARIANTS = (("default", ()), ("no-compress", ("--compress-algo", "none")))
"""gpg as SecureDrop runs it (default compression), and with compression off, the fairer peer."""


# ---------------------------------------------------------------------------------------------
# Timing


def calibrate(operation: Callable[[], object]) -> int:
    """How many calls make a round last ROUND_SECONDS; the calls made here are the warm-up.

    Warming up pays for first-time costs (allocations, gpg's trustdb check and agent start)
    outside timing; repeating within a round lets a 1 KB seal be timed over ~0.1 s rather than
    over a few microseconds.
    """
    repeats = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(repeats):
            operation()
        elapsed = time.perf_counter() - t0
        if elapsed >= ROUND_SECONDS:
            return repeats
        repeats = max(2 * repeats, int(1.2 * repeats * ROUND_SECONDS / max(elapsed, 1e-6)))


def best_seconds(
    *operations: Callable[[], object],
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
) -> list[float]:
    """Best per-call time of each operation, over rounds that take turns between them.

    The best round, not the mean, because interference (other processes on this shared
    2-core machine, a noisy hypervisor) only ever adds time.  Taking turns means a slow
    spell hits the envelope and its raw baseline alike, so their ratio stays fair.
    """
    repeats = [calibrate(op) for op in operations]
    best = [float("inf")] * len(operations)
    started = time.perf_counter()
    for done in range(max_rounds):
        if done >= min_rounds and time.perf_counter() - started > MEASURE_BUDGET_SECONDS:
            break
        for index, (operation, count) in enumerate(zip(operations, repeats, strict=True)):
            t0 = time.perf_counter()
            for _ in range(count):
                operation()
            best[index] = min(best[index], (time.perf_counter() - t0) / count)
    return best


def rate(size: int, seconds: float) -> float:
    """Throughput in MB/s of plaintext."""
    return size / seconds / MB


# ---------------------------------------------------------------------------------------------
# Data


def random_pieces(size: int) -> list[bytes]:
    """``size`` random bytes as PIECE_SIZE pieces: what reading a file would hand over.

    Held as pieces rather than one object so no timed loop pays for slicing a big buffer.
    Random, because real uploads (photos, videos) are already compressed.
    """
    return [os.urandom(min(PIECE_SIZE, size - off)) for off in range(0, size, PIECE_SIZE)]


class PieceCollector:
    """A sink that keeps its input re-cut into PIECE_SIZE pieces, to be fed to an opener.

    Re-cutting as it goes keeps peak memory at one copy of the ciphertext.
    """

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self._buffer = bytearray()

    def __call__(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= PIECE_SIZE:
            view = memoryview(self._buffer)
            cut = len(view) - len(view) % PIECE_SIZE
            self.pieces.extend(bytes(view[i : i + PIECE_SIZE]) for i in range(0, cut, PIECE_SIZE))
            view.release()
            del self._buffer[:cut]

    def close(self) -> list[bytes]:
        """Return every piece, the last one possibly short."""
        if self._buffer:
            self.pieces.append(bytes(self._buffer))
            self._buffer.clear()
        return self.pieces


Sink = Callable[[bytes], object]


def discard(_data: bytes) -> None:
    """The sink for timed seals: nothing but the cryptography should be measured."""


def rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield the concatenation of ``pieces`` as ``size``-byte chunks (the last may be short).

    Copies each byte once (a slice), the least a bytes-only binding allows: this is the raw
    baseline's glue, so it must be as cheap as glue can be.
    """
    carry = b""
    for piece in pieces:
        start = 0
        if carry:
            start = size - len(carry)
            carry += piece[:start]
            if len(carry) < size:
                continue
            yield carry
        end = len(piece) - (len(piece) - start) % size
        for offset in range(start, end, size):
            yield piece[offset : offset + size]
        carry = piece[end:]
    if carry:
        yield carry


# ---------------------------------------------------------------------------------------------
# Envelope and raw secretstream


def envelope_seal(
    recipients: Sequence[bytes], pieces: Sequence[bytes], sink: Sink = discard
) -> None:
    """Seal as the server does while an upload streams in: writer, update per read, finish."""
    writer = EnvelopeWriter(recipients, sink)
    for piece in pieces:
        writer.update(piece)
    writer.finish()


def envelope_open(identities: Sequence[bytes], pieces: Sequence[bytes]) -> None:
    """Open as the workstation does while reading a stored envelope."""
    reader = EnvelopeReader(identities)
    for piece in pieces:
        reader.update(piece)
    reader.finish()


def raw_seal(key: bytes, pieces: Sequence[bytes], sink: Sink = discard) -> bytes:
    """Push 64 KiB chunks (the last TAG_FINAL) with no format around them; returns the header."""
    return baseline.stream_seal(key, rechunk(pieces, RAW_CHUNK), sink)


def raw_open(key: bytes, header: bytes, pieces: Sequence[bytes]) -> None:
    """Pull 64 KiB chunks until TAG_FINAL: the least any secretstream opener must do."""
    baseline.stream_open(key, header, rechunk(pieces, RAW_CHUNK + baseline.STREAM_OVERHEAD))


@dataclass
class SizeResult:
    """Every throughput figure for one payload size, in MB/s; ``gpg`` is empty without gpg."""

    size: int
    seal: float
    open: float
    raw_seal: float
    raw_open: float
    gpg: dict[str, tuple[float, float]]
    gpg_compressed: bool


def bench_envelope(size: int, pieces: list[bytes]) -> tuple[float, float, float, float]:
    """Seal/open throughput of the envelope and of raw secretstream on the same pieces.

    Each envelope figure is timed in turns with its raw counterpart.  The sealed forms are made
    once, outside timing; at most the plaintext and two ciphertexts are in memory at once.
    """
    secret, public = generate_keypair()
    key = baseline.stream_key()
    seal, raw_s = best_seconds(
        lambda: envelope_seal([public], pieces), lambda: raw_seal(key, pieces)
    )
    envelope, raw = PieceCollector(), PieceCollector()
    envelope_seal([public], pieces, envelope)
    header = raw_seal(key, pieces, raw)
    sealed, raw_sealed = envelope.close(), raw.close()
    opened, raw_o = best_seconds(
        lambda: envelope_open([secret], sealed), lambda: raw_open(key, header, raw_sealed)
    )
    return rate(size, seal), rate(size, opened), rate(size, raw_s), rate(size, raw_o)


# ---------------------------------------------------------------------------------------------
# gpg


@dataclass
class Gpg:
    """A throw-away gpg home holding one ed25519 + cv25519 key, as a SecureDrop instance has."""

    home: Path
    fingerprint: str

    @property
    def env(self) -> dict[str, str]:
        """The environment that points gpg (and gpgconf) at this home only."""
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def run(self, *args: str) -> None:
        """Run gpg in batch mode against this home; raise if it fails."""
        subprocess.run(
            ["gpg", "--batch", "--yes", "--quiet", *args],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def list_packets(self, *args: str) -> str:
        """gpg's packet listing (of a key ring or a message), for the checks below."""
        return subprocess.run(
            ["gpg", "--batch", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def compressed(self, sealed: Path) -> bool:
        """Whether ``sealed`` holds a compressed packet, i.e. gpg did not skip compression.

        gpg skips it for files that start like gzip, bzip2 or zip, so the "default" figures
        are only SecureDrop-like if this holds; the report says when it does not.
        """
        return ":compressed packet:" in self.list_packets("--list-packets", str(sealed))

    def encrypt(self, source: Path, target: str, extra: Sequence[str]) -> None:
        """Encrypt to the key, always trusted, with the variant's extra options."""
        self.run(
            "--trust-model",
            "always",
            *extra,
            "-r",
            self.fingerprint,
            "-o",
            target,
            "--encrypt",
            str(source),
        )

    def decrypt(self, source: Path) -> None:
        """Decrypt to /dev/null: the plaintext is produced and checked, then discarded."""
        self.run("-o", os.devnull, "--decrypt", str(source))


@contextmanager
def gpg_home() -> Iterator[Gpg | None]:
    """A temporary GNUPGHOME with a fresh Curve25519 key, its agent stopped and removed after.

    Yields None if gpg is not installed, so the rest of the benchmark still runs.
    """
    if shutil.which("gpg") is None:
        yield None
        return
    gpg = Gpg(Path(tempfile.mkdtemp(prefix="blagh-bench-gpg-")), "")
    try:
        gpg.run("--passphrase", "", "--quick-gen-key", GPG_UID, "ed25519", "sign", "never")
        listing = gpg.list_packets("--with-colons", "--list-keys", GPG_UID)
        gpg.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        gpg.run("--passphrase", "", "--quick-add-key", gpg.fingerprint, "cv25519", "encr", "never")
        yield gpg
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=gpg.env, check=False, capture_output=True)
        shutil.rmtree(gpg.home, ignore_errors=True)


def bench_gpg(
    gpg: Gpg, size: int, pieces: list[bytes], workdir: Path
) -> tuple[dict[str, tuple[float, float]], bool]:
    """gpg encrypt/decrypt throughput per variant, and whether the default one compressed.

    Wall-clock of the whole process.  Plaintext is read from a file (as SecureDrop's gpg reads
    one) and output goes to /dev/null; the ciphertext to decrypt is made once beforehand,
    untimed, and its packets checked.
    """
    plain = workdir / "plain.bin"
    with plain.open("wb") as f:
        f.writelines(pieces)
    rounds = GPG_BIG_ROUNDS if size >= GOAL_SIZE else MIN_ROUNDS
    results = {}
    compressed = True
    for name, extra in GPG_VARIANTS:
        sealed = workdir / f"{name}.gpg"
        gpg.encrypt(plain, str(sealed), extra)
        if not extra:
            compressed = gpg.compressed(sealed)
        enc, dec = best_seconds(
            lambda e=extra: gpg.encrypt(plain, os.devnull, e),
            lambda s=sealed: gpg.decrypt(s),
            min_rounds=rounds,
            max_rounds=rounds,
        )
        sealed.unlink()
        results[name] = (rate(size, enc), rate(size, dec))
    plain.unlink()
    return results, compressed


# ---------------------------------------------------------------------------------------------
# argon2id


def argon2id(opslimit: int, memlimit: int, size: int = 32) -> Callable[[], object]:
    """A bare argon2id derivation with the given limits."""
    salt = bytes(baseline.ARGON2_SALT_BYTES)
    return lambda: baseline.argon2id(
        size, b"correct horse battery staple", salt, opslimit, memlimit
    )


def argon2_cases() -> list[tuple[str, int, int, Callable[[], object]]]:
    """(label, opslimit, memlimit, derivation) for each argon2id use, at the code's limits."""
    words = " ".join(["bench"] * codename.WORD_COUNT)
    salt = bytes(codename.SALT_BYTES)
    ops, mem = baseline.SENSITIVE_OPSLIMIT, baseline.SENSITIVE_MEMLIMIT
    return [
        (
            "codename (codename.derive)",
            codename.OPSLIMIT,
            codename.MEMLIMIT,
            lambda: codename.derive(words, salt),
        ),
        (
            "analyst key file (keys.py limits)",
            keys.KEY_FILE_OPSLIMIT,
            keys.KEY_FILE_MEMLIMIT,
            argon2id(keys.KEY_FILE_OPSLIMIT, keys.KEY_FILE_MEMLIMIT),
        ),
        ("PyNaCl SENSITIVE default (reference)", ops, mem, argon2id(ops, mem)),
    ]


def median_ms(operation: Callable[[], object], runs: int = ARGON2_RUNS) -> float:
    """Median wall-clock of ``runs`` calls: argon2id is long enough to time one call at a time."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        operation()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


# ---------------------------------------------------------------------------------------------
# Report


def size_label(size: int) -> str:
    """1000 -> '1 KB', 256000000 -> '256 MB'."""
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns: readable as plain text, pasteable as Markdown."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "| "
        + " | ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cell_row, widths, strict=True))
        )
        + " |"
        for cell_row in lines
    )


def fmt_rate(value: float | None) -> str:
    """MB/s to three significant figures, or a dash when not measured."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def envelope_table(results: Sequence[SizeResult]) -> str:
    """Table 1: envelope vs raw secretstream."""
    rows = []
    for r in results:
        for op, ours, raw in (("seal", r.seal, r.raw_seal), ("open", r.open, r.raw_open)):
            rows.append(
                [size_label(r.size), op, fmt_rate(ours), fmt_rate(raw), f"{ours / raw:.0%}"]
            )
    return table(["payload", "op", "envelope MB/s", "raw secretstream MB/s", "envelope/raw"], rows)


def gpg_table(results: Sequence[SizeResult]) -> str:
    """Table 2: envelope vs gpg, both variants, with the speed-up factor."""
    rows = []
    for r in results:
        for index, (op, ours) in enumerate(
            (("seal / encrypt", r.seal), ("open / decrypt", r.open))
        ):
            row = [size_label(r.size), op, fmt_rate(ours)]
            for name, _ in GPG_VARIANTS:
                theirs = r.gpg[name][index]
                row += [fmt_rate(theirs), f"{ours / theirs:.1f}×"]
            rows.append(row)
    return table(
        ["payload", "op", "envelope MB/s", "gpg MB/s¹", "×", "gpg no-compress MB/s", "×"], rows
    )


def argon2_table(timings: Sequence[tuple[str, int, int, float]]) -> str:
    """Table 3: argon2id costs, relative to PyNaCl's sensitive default (the last row)."""
    reference = timings[-1][3]
    rows = [
        [label, str(ops), f"{mem // MIB} MiB", f"{ms:,.0f}", f"{ms / reference:.0%}"]
        for label, ops, mem, ms in timings
    ]
    header = [
        "argon2id derivation",
        "opslimit",
        "memlimit",
        f"ms (median of {ARGON2_RUNS})",
        "vs sensitive",
    ]
    return table(header, rows)


def verdict(ok: bool, text: str) -> str:
    """One goal's verdict line."""
    return f"{'PASS' if ok else 'FAIL'}  {text}"


def verdicts(results: Sequence[SizeResult], codename_ms: float) -> list[str]:
    """A line per goal, judged at GOAL_SIZE for throughput."""
    goal = next((r for r in results if r.size == GOAL_SIZE), results[-1])
    label = size_label(goal.size)
    seal_pct, open_pct = goal.seal / goal.raw_seal, goal.open / goal.raw_open
    lines = [
        verdict(
            min(seal_pct, open_pct) >= GOAL_RAW_FRACTION,
            f"envelope ≥ {GOAL_RAW_FRACTION:.0%} of raw secretstream at {label}: "
            f"seal {seal_pct:.0%}, open {open_pct:.0%}",
        )
    ]
    if goal.gpg:
        for name, _ in GPG_VARIANTS:
            enc, dec = goal.gpg[name]
            lines.append(
                verdict(
                    min(goal.seal / enc, goal.open / dec) >= GOAL_GPG_FACTOR,
                    f"envelope ≥ {GOAL_GPG_FACTOR:g}× gpg ({name}) at {label}: "
                    f"seal {goal.seal / enc:.1f}×, open {goal.open / dec:.1f}× "
                    f"(raw secretstream itself: seal {goal.raw_seal / enc:.1f}×, "
                    f"open {goal.raw_open / dec:.1f}×)",
                )
            )
    lines.append(
        verdict(
            codename_ms < GOAL_CODENAME_MS,
            f"codename derivation < {GOAL_CODENAME_MS:,.0f} ms: {codename_ms:,.0f} ms",
        )
    )
    return lines


FOOTNOTE = """\
Throughput is MB/s of plaintext (MB = 10^6 bytes), best of several timed rounds; input is fed in
1 MiB pieces; sealed output goes to a sink that discards it. One recipient. The envelope's
figures include its header (crypto_box_seal per recipient) and Padmé padding, which raw
secretstream does not do: at 1 KB they dominate, at 256 MB they vanish."""

GPG_FOOTNOTE = """\
¹ gpg as SecureDrop runs it: default compression (zlib). The payloads are random and do not
  compress (neither do photos and videos), so compression only costs time. gpg figures are the
  wall-clock of one gpg process per operation, start-up included ({startup:.0f} ms for a whole 1 KB
  encrypt here: at 1 KB start-up is nearly all of it), reading a file (in the page cache) and
  writing to /dev/null; key cv25519, gpg's default cipher (AES-256, CFB + SHA-1 MDC)."""


def footnotes(results: Sequence[SizeResult]) -> str:
    """The notes under the tables; the gpg one quotes gpg's measured per-process floor."""
    if not results[0].gpg:
        return FOOTNOTE
    smallest = results[0]
    startup_ms = smallest.size / (smallest.gpg["default"][0] * MB) * 1000
    notes = [FOOTNOTE, GPG_FOOTNOTE.format(startup=startup_ms)]
    skipped = [size_label(r.size) for r in results if not r.gpg_compressed]
    if skipped:
        notes.append(
            f"  Caution: gpg did not compress at {', '.join(skipped)} (no compressed packet):"
            " those default figures are really no-compression figures."
        )
    return "\n".join(notes)


def progress(message: str) -> None:
    """Say what is being measured on stderr, keeping stdout for the tables."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main() -> None:
    """Measure everything, then print the tables, the footnotes and the verdicts."""
    started = time.perf_counter()
    results = []
    with gpg_home() as gpg, tempfile.TemporaryDirectory(prefix="blagh-bench-") as work:
        if gpg is None:
            progress("gpg not found (apt-get install gnupg): skipping the gpg comparison")
        for size in SIZES:
            pieces = random_pieces(size)
            progress(f"envelope and raw secretstream, {size_label(size)}")
            seal, opened, raw_s, raw_o = bench_envelope(size, pieces)
            if gpg:
                progress(f"gpg, {size_label(size)}")
            gpg_rates, compressed = bench_gpg(gpg, size, pieces, Path(work)) if gpg else ({}, True)
            results.append(SizeResult(size, seal, opened, raw_s, raw_o, gpg_rates, compressed))
            del pieces
    progress("argon2id")
    timings = [(label, ops, mem, median_ms(fn)) for label, ops, mem, fn in argon2_cases()]

    print("Envelope vs raw crypto_secretstream_xchacha20poly1305 (the limit)\n")
    print(envelope_table(results))
    print("\nEnvelope vs gpg (SecureDrop's tool)\n")
    if gpg is None:
        print("gpg not found: install it with `apt-get install gnupg` to get this comparison.")
    else:
        print(gpg_table(results))
    print("\nargon2id derivation cost\n")
    print(argon2_table(timings))
    print(f"\n{footnotes(results)}\n\nVerdicts\n")
    print("\n".join(verdicts(results, timings[0][3])))

    import source_bench  # bench/source_bench.py, beside this file

    progress("source interface through gunicorn (bench/source_bench.py)")
    print()
    source_bench.main()

    import availability_bench  # bench/availability_bench.py: slow clients, rate, costs at scale

    progress("availability and the submission path (bench/availability_bench.py)")
    print()
    availability_bench.main()

    import store_backend_bench  # bench/store_backend_bench.py: SQLCipher, PostgreSQL, 2 servers

    progress("store backends (bench/store_backend_bench.py)")
    print()
    store_backend_bench.main()

    import browser_bench  # bench/browser_bench.py: sealing in Chromium, the page's JS weight

    progress("sealing in the browser (bench/browser_bench.py)")
    print()
    browser_bench.main()

    import loop_bench  # bench/loop_bench.py: a 1,000-report pickup bundle into the vault

    progress("workstation import (bench/loop_bench.py)")
    print()
    loop_bench.main()

    import workstation_bench  # bench/workstation_bench.py: search, inbox, clusters at 100,000

    progress("analyst workstation at scale (bench/workstation_bench.py)")
    print()
    workstation_bench.main()

    import matching_bench  # bench/matching_bench.py: PDQ hashing, matching against 1,000,000

    progress("known-content matching (bench/matching_bench.py)")
    print()
    matching_bench.main()
    print(f"\n(benchmark ran in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
