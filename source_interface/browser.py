"""The JavaScript path's assets: which files a page loads, their integrity hashes, and the tag.

Pages that seal in the browser (the report form, the codename login, the follow-up page) call
``{{ browser_script("report") }}`` in their template.  That renders one module ``<script>`` with
subresource integrity, carrying in data attributes the integrity of every other file it loads
(our crypto module, libsodium.js) so that each is checked before it runs; and it marks the
response so that its Content-Security-Policy allows scripts from this origin and WebAssembly,
on that page only (source_interface.security).

Hashes are computed once, when the app is built, from the files as they are on disk: the static
files are made at set-up (``make``: libsodium.js is copied from node_modules) and never change
while the server runs.  Their URLs carry the static folder's version, and the browser caches
them for a year (source_interface.static_files): the hashes here are what makes a cached copy
safe to reuse.  If libsodium.js is missing the tag is empty: the page keeps its
no-JavaScript path, which always works, and the policy stays without scripts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, url_for
from markupsafe import Markup

from source_interface import security
from source_interface.services import services

STATIC = Path(__file__).with_name("static")

ENTRY = "js/blagh.mjs"
"""The page's own script: feature detection, then everything else is imported from it."""

MODULES = (
    "js/sealing.mjs",
    "js/uploads.mjs",
    "js/metadata.mjs",
    "vendor/libsodium-wrappers.mjs",
    "vendor/libsodium-sumo.mjs",
)
"""Imported by the entry once it knows WebAssembly is there, each preloaded with its hash."""

WORDLIST_PATH = "/codename-words.txt"
"""The codename word list, fetched (with its hash checked) only when a page needs it.

One word a line: the words new codenames are drawn from, an empty line, then the retired words
(deny-listed, still accepted when typed back), so the browser draws from the same filtered list
as the server and accepts the same typed codenames."""

PAGES = frozenset({"report", "login", "followup", "forget"})
"""Where the script runs; "forget" (after deleting everything) only clears the key it kept."""


def integrity(data: bytes) -> str:
    """The ``integrity`` attribute value for ``data`` (SHA-384, as browsers expect it)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


@dataclass(frozen=True)
class BrowserAssets:
    """What the script tag needs: each file's integrity, or nothing if a file is missing."""

    hashes: dict[str, str]
    wordlist: bytes
    wordlist_integrity: str

    @classmethod
    def load(
        cls, wordlist: tuple[str, ...], retired: tuple[str, ...] = (), static: Path = STATIC
    ) -> BrowserAssets:
        hashes = {}
        for name in (ENTRY, *MODULES):
            path = static / name
            if not path.is_file():
                return cls({}, b"", "")
            hashes[name] = integrity(path.read_bytes())
        words = ("\n".join(wordlist) + "\n\n" + "".join(w + "\n" for w in retired)).encode("utf-8")
        return cls(hashes, words, integrity(words))

    @property
    def available(self) -> bool:
        return bool(self.hashes)


def script_tag(assets: BrowserAssets, page: str, extra: Mapping[str, str] | None = None) -> Markup:
    """The module script for ``page``, and the CSP that lets it run; empty when unavailable.

    Besides the files' hashes, the tag states what the page seals to: the analysts' public keys
    (``data-analysts``, base64, comma-separated) and the instance salt codenames are derived
    with (``data-salt``, hex); ``extra`` adds page-specific ``data-`` attributes.
    """
    if page not in PAGES:
        raise ValueError(f"no browser script for page {page!r}")
    if not assets.available:
        return Markup("")
    security.allow_scripts()
    svc = services()
    preload = {url_for("static", filename=name): assets.hashes[name] for name in MODULES}
    attributes = {
        "type": "module",
        "src": url_for("static", filename=ENTRY),
        "integrity": assets.hashes[ENTRY],
        "id": "blagh-script",
        "data-page": page,
        "data-modules": json.dumps(preload, separators=(",", ":")),
        "data-wordlist": WORDLIST_PATH,
        "data-wordlist-integrity": assets.wordlist_integrity,
        "data-analysts": ",".join(base64.b64encode(key).decode("ascii") for key in svc.analysts),
        "data-salt": svc.instance_salt.hex(),
        **(extra or {}),
    }
    # Markup.format escapes every value (keys are ours, fixed above).
    rendered = Markup(" ").join(Markup('{}="{}"').format(k, v) for k, v in attributes.items())
    return Markup("<script {}></script>").format(rendered)


def init_app(app: Flask, wordlist: tuple[str, ...], retired: tuple[str, ...]) -> BrowserAssets:
    """Hash the assets once and give templates ``browser_script(page)``."""
    assets = BrowserAssets.load(wordlist, retired)
    app.extensions["blagh_browser"] = assets

    @app.context_processor
    def browser_script_helper() -> dict[str, object]:
        def browser_script(page: str, extra: Mapping[str, str] | None = None) -> Markup:
            return script_tag(assets, page, extra)

        return {"browser_script": browser_script}

    return assets
