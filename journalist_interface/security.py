"""Headers on every response, the checks every request passes, and the error pages.

The app runs on the analyst's own machine, but it shows what strangers wrote: a report's text,
links and file names are hostile input.  So no script runs at all (the CSP allows our style sheet
and our re-encoded image previews, nothing else), nothing is framed, and attachments are only
ever downloaded, never shown as sent (views/files.py).
Requests must name the loopback host (a page elsewhere cannot reach the app by DNS rebinding),
and a form must come from the app itself.
"""

from __future__ import annotations

from flask import Flask, Response, abort, g, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from blagh.web.headers import security_headers

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

DOWNLOAD_POLICY = "default-src 'none'; sandbox"
"""For attachments: should a browser render one anyway, it runs nothing and loads nothing."""

HEADERS = security_headers(CONTENT_SECURITY_POLICY)
"""The reporters' pages' headers (no referrer, no cache, no framing, no sniffing, no devices),
with a policy that allows no script, and images only from the app (its re-encoded previews)."""


def init_app(app: Flask, port: int) -> None:
    app.config["TRUSTED_HOSTS"] = ["127.0.0.1", "localhost"]
    allowed_origins = {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}

    @app.before_request
    def same_origin_forms() -> None:
        origin = request.headers.get("Origin")
        if request.method != "POST" or origin is None:
            return
        if origin == "null":
            # Browsers send "Origin: null" under our no-referrer policy (the Fetch standard):
            # then the fetch metadata says where the form came from, where the browser sends it.
            if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
                abort(403)
            return
        if origin not in allowed_origins and origin != request.host_url.rstrip("/"):
            abort(403)

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        if g.get("download"):
            response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
        response.headers.pop("Server", None)
        return response

    @app.errorhandler(HTTPException)
    def error_page(error: HTTPException) -> Response | HTTPException:
        code = error.code
        if code is None or code < 400:
            return error
        title, message = _error_text(code)
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        try:
            body = render_template("error.html", status=code, title=title, message=message)
        except Exception:
            # The page could not be built (a request for another host name has no URLs to
            # link to, or the failure is the reason we are here): the words alone.
            return Response(f"{title}\n\n{message}\n", code, headers, mimetype="text/plain")
        return Response(body, code, headers, mimetype="text/html")


def _error_text(code: int) -> tuple[str, str]:
    if code == 400:
        return _("The request could not be understood"), _(
            "The form may have expired. Go back, reload the page and try again."
        )
    if code == 403:
        return _("Access refused"), _("This request did not come from this application.")
    if code == 404:
        return _("Page not found"), _("There is nothing at this address.")
    if code == 405:
        return _("This action is not possible here"), _(
            "This address does not accept this kind of request."
        )
    if code == 413:
        return _("The file is too large"), _(
            "The bundle is larger than this application accepts. Import it with the command "
            "blagh workstation import instead."
        )
    if code < 500:
        return _("The request could not be completed"), _("Go back and try again.")
    return _("Something went wrong"), _(
        "The application could not complete the request. Try again; if it fails again, the "
        "blagh workstation commands say what is wrong."
    )
