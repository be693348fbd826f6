"""The pickup API: the transfer station fetches pickup bundles and delivers reply bundles.

Its own small Flask app on its own port (``[pickup] listen_port``), published only as the
client-authorised onion service, and requiring as well the bearer token of a transfer station
(``blagh pickup-token add``).  Without a valid token every request, whatever its path, gets a
bare 401: nothing says which routes exist.

``GET /v1/bundle``
    The pickup bundle of every item not acknowledged yet (docs/bundles.md), with an ``ETag``
    and HTTP range support, so an interrupted download resumes (``Range`` with ``If-Range``).
    Headers ``X-Blagh-Bundle`` and ``X-Blagh-Items`` give its id and how many items it holds.
``POST /v1/replies``
    A reply bundle as the raw request body; answers a JSON summary of what was applied, or
    400 with ``{"error": "<which check failed>"}``, nothing applied.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import wrap_file

from blagh.bundles import BundleError
from blagh.config import Config
from blagh.datadir import DataDir
from blagh.offload import Busy, Offload
from blagh.pickup_tokens import token_hash
from source_interface.app import open_store
from source_interface.pickup.bundles import (
    MAX_REPLY_BUNDLE_BYTES,
    PickupBundle,
    PickupBundles,
    PickupUnavailable,
    import_reply_bundle,
)
from source_interface.quietlog import QuietFlask
from source_interface.store.protocol import ServerStore

UPLOAD_PREFIX = "upload-"
PICKUP_QUEUE = 8
"""Pickup requests waiting for the build thread; a transfer station or two make them."""
_READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Pickup:
    """What the pickup views share."""

    config: Config
    store: ServerStore
    bundles: PickupBundles
    work: Offload
    """Bundle builds and reply imports: long file work, off the event loop, one at a time."""


def create_pickup_app(config: Config) -> Flask:
    """Build the pickup API for ``config``; its data folder must exist (``blagh init``)."""
    data_dir = DataDir(Path(config.instance.data_dir))
    store = open_store(data_dir, config.store)
    app = QuietFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REPLY_BUNDLE_BYTES
    app.extensions["blagh-pickup"] = Pickup(
        config=config,
        store=store,
        bundles=PickupBundles(
            store, config.recipients.analysts, data_dir.read_server_signing_key()
        ),
        work=Offload("pickup bundles", threads=1, queue=PICKUP_QUEUE),
    )
    app.before_request(_authenticate)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.add_url_rule("/v1/bundle", view_func=pickup_bundle, methods=["GET"])
    app.add_url_rule("/v1/replies", view_func=deliver_replies, methods=["POST"])
    return app


def remove_stale_uploads(store: ServerStore) -> None:
    """Remove reply uploads a crash left behind; run before serving."""
    for path in store.pickup_dir.glob(UPLOAD_PREFIX + "*"):
        path.unlink(missing_ok=True)


def _pickup() -> Pickup:
    found: Pickup = current_app.extensions["blagh-pickup"]
    return found


def _unauthorised() -> Response:
    return Response(status=401, headers={"WWW-Authenticate": "Bearer"})


def _authenticate() -> Response | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorised()
    if _pickup().store.pickup_token_name(token_hash(token)) is None:
        return _unauthorised()
    return None


def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _http_error(error: HTTPException) -> ResponseReturnValue:
    if error.code == 401:
        return _unauthorised()
    code = error.code or 500
    return jsonify(error=(error.description or error.name)), code


def pickup_bundle() -> ResponseReturnValue:
    pickup = _pickup()
    try:
        bundle = pickup.work.run(_purge_and_open, pickup)
    except PickupUnavailable as error:
        return jsonify(error=str(error)), 503
    except Busy:
        return jsonify(error="busy: try again in a minute"), 503
    response = Response(
        wrap_file(request.environ, bundle.file),
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )
    response.content_length = bundle.size
    response.set_etag(bundle.etag)
    response.headers["Content-Disposition"] = f'attachment; filename="{bundle.download_name}"'
    response.headers["X-Blagh-Bundle"] = bundle.bundle_id
    response.headers["X-Blagh-Items"] = str(bundle.items)
    try:
        return response.make_conditional(request, accept_ranges=True, complete_length=bundle.size)
    except BaseException:
        bundle.file.close()
        raise


def _purge_and_open(pickup: Pickup) -> PickupBundle:
    pickup.store.purge(pickup.config.retention.delivered_days)
    return pickup.bundles.open_current()


def deliver_replies() -> ResponseReturnValue:
    pickup = _pickup()
    path = pickup.store.pickup_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            received = 0
            while chunk := request.stream.read(_READ_SIZE):
                received += len(chunk)
                if received > MAX_REPLY_BUNDLE_BYTES:
                    raise RequestEntityTooLarge()
                file.write(chunk)
        if received == 0:
            return jsonify(error="the request holds no reply bundle"), 400
        try:
            result = pickup.work.run(
                import_reply_bundle,
                pickup.store,
                pickup.config.recipients.analysts,
                path,
                delivered_days=pickup.config.retention.delivered_days,
                label="the uploaded bundle",
            )
        except BundleError as error:
            return jsonify(error=str(error)), 400
        except Busy:
            return jsonify(error="busy: try again in a minute"), 503
        return jsonify(result.as_json())
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
