"""The JavaScript path's small API: chunked uploads, sealed items to open in the page, word list.

Everything here moves ciphertext, or public data (the codename word list):

* ``POST /upload`` (form: ``form_token``, ``size``) starts the upload of one attachment envelope
  of exactly ``size`` bytes, sealed to the analysts; ``PUT /upload/<id>/<n>`` stores its
  ``n``-th piece; ``GET /upload/<id>`` says how much the server has, so a browser whose circuit
  dropped goes on from there; ``DELETE /upload/<id>`` abandons it.  A finished upload becomes a
  report's file when the report (or a follow-up message) names it (views/sealed.py).
* ``GET /followup/item/<id>``: one envelope of the logged-in source's reports (the fields, a
  message, a reply), for the page to open with the key derived in the browser.
* ``GET /codename-words.txt``: the word list, fetched by the page only when it makes or checks
  a codename, its integrity hash given by the page.

Requests that change something carry the anti-forgery token, in the form or in the
``X-Blagh-Form`` header, like every form of the site.  Answers are JSON, errors too, and say
nothing the page does not need.  Two errors the page acts on: 503 ``server full`` (the bounds of
source_interface.presealed are reached: the page sends the report without JavaScript instead)
and 507 ``disk full`` (below the free-space floor: the page shows ``message``, in the reporter's
language, and keeps the form as it was).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from crypto.envelope import sealed_size
from source_interface.browser import WORDLIST_PATH, BrowserAssets
from source_interface.presealed import (
    CHUNK_BYTES,
    DISK_FULL,
    UploadError,
    UploadFolder,
    possible_envelope_size,
)
from source_interface.services import services
from source_interface.sessions import CSRF_COOKIE, form_token_valid
from source_interface.submissions import no_space_message

bp = Blueprint("uploads", __name__)

_T = TypeVar("_T")

FORM_HEADER = "X-Blagh-Form"
SEALED_KINDS = frozenset({"fields", "message", "reply"})


def upload_folder() -> UploadFolder:
    folder: UploadFolder = current_app.extensions["blagh_uploads"]
    return folder


def max_upload_envelope() -> int:
    """The largest attachment envelope accepted: what the no-JS path's request limit allows."""
    svc = services()
    return sealed_size(svc.config.source_interface.max_upload_mb * 1024 * 1024, len(svc.analysts))


def off_loop(function: Callable[..., _T], *args: Any) -> _T:
    """Run upload-folder work (file locks, fsyncs, hashing a whole upload) on the store's I/O
    threads: under gevent the event loop keeps serving, and a lock another request holds is
    waited for by a thread, not by the loop."""
    return services().store.blobs.io.run(function, *args)


def json_error(status: int, reason: str) -> Response:
    response = jsonify(error=reason)
    response.status_code = status
    return response


def upload_error(error: UploadError) -> Response:
    """An :class:`UploadError` as JSON; the disk-full one with a message for the reporter."""
    if error.reason != DISK_FULL:
        return json_error(error.status, error.reason)
    response = jsonify(error=error.reason, message=no_space_message())
    response.status_code = error.status
    return response


def _header_token_valid() -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(FORM_HEADER, "")
    return len(cookie) == 43 and hmac.compare_digest(cookie.encode(), header.encode())


@bp.post("/upload")
def create() -> ResponseReturnValue:
    if not form_token_valid(request):
        return json_error(403, "form expired")
    folder = upload_folder()
    recipients = len(services().analysts)
    try:
        size = int(request.form.get("size", ""))
    except ValueError:
        return json_error(400, "size missing")
    if size > max_upload_envelope():
        return json_error(413, "too large")
    if not possible_envelope_size(size, recipients):
        return json_error(400, "not an envelope size")
    try:
        upload_id = off_loop(folder.create, size, recipients, request.cookies.get(CSRF_COOKIE, ""))
        upload_state = off_loop(folder.state, upload_id)
    except UploadError as error:
        return upload_error(error)
    response = jsonify(id=upload_id, **upload_state.as_json())
    response.status_code = 201
    return response


@bp.get("/upload/<upload_id>")
def state(upload_id: str) -> ResponseReturnValue:
    try:
        return jsonify(off_loop(upload_folder().state, upload_id).as_json())
    except UploadError as error:
        return json_error(error.status, error.reason)


@bp.put("/upload/<upload_id>/<int:index>")
def put(upload_id: str, index: int) -> ResponseReturnValue:
    if not _header_token_valid():
        return json_error(403, "form expired")
    length = request.content_length
    if length is None:
        return json_error(411, "length required")
    if length > CHUNK_BYTES:
        return json_error(413, "piece too large")
    # Bounded just above; get_data reads until the body ends (a stream read may come up short).
    data = request.get_data(cache=False)
    if len(data) != length:
        return json_error(400, "piece cut short")
    try:
        return jsonify(off_loop(upload_folder().put, upload_id, index, data).as_json())
    except UploadError as error:
        return upload_error(error)


@bp.delete("/upload/<upload_id>")
def abandon(upload_id: str) -> ResponseReturnValue:
    if not _header_token_valid():
        return json_error(403, "form expired")
    try:
        upload_folder().delete(upload_id)
    except UploadError as error:
        return json_error(error.status, error.reason)
    return Response(status=204)


@bp.get("/followup/item/<item_id>")
def sealed_item(item_id: str) -> ResponseReturnValue:
    svc = services()
    session = svc.sessions.load(request)
    if session is None:
        return json_error(403, "not logged in")
    for report in svc.store.reports_of(session.source_id):
        for item in report.items:
            if item.id == item_id and item.kind in SEALED_KINDS:
                return Response(svc.store.read_blob(item.blob), mimetype="application/octet-stream")
    return json_error(404, "no such item")


@bp.get(WORDLIST_PATH)
def wordlist() -> ResponseReturnValue:
    assets: BrowserAssets = current_app.extensions["blagh_browser"]
    if not assets.available:
        return json_error(404, "no word list")
    return Response(assets.wordlist, mimetype="text/plain")
