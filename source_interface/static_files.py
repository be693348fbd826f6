"""Static files under content-hashed URLs, gzip-compressed once, cached by the browser.

The report page's JavaScript (libsodium.js above all, ~550 KB) used to be fetched again on every
visit: every response said ``Cache-Control: no-store``.  Static files say nothing about the
reporter — the same bytes for every visitor, pinned by subresource integrity
(source_interface.browser) — so they can be cached and compressed.  Pages cannot: caching them
would show the visit on a shared computer, and compressing them, with a form token or a codename
beside text an attacker can inject, would leak those secrets through the compressed size
(BREACH).  So pages keep ``no-store`` and identity encoding; only this module's answers change.

Every static URL carries the digest of the whole static folder: ``/static/<version>/js/x.mjs``.
One digest for the folder rather than one per file, because the modules import each other by
relative paths (``./sealing.mjs``, ``../vendor/…``), which must land on the same version.  A new
deploy changes the version and so every URL, which is what makes ``immutable`` true.  An
unversioned URL (``/static/style.css``: a bookmark, a page from before a deploy) is redirected to
the current version, uncached; an unknown version of a known file likewise; anything else is 404.

Files are read, hashed and compressed when the app is built, and served from memory (about
0.8 MB per worker): the folder is made at set-up (``make`` copies libsodium.js) and never changes
while the server runs, and nothing on a request path touches the disk.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, request, url_for
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from source_interface import security

STATIC = Path(__file__).with_name("static")

VERSION_LENGTH = 16
"""Hex digits of the folder's SHA-256 in each URL: 64 bits, no collision between deploys."""

TYPES = {
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""Stated, not guessed: module scripts are refused under any other type, and the system's
``mimetypes`` tables differ between machines (``.mjs`` is missing from some)."""


@dataclass(frozen=True)
class StaticFile:
    """One file as served: its bytes, their gzip form (None when it would not be smaller)."""

    content_type: str
    data: bytes
    gzipped: bytes | None


@dataclass(frozen=True)
class StaticFiles:
    """The static folder, in memory, under one version."""

    version: str
    files: dict[str, StaticFile]

    @classmethod
    def load(cls, folder: Path = STATIC) -> StaticFiles:
        files: dict[str, StaticFile] = {}
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if not path.is_file() or any(part.startswith(".") for part in name.split("/")):
                continue  # vendor/.copied, the Makefile's stamp, is not served
            data = path.read_bytes()
            digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
            # mtime=0: the same bytes on every start and every worker.
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            files[name] = StaticFile(
                _content_type(name), data, packed if len(packed) < len(data) else None
            )
        return cls(digest.hexdigest()[:VERSION_LENGTH], files)

    def response(self, version: str, filename: str) -> BaseResponse:
        """The file, cached for a year, gzipped if the browser takes it; or where it is now."""
        if version != self.version:
            # Not this deploy's URL: an older version, or an unversioned path whose first
            # folder happens to be as long as a version.
            return self.moved(f"{version}/{filename}")
        found = self.files.get(filename)
        if found is None:
            raise NotFound()
        security.allow_caching()
        body = found.data
        response = Response(content_type=found.content_type)
        if found.gzipped is not None and request.accept_encodings.quality("gzip") > 0:
            body = found.gzipped
            response.headers["Content-Encoding"] = "gzip"
        response.set_data(body)
        response.headers["Vary"] = "Accept-Encoding"
        return response

    def moved(self, filename: str) -> BaseResponse:
        """An unversioned or outdated URL of a file we have: to its current URL, not cached."""
        if filename not in self.files:
            older, _slash, rest = filename.partition("/")
            if len(older) != VERSION_LENGTH or rest not in self.files:
                raise NotFound()
            filename = rest
        return redirect(url_for("static", filename=filename), 302)


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in TYPES:
        return TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def init_app(app: Flask, folder: Path = STATIC) -> StaticFiles:
    """Serve ``folder`` at ``/static/<version>/…`` and make ``url_for("static", …)`` point there.

    The app must be built with ``static_folder=None`` (Flask's own route would serve the files
    uncompressed, and under the same endpoint name).
    """
    static = StaticFiles.load(folder)
    app.extensions["blagh_static"] = static

    @app.url_defaults
    def add_version(endpoint: str | None, values: dict[str, Any]) -> None:
        if endpoint == "static":
            values.setdefault("version", static.version)

    app.add_url_rule(
        f"/static/<string(length={VERSION_LENGTH}):version>/<path:filename>",
        "static",
        static.response,
    )
    app.add_url_rule("/static/<path:filename>", "static_unversioned", static.moved)
    return static
