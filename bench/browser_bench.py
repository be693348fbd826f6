"""The JavaScript path's figures, in Debian's Chromium against ``blagh serve`` on loopback.

Run by ``bench/bench.py`` (``make bench``), or on its own: ``.venv/bin/python
bench/browser_bench.py``.  It measures, on a 50 MB file (MB = 10^6 bytes):

1. sealing in the page: the envelope of docs/envelope.md made by static/js/sealing.mjs
   (libsodium.js, WebAssembly) from a File read in 1 MiB slices, as the report page does,
   the ciphertext discarded; beside it, crypto/envelope.py fed the same way in Python;
2. sealing and uploading in the page: the same, sent in 1 MiB pieces through the chunked
   upload API to gunicorn on loopback (the figure Tor's bandwidth will hide);
3. a codename's argon2id derivation (64 MiB, 3 passes) in the page and in Python;
4. what a reporter downloads: the JavaScript of the report page (every script response, as
   the browser received it), the word list fetched when a codename is kept, and the page's
   HTML and CSS;
5. the weight of the landing and report pages over the wire (tests/page_weight.py), in every
   language, JavaScript on and off, on a first visit and on a repeat visit in the same browser
   session (static files cached), beside SecureDrop's and OnionShare's published figures.

Best of a few runs for the timings; it takes about half a minute.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser tests' server and browser set-up

from browser_helpers import Server, launch, make_data_dir, missing_requirements  # noqa: E402
from page_weight import weigh  # noqa: E402

from blagh.config import LANGUAGES  # noqa: E402
from crypto import codename  # noqa: E402
from crypto.envelope import EnvelopeWriter, generate_keypair  # noqa: E402
from crypto.keys import generate_analyst_key  # noqa: E402

MB = 10**6
MIB = 1 << 20
FILE_BYTES = 50 * MB
RUNS = 3
KB = 10**3

FIRST_VISIT_GOAL = 250 * KB
REPEAT_VISIT_GOAL = 30 * KB
NO_JS_GOAL = 20 * KB
"""Issue 12: the report page with JavaScript, first visit and after; any page without it."""

PEERS = [
    ["SecureDrop source interface (its own figure)", "110 KB", "", ""],
    ["OnionShare receive mode, without JavaScript (its figure)", "13.5 KB", "", ""],
    ["OnionShare receive mode, with JavaScript (its figure)", "39.5 KB", "", ""],
]
"""Published figures, not measured here: the comparison issue 12 asks for."""

# A 50 MB File made in the page (1 MiB of random bytes, repeated), then sealed as the report
# page seals a file: 1 MiB slices read with Blob.arrayBuffer(), the ciphertext dropped.
PAGE_SETUP = """async (size) => {
  const piece = new Uint8Array(1 << 20);
  for (let at = 0; at < piece.length; at += 65536) {
    crypto.getRandomValues(piece.subarray(at, at + 65536));
  }
  const parts = [];
  for (let left = size; left > 0; left -= piece.length) {
    parts.push(piece.subarray(0, Math.min(left, piece.length)));
  }
  window.benchFile = new File(parts, 'bench.bin', { type: 'application/octet-stream' });
  return window.benchFile.size;
}"""

# The ceiling for the upload figure: 1 MiB PUTs of nothing in particular, no sealing (the
# server reads each body, then answers 404: no such upload).
PAGE_RAW_PUT = """async (count) => {
  const body = new Uint8Array(1 << 20);
  const token = document.querySelector('input[name="form_token"]').value;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    await fetch('/upload/' + '0'.repeat(32) + '/0', {
      method: 'PUT', body, headers: { 'X-Blagh-Form': token },
    });
  }
  return performance.now() - started;
}"""

PAGE_SEAL = """async (recipient) => {
  const s = await import('/static/js/sealing.mjs');
  await s.ready();
  const file = window.benchFile;
  const started = performance.now();
  const sealer = new s.EnvelopeSealer([s.fromBase64(recipient)]);
  let out = sealer.header().length;
  for (let at = 0; at < file.size; at += 1 << 20) {
    const slice = new Uint8Array(await file.slice(at, at + (1 << 20)).arrayBuffer());
    for (const part of sealer.update(slice)) out += part.length;
  }
  for (const part of sealer.finish()) out += part.length;
  return [performance.now() - started, out];
}"""

PAGE_UPLOAD = """async (recipient) => {
  const s = await import('/static/js/sealing.mjs');
  const u = await import('/static/js/uploads.mjs');
  await s.ready();
  const token = () => document.querySelector('input[name="form_token"]').value;
  const started = performance.now();
  await u.uploadFile(window.benchFile, [s.fromBase64(recipient)], { formToken: token });
  return performance.now() - started;
}"""

PAGE_DERIVE = """async ([words, salt]) => {
  const s = await import('/static/js/sealing.mjs');
  await s.ready();
  const started = performance.now();
  s.deriveSourceKeys(words, salt);
  return performance.now() - started;
}"""


def best(values: Sequence[float]) -> float:
    return min(values)


def python_seal_seconds(size: int) -> float:
    _secret, public = generate_keypair()
    piece = os.urandom(MIB)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        writer = EnvelopeWriter([public], lambda _data: None)
        for at in range(0, size, MIB):
            writer.update(piece[: min(MIB, size - at)])
        writer.finish()
        times.append(time.perf_counter() - started)
    return best(times)


def python_derive_ms(wordlist: Sequence[str]) -> float:
    salt = os.urandom(codename.SALT_BYTES)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        codename.derive(codename.generate(wordlist), salt)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def downloaded_by_report_page(page: Page, url: str) -> dict[str, int]:
    """Bytes of each kind the report page's responses carried, as the browser got them."""
    sizes: dict[str, int] = {"script": 0, "document": 0, "stylesheet": 0, "other": 0}

    def count(response: Any) -> None:
        path = response.url.split("?")[0]
        if path.endswith((".mjs", ".js")):
            key = "script"  # modulepreload responses are typed "other" by Chromium
        else:
            kind = response.request.resource_type
            key = kind if kind in sizes else "other"
        # Content-Length, as sent: bodies of preloaded modules are not always kept for
        # Playwright to read back, and Flask's responses all carry the header.
        sizes[key] += int(response.headers.get("content-length", "0"))

    page.on("response", count)
    page.goto(url)
    page.locator("html[data-blagh=sealing]").wait_for(state="attached")
    page.wait_for_load_state("networkidle")
    page.remove_listener("response", count)
    sizes["wordlist"] = len(page.evaluate(WORDS).encode("utf-8"))
    return sizes


def page_weights(browser: Any, url: str, echo: Callable[[str], None]) -> list[list[str]]:
    """First and repeat visit of each page, language, JavaScript on and off, and the goals."""
    rows = []
    for label, path in (("landing", "/"), ("report", "/report")):
        for language in LANGUAGES:
            for javascript in (False, True):
                switch = "on" if javascript else "off"
                echo(f"browser: weight of the {label} page, {language}, JavaScript {switch}")
                visits = weigh(browser, url, f"{path}?lang={language}", javascript)
                first, repeat = visits.first.total, visits.repeat.total
                if javascript and path == "/report":
                    goal = f"≤ {FIRST_VISIT_GOAL // KB} / {REPEAT_VISIT_GOAL // KB} KB"
                    ok = first <= FIRST_VISIT_GOAL and repeat <= REPEAT_VISIT_GOAL
                elif javascript:
                    goal, ok = "", True
                else:
                    goal = f"≤ {NO_JS_GOAL // KB} KB"
                    ok = max(first, repeat) <= NO_JS_GOAL
                rows.append(
                    [
                        f"{label}, {language}, JavaScript {switch}",
                        f"{first / KB:.1f} KB",
                        f"{repeat / KB:.1f} KB",
                        f"{goal} {'ok' if ok else 'MISSED'}" if goal else "",
                    ]
                )
    return [*rows, *PEERS]


def measure(echo: Callable[[str], None]) -> tuple[list[list[str]], list[list[str]]]:
    problem = missing_requirements()
    if problem:
        return [["browser figures", "not measured", problem]], []
    analyst = generate_analyst_key()
    recipient = base64.b64encode(analyst.public().encryption).decode("ascii")
    with tempfile.TemporaryDirectory(prefix="blagh-browser-bench-") as work:
        data_dir = make_data_dir(Path(work) / "data", analyst)
        config = data_dir.config_file.read_text("utf-8")
        data_dir.config_file.write_text(
            config.replace("max_upload_mb = 500", "max_upload_mb = 100"), "utf-8"
        )
        server = Server(data_dir, Path(work))
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    weights_over_wire = page_weights(browser, server.url, echo)
                    page = browser.new_page(base_url=server.url)
                    echo("browser: JavaScript the report page downloads")
                    weights = downloaded_by_report_page(page, "/report")
                    page.evaluate(PAGE_SETUP, FILE_BYTES)
                    echo("browser: sealing 50 MB in the page")
                    seal_ms = best([page.evaluate(PAGE_SEAL, recipient)[0] for _ in range(RUNS)])
                    echo("browser: sealing and uploading 50 MB to gunicorn on loopback")
                    upload_ms = best([page.evaluate(PAGE_UPLOAD, recipient) for _ in range(2)])
                    raw_put_ms = page.evaluate(PAGE_RAW_PUT, 20) / 20
                    echo("browser: argon2id codename derivation in the page")
                    wordlist = [line for line in page.evaluate(WORDS).split("\n") if line]
                    salt = os.urandom(16).hex()
                    derive_js = statistics.median(
                        [
                            page.evaluate(PAGE_DERIVE, [codename.generate(wordlist), salt])
                            for _ in range(RUNS)
                        ]
                    )
                finally:
                    browser.close()
        finally:
            server.stop()
    echo("browser: the same in Python")
    python_s = python_seal_seconds(FILE_BYTES)
    derive_py = python_derive_ms(wordlist)
    rate = lambda ms: FILE_BYTES / MB / (ms / 1000)  # noqa: E731
    kb = lambda n: f"{n / 1000:.0f} KB"  # noqa: E731
    return [
        ["seal 50 MB in the page (File → envelope)", f"{rate(seal_ms):.0f} MB/s", ""],
        ["seal 50 MB in Python (crypto/envelope.py)", f"{FILE_BYTES / MB / python_s:.0f} MB/s", ""],
        [
            "seal + upload 50 MB from the page (1 MiB pieces, loopback)",
            f"{rate(upload_ms):.1f} MB/s",
            "Tor gives ~1 MB/s",
        ],
        [
            "1 MiB PUTs from the page, no sealing (the ceiling above)",
            f"{MIB / MB / (raw_put_ms / 1000):.1f} MB/s",
            "Chromium under Playwright",
        ],
        ["codename argon2id in the page (64 MiB, 3 passes)", f"{derive_js:.0f} ms", ""],
        ["codename argon2id in Python", f"{derive_py:.0f} ms", ""],
        [
            "JavaScript downloaded by the report page",
            kb(weights["script"]),
            "libsodium.js + ours, gzipped",
        ],
        ["word list, only when a codename is kept", kb(weights["wordlist"]), "fetched at send"],
        ["report page HTML + CSS", kb(weights["document"] + weights["stylesheet"]), ""],
    ], weights_over_wire


WORDS = """async () => {
  const script = document.getElementById('blagh-script');
  return (await fetch(script.dataset.wordlist)).text();
}"""


def table(header: list[str], rows: list[list[str]], numeric: tuple[int, ...] = (1,)) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "| "
        + " | ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        + " |"
        for r in lines
    )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(echo: Callable[[str], None] = progress) -> None:
    rows, weights = measure(echo)
    print("Sealing in the browser (the JavaScript path), Chromium against gunicorn on loopback\n")
    print(table(["measure", "figure", "note"], rows))
    if weights:
        print(
            "\nPage weight over the wire, Chromium (headers + gzipped static files; KB = 10^3 B;"
            "\nrepeat = a new tab in the same session, static files from its memory cache)\n"
        )
        print(table(["page", "first visit", "repeat visit", "goal"], weights, numeric=(1, 2)))


if __name__ == "__main__":
    main()
