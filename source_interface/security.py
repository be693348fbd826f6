"""Response headers for every page, and error pages that tell a reporter what to do next.

The headers are the browser-side half of the threat model: nothing from a third party, no inline
code that an injected string could become, no page cached on a shared computer (static files
alone are, under versioned URLs: source_interface.static_files), no referrer that would carry an
onion address elsewhere.  They go on every response, errors and static files
included, from one ``after_request`` hook rather than on each view, so that none is forgotten.

Error pages are rendered in the reporter's language and say what happened and what to do, never
why the server failed: a traceback or a path would help an attacker and not the reporter.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from flask import Flask, Response, g, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from blagh.config import ClearnetConfig, Config
from blagh.offload import Busy
from blagh.web.headers import security_headers
from source_interface.errors import ServerBusy
from source_interface.listeners import is_clearnet

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
"""Only our own style sheet and images; no script, font, frame or connection at all."""

SCRIPT_PAGE_POLICY = (
    f"{CONTENT_SECURITY_POLICY}; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'"
)
"""For the pages that seal in the browser (source_interface.browser), and only those: scripts
from this origin (each checked against its integrity hash by the page), WebAssembly compiled by
them (libsodium.js), and requests back to this origin (chunked uploads, sealed items).  Still no
inline script, ``eval``, worker, frame or third party."""

HEADERS = security_headers(CONTENT_SECURITY_POLICY)
"""Set on every response, replacing what a view or Flask put there (``Cache-Control`` above all)."""
_HEADER_ITEMS = list(HEADERS.items())
_HEADER_NAMES = frozenset(name.lower() for name in HEADERS) | {"server"}

STATIC_CACHE_CONTROL = "public, max-age=31536000, immutable"
"""For static files under a versioned URL (source_interface.static_files) only: the same bytes
for every visitor, pinned by subresource integrity, and a URL that changes with them.  A year,
and no revalidation on reload; Tor Browser keeps its cache in memory for the session only."""


def clearnet_headers(clearnet: ClearnetConfig, path: str, query: bytes) -> dict[str, str]:
    """What only the clearnet listener's answers carry: browsers must come back over HTTPS, and
    Tor Browser offers the onion site (same page) instead.  Never on the onion listener: there
    the address is already the safest one, and HSTS means nothing over an onion."""
    headers: dict[str, str] = {}
    if clearnet.hsts_max_age:
        headers["Strict-Transport-Security"] = f"max-age={clearnet.hsts_max_age}"
    if clearnet.onion_address:
        # Percent-encoded again: the path is decoded, and a header must stay one line.
        location = quote(path, safe="/-._~!$&'()*+,;=:@")
        if query:
            location += "?" + quote(query, safe="/-._~!$&'()*+,;=:@?%")
        headers["Onion-Location"] = f"http://{clearnet.onion_address}{location}"
    return headers


def allow_caching() -> None:
    """Give this request's response :data:`STATIC_CACHE_CONTROL` instead of ``no-store``.

    For source_interface.static_files alone: a page must never be cached, since it may carry a
    form token or a codename, and its presence in a shared computer's cache tells of the visit.
    """
    g.blagh_cacheable = True


def allow_scripts() -> None:
    """Give this request's response :data:`SCRIPT_PAGE_POLICY` instead of the script-free one."""
    g.blagh_allows_scripts = True


class ReporterError(HTTPException):
    """An error whose page says something more precise than the status code's generic message.

    Raise it from a view, with a message already translated (``gettext``)::

        raise ReporterError(400, gettext("This form has expired: reload it and send again."))

    It is rendered like any other error, with the status code given.
    """

    def __init__(self, code: int, message: str, advice: str | None = None) -> None:
        super().__init__(description=message)
        self.code = code
        self.message = message
        self.advice = advice


@dataclass(frozen=True)
class ErrorText:
    """What an error page says: a title, what happened, and what to do about it."""

    title: str
    message: str
    advice: str


def init_app(app: Flask, config: Config) -> None:
    """Register the security headers and the error pages on ``app``."""
    limits = config.source_interface

    clearnet = config.clearnet

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        if any(name.lower() in _HEADER_NAMES for name, _ in headers):
            headers.update(HEADERS)
            # Says which software, and which version, to attack.  (The WSGI server may add its own.)
            headers.pop("Server", None)
        else:
            headers.extend(_HEADER_ITEMS)  # none of them there yet (the usual): no search each
        if g.get("blagh_allows_scripts"):
            response.headers["Content-Security-Policy"] = SCRIPT_PAGE_POLICY
        if g.get("blagh_cacheable") and response.status_code == 200:
            response.headers["Cache-Control"] = STATIC_CACHE_CONTROL
        if is_clearnet(request.environ):
            response.headers.update(clearnet_headers(clearnet, request.path, request.query_string))
        return response

    @app.errorhandler(HTTPException)
    def error_page(error: HTTPException) -> Response | HTTPException:
        code = error.code
        if code is None or code < 400:
            # Redirects raised by routing (a missing trailing slash): not errors, send as they are.
            return error
        text = _error_text(code, limits.max_upload_mb, limits.max_files_per_report)
        if isinstance(error, ReporterError):
            text = ErrorText(text.title, error.message, error.advice or text.advice)
        # Headers the status needs, such as Allow on a 405; the body is ours.
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        try:
            body = render_template("error.html", status=code, error=text)
        except Exception:
            if code < 500:
                raise
            # The page itself failed (the reason we are here may be the cause): say little.
            return Response("Internal Server Error", 500, headers, mimetype="text/plain")
        return Response(body, code, headers, mimetype="text/html")

    @app.errorhandler(Busy)
    def busy_page(_error: Busy) -> Response | HTTPException:
        """Blocking work's threads and queue are full (blagh/offload.py): the busy page."""
        return error_page(ServerBusy())


def _error_text(code: int, max_upload_mb: int, max_files: int) -> ErrorText:
    """The words for ``code`` in this request's language.

    Built per call, not at import, since ``gettext`` needs the request's language.
    """
    if code == 400:
        return ErrorText(
            _("The request could not be understood"),
            _(
                "Your browser sent something this site could not read, or the page you sent it "
                "from had expired."
            ),
            _("Go back, reload the page, and try again."),
        )
    if code == 403:
        return ErrorText(
            _("Access refused"),
            _("This page cannot be opened, or your session has ended."),
            _("Go back to the home page. If you were logged in with your codename, log in again."),
        )
    if code == 404:
        return ErrorText(
            _("Page not found"),
            _("There is nothing at this address."),
            _("Check the address, or start again from the home page."),
        )
    if code == 405:
        return ErrorText(
            _("This action is not possible here"),
            _("This address does not accept this kind of request."),
            _("Start again from the home page and follow its links."),
        )
    if code == 413:
        return ErrorText(
            _("Too much to send at once"),
            _(
                "Nothing was saved: what you sent is larger than this site accepts. A report "
                "may hold at most %(files)d files and %(size)d MB in all.",
                files=max_files,
                size=max_upload_mb,
            ),
            _(
                "Go back, remove some files or choose smaller ones, and send again. After "
                "your report, you can add more files with your codename."
            ),
        )
    if code == 429:
        return ErrorText(
            _("Too many attempts"),
            _("This site received too many requests from you in a short time."),
            _("Wait a few minutes, then try again."),
        )
    if code == 503:
        return ErrorText(
            _("The site is busy"),
            _("The server cannot handle your request right now."),
            _("Wait a few minutes, then try again."),
        )
    if code == 507:
        return ErrorText(
            _("The server is short of disk space"),
            _("Nothing was saved: the server has no room left for what you sent."),
            _(
                "Send your report now without files (text still goes through), and add the "
                "files later with your codename, or try again in a few hours."
            ),
        )
    if code < 500:
        return ErrorText(
            _("The request could not be completed"),
            _("This site could not do what was asked."),
            _("Go back, reload the page, and try again."),
        )
    return ErrorText(
        _("Something went wrong"),
        _("The server could not complete your request."),
        _(
            "Try again in a few minutes. If you were sending a report and did not see a "
            "confirmation page, send it again."
        ),
    )
