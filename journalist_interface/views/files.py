"""An attachment's page: its real kind, a safe preview, its metadata, and a clean copy.

- ``GET  /reports/R/files/I/details``  the page: the kind read from the bytes, the image blurred
  and greyscale (or sharp, when this analyst revealed it), what metadata mat2 finds
- ``GET  /reports/R/files/I/preview``  the re-encoded PNG (``?mode=revealed`` only for the one
  image this session revealed); 422 when the image is too large to preview, 404 when it cannot
  be decoded, 503 with ``Retry-After`` when previews are busy (one is made at a time:
  :class:`journalist_interface.safeview.Previews`)
- ``POST /reports/R/files/I/reveal``   reveal this image (and blur any other: one at a time);
  ``POST …/blur`` blurs it again
- ``GET  /reports/R/files/I/clean``    a copy mat2 cleaned of metadata, as a download

The details page makes its one preview before it is shown, so it can say in words that the
image is too large or could not be decoded; the report's page never makes one (its thumbnails
are separate requests) and says only what is already known.

The original is downloaded by ``reports.attachment``.  Every parser runs in the sandbox
(:mod:`journalist_interface.sandbox`); every view, reveal and download is in the audit log.
"""

from __future__ import annotations

import threading
from typing import cast

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from crypto.manifest import sha256_hex
from journalist_interface import audit, matching
from journalist_interface.metadata import MetadataError, Unsupported, clean_copy, inspect
from journalist_interface.safeview import (
    BLURRED,
    REVEALED,
    Busy,
    FileKind,
    PreviewError,
    Previews,
    TooLarge,
    Undecodable,
    kind_of,
)
from journalist_interface.sandbox import SandboxUnavailable
from journalist_interface.vault import Attachment
from journalist_interface.views import checked_id, login_required, vault
from journalist_interface.views.reports import content_disposition

bp = Blueprint("files", __name__)

_MAX_REVEALED = 1000
RETRY_AFTER = 5


class Revealed:
    """Which one image each session has revealed (at most one: revealing another blurs it)."""

    def __init__(self) -> None:
        self._by_session: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, session: str) -> str | None:
        with self._lock:
            return self._by_session.get(session)

    def set(self, session: str, item: str | None) -> None:
        with self._lock:
            if item is None:
                self._by_session.pop(session, None)
                return
            if len(self._by_session) >= _MAX_REVEALED:
                self._by_session.clear()
            self._by_session[session] = item


def init_app(app: Flask) -> None:
    """Give the app its previews (held to the config's pixel budget), its record of revealed
    images, and the templates ``metadata_category(name)``, ``file_kind(attachment)`` and
    ``preview_refusal(attachment)``."""
    megapixels = app.extensions["workstation"].config.preview_megapixels
    app.extensions["previews"] = Previews(megapixels * 1_000_000)
    app.extensions["revealed"] = Revealed()

    @app.context_processor
    def file_context() -> dict[str, object]:
        return {
            "metadata_category": metadata_category,
            "file_kind": _file_kind,
            "preview_refusal": _preview_refusal,
            "known_matches": _known_matches,
        }


def _file_kind(attachment: Attachment) -> FileKind:
    return kind_of(vault(), attachment)


def _preview_refusal(attachment: Attachment) -> str:
    """``known_content`` when the file matched a hash list and no analyst asked to see it,
    ``too_large`` or ``undecodable`` when that is already known of this image, else ``""``
    (never reads the file: the report's page asks for every file)."""
    if matching.is_hidden(vault(), attachment.id):
        return "known_content"
    return _refusal_name(_previews().refusal(attachment.blob))


def _known_matches(report_id: str) -> list[matching.Match]:
    return matching.matches_of_report(vault(), report_id)


def _refusal_name(error: PreviewError | None) -> str:
    if isinstance(error, TooLarge):
        return "too_large"
    if isinstance(error, Undecodable):
        return "undecodable"
    return ""


def metadata_category(category: str) -> str:
    """The words for a category of metadata (:data:`metadata.CATEGORIES`)."""
    labels = {
        "location": _("Location"),
        "device": _("Device"),
        "author": _("Author"),
        "time": _("Time"),
        "software": _("Software"),
    }
    return str(labels.get(category, _("Other")))


def _previews() -> Previews:
    return cast(Previews, current_app.extensions["previews"])


def _revealed() -> Revealed:
    return cast(Revealed, current_app.extensions["revealed"])


def _session_key() -> str:
    # The anti-forgery token is random and per session: a fine key for per-session state.
    return str(g.analyst_session.csrf)


def _attachment(report_id: str, item_id: str) -> Attachment:
    found = vault().attachment(checked_id(report_id), checked_id(item_id))
    if found is None:
        abort(404)
    return found


@bp.get("/reports/<report_id>/files/<item_id>/details")
@login_required
def details(report_id: str, item_id: str) -> ResponseReturnValue:
    found = _attachment(report_id, item_id)
    kind = kind_of(vault(), found)
    revealed = _revealed().get(_session_key()) == found.id
    hidden = matching.is_hidden(vault(), found.id)
    preview, too_large = (
        ("known_content", None)
        if hidden
        else _make_preview(found, REVEALED if revealed else BLURRED)
    )
    findings = None
    problem = ""
    unsupported = False
    if too_large is not None:
        # mat2 decodes an image whole to read its metadata (cairo, GdkPixbuf): not this one.
        problem = "too_large"
    else:
        try:
            findings = inspect(vault(), found)
        except Unsupported:
            unsupported = True
        except SandboxUnavailable:
            problem = "sandbox"
        except MetadataError:
            problem = "mat2"
    audit.log(vault(), "view_file", report=report_id, item=found.id, mode="details")
    page = render_template(
        "file.html",
        report_id=report_id,
        file=found,
        kind=kind,
        findings=findings,
        unsupported=unsupported,
        problem=problem,
        revealed=revealed,
        preview=preview,
        too_large=too_large,
        matches=[m for m in matching.matches_of_report(vault(), report_id) if m.item_id == item_id],
        max_megapixels=_previews().max_pixels // 1_000_000,
        done=request.args.get("done", ""),
    )
    return Response(page, mimetype="text/html")


def _make_preview(found: Attachment, mode: str) -> tuple[str, TooLarge | None]:
    """Make the page's one preview now (it is then served from memory): ``ready``,
    ``too_large`` (with the refusal, for its size), ``undecodable``, ``busy``, ``sandbox``, or
    ``""`` for a file that is not an image we show."""
    if not kind_of(vault(), found).previewable:
        return "", None
    try:
        _previews().image(vault(), found, mode)
    except TooLarge as error:
        return "too_large", error
    except Undecodable:
        return "undecodable", None
    except Busy:
        return "busy", None
    except SandboxUnavailable:
        return "sandbox", None
    return "ready", None


@bp.get("/reports/<report_id>/files/<item_id>/preview")
@login_required
def preview(report_id: str, item_id: str) -> ResponseReturnValue:
    found = _attachment(report_id, item_id)
    mode = request.args.get("mode", BLURRED)
    if mode not in (BLURRED, REVEALED):
        abort(404)
    if mode == REVEALED and _revealed().get(_session_key()) != found.id:
        abort(403)
    g.download = True  # the sandboxing policy: opened on its own, it runs and loads nothing
    if matching.is_hidden(vault(), found.id):
        # Not made at all, not even blurred, until an analyst asks (unhide).
        return _plain(_("This file matched a list of known content: it is not shown."), 403)
    try:
        png = _previews().image(vault(), found, mode)
    except TooLarge:
        return _plain(_("This image is too large to preview."), 422)
    except Busy:
        words = _("Previews are busy: another image is being decoded. Retry in a moment.")
        return _plain(words, 503, {"Retry-After": str(RETRY_AFTER)})
    except (PreviewError, SandboxUnavailable):
        return _plain(_("This image could not be decoded."), 404)
    return Response(
        png,
        headers={
            "Content-Type": "image/png",
            "Content-Length": str(len(png)),
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )


def _plain(words: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Why there is no preview, as plain text: what an image request gets instead of a PNG."""
    return Response(
        words + "\n",
        status,
        headers={"X-Content-Type-Options": "nosniff", **(headers or {})},
        mimetype="text/plain",
    )


@bp.post("/reports/<report_id>/files/<item_id>/reveal")
@login_required
def reveal(report_id: str, item_id: str) -> ResponseReturnValue:
    found = _attachment(report_id, item_id)
    if not kind_of(vault(), found).previewable or matching.is_hidden(vault(), found.id):
        abort(404 if not kind_of(vault(), found).previewable else 403)
    _revealed().set(_session_key(), found.id)
    audit.log(vault(), "view_file", report=report_id, item=found.id, mode="revealed")
    target = url_for("files.details", report_id=report_id, item_id=found.id, done="revealed")
    return redirect(target + "#preview", 303)


@bp.post("/reports/<report_id>/files/<item_id>/unhide")
@login_required
def unhide(report_id: str, item_id: str) -> ResponseReturnValue:
    """An analyst asks to see a file that matched a hash list (blurred first, like any image):
    recorded in the audit log."""
    found = _attachment(report_id, item_id)
    if matching.is_hidden(vault(), found.id):
        matching.unhide(vault(), report_id, found.id)
    target = url_for("files.details", report_id=report_id, item_id=found.id)
    return redirect(target + "#preview", 303)


@bp.post("/reports/<report_id>/files/<item_id>/blur")
@login_required
def blur(report_id: str, item_id: str) -> ResponseReturnValue:
    found = _attachment(report_id, item_id)
    if _revealed().get(_session_key()) == found.id:
        _revealed().set(_session_key(), None)
    target = url_for("files.details", report_id=report_id, item_id=found.id)
    return redirect(target + "#preview", 303)


@bp.get("/reports/<report_id>/files/<item_id>/clean")
@login_required
def clean(report_id: str, item_id: str) -> ResponseReturnValue:
    """A copy cleaned by mat2, as a download (``application/octet-stream``, attachment).

    The page's link to it has no ``download`` attribute: the response's own
    ``Content-Disposition`` saves the copy, and when none can be made the browser follows the
    redirect and shows the file's page with the error, instead of saving that page as a file."""
    found = _attachment(report_id, item_id)
    try:
        copy = clean_copy(vault(), found)
    except (MetadataError, SandboxUnavailable):
        target = url_for("files.details", report_id=report_id, item_id=found.id, done="unclean")
        return redirect(target, 303)
    audit.log(vault(), "clean_copy", report=report_id, item=found.id, sha256=sha256_hex(copy.data))
    g.download = True
    named = Attachment(found.id, found.day, copy.name, copy.mime, len(copy.data), found.blob)
    return Response(
        copy.data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": content_disposition(named),
            "Content-Length": str(len(copy.data)),
            "X-Content-Type-Options": "nosniff",
        },
    )
