"""What a page costs to load, in bytes over the wire, on a first visit and on a repeat visit.

Shared by tests/test_page_weight.py (which asserts the goals) and bench/browser_bench.py (which
prints the figures).  Measured in a real Chromium through the DevTools protocol: each request's
``encodedDataLength`` once it has finished loading is what came over the connection, headers and
compressed body included, and zero for what came from the cache.  A repeat visit is a new tab in
the same browser session, as when a reporter comes back to read a reply: the HTTP cache is the
session's, in memory (as in Tor Browser, which keeps no disk cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser

SEALING_PAGES = frozenset({"/report", "/login"})
"""Pages whose script takes over the form: with JavaScript on, the visit ends once it has."""


@dataclass
class Transfers:
    """Bytes received per URL during one page load (zero for what the cache gave)."""

    sizes: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return round(sum(self.sizes.values()))

    def from_network(self) -> list[str]:
        return sorted(url for url, size in self.sizes.items() if size > 0)


@dataclass(frozen=True)
class Visits:
    first: Transfers
    repeat: Transfers


def _load(context: Any, path: str, javascript: bool) -> Transfers:
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    urls: dict[str, str] = {}
    transfers = Transfers()

    def started(event: dict[str, Any]) -> None:
        urls[event["requestId"]] = event["request"]["url"]

    def finished(event: dict[str, Any]) -> None:
        url = urls.get(event["requestId"], event["requestId"])
        transfers.sizes[url] = transfers.sizes.get(url, 0) + event["encodedDataLength"]

    cdp.on("Network.requestWillBeSent", started)
    cdp.on("Network.loadingFinished", finished)
    cdp.send("Network.enable")
    page.goto(path)
    if javascript and path.split("?")[0] in SEALING_PAGES:
        # libsodium.js fetched, checked against its hash, and running.
        page.locator("html[data-blagh=sealing]").wait_for(state="attached")
    page.wait_for_load_state("networkidle")
    cdp.detach()
    page.close()
    return transfers


def weigh(browser: Browser, base_url: str, path: str, javascript: bool) -> Visits:
    """``path`` loaded in a fresh browser session, then again in a new tab of that session."""
    context = browser.new_context(base_url=base_url, java_script_enabled=javascript)
    try:
        first = _load(context, path, javascript)
        repeat = _load(context, path, javascript)
    finally:
        context.close()
    return Visits(first, repeat)
