"""Forms sent by the page's script with envelopes in place of plaintext (the JavaScript path).

The report form, the codename login and the follow-up message form post here, through their
usual addresses (views/report.py and views/followup.py hand over when the form carries
``sealed_fields``, ``login_secret`` or ``sealed_message``), what the browser made:

* a report: ``sealed_fields`` (the fields document sealed to the analysts, and to the source
  when a codename is kept), ``upload`` (ids of finished chunked uploads, one per file), and
  for a kept codename the source's public key (``source_key``) and login secret
  (``login_secret``), both derived in the browser from a codename the server never sees;
* a login: ``login_secret`` alone, derived from the typed codename in the browser;
* a message: ``sealed_message`` and ``upload``.

The server checks every envelope's shape and size (source_interface.presealed), stores them as
it stores its own, and answers in JSON: ``{"next": url}`` to go on, or ``{"error": text}`` in
the reporter's language, the form left as it was in the page.  What is stored is the same as
on the no-JavaScript path, so neither the server's store nor the workstation tells them apart.

A session started here holds no secret key: the page keeps the source's key (sessionStorage)
and opens sealed items itself.  :data:`BROWSER_HELD_KEY` stands in its place in the session.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets

from flask import Response, jsonify, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from crypto.codename import LOGIN_SECRET_BYTES, login_verifier
from crypto.envelope import KEY_SIZE, check_public_key
from crypto.errors import InvalidPublicKey
from source_interface.diskspace import is_no_space
from source_interface.presealed import UploadError, envelope_shape_ok
from source_interface.services import Services, services
from source_interface.sessions import (
    SUBMISSION_FIELD,
    SourceSession,
    form_token,
    form_token_valid,
    set_form_token,
    submission_key,
    submission_seed,
)
from source_interface.store import BlobRef
from source_interface.store.records import DuplicateSubmission, NewSource, Submission, new_id
from source_interface.submissions import (
    draft_files,
    draft_lost,
    draft_lost_message,
    no_space_message,
    remove_kept,
)
from source_interface.throttle import too_many_logins
from source_interface.views.uploads import max_upload_envelope, off_loop, upload_folder

BROWSER_HELD_KEY = bytes(32)
"""The session's "secret key" when the browser holds the real one: no key, never used to open."""

MAX_DOCUMENT_ENVELOPE = 768 * 1024
"""A report's fields or a message, sealed: the longest form the pages accept fits easily, and
in base64 it stays under the form's 1 MiB per field."""


class Rejected(Exception):
    """The sealed form cannot be stored; ``message`` is for the reporter, ``extra`` for the page
    (``draft_lost``: the files kept from an earlier attempt are gone; ``uploads_lost``: an
    upload the form names is gone, so the page must send its files again)."""

    def __init__(self, status: int, message: str, **extra: bool) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def is_sealed_report(form: MultiDict[str, str]) -> bool:
    return "sealed_fields" in form


def is_sealed_login(form: MultiDict[str, str]) -> bool:
    return "login_secret" in form and "codename" not in form


def is_sealed_message(form: MultiDict[str, str]) -> bool:
    return "sealed_message" in form


def page_keys(svc: Services, session: SourceSession) -> dict[str, str]:
    """What the follow-up page's script needs beyond the analysts' keys: the source's public key
    (messages are sealed to it too) and who holds its secret key (the browser or the server)."""
    source = svc.store.source(session.source_id)
    public = source.public_key if source is not None else None
    return {
        "data-source-key": base64.b64encode(public).decode("ascii") if public else "",
        "data-key-held": "browser" if session.secret_key == BROWSER_HELD_KEY else "server",
    }


def _answer(status: int, **body: object) -> Response:
    """JSON, with the form token (set anew if it had expired) for the page's next attempt."""
    token, is_new = form_token(request)
    response = jsonify(form_token=token, **body)
    response.status_code = status
    if is_new:
        set_form_token(request, response, token)
    return response


def _unreadable() -> Rejected:
    return Rejected(
        400,
        _(
            "Your browser sent something this site could not read, or the page you sent it "
            "from had expired."
        ),
    )


def _decode(value: str | None, size: int | None = None, limit: int | None = None) -> bytes:
    if value is None:
        raise _unreadable()
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _unreadable() from None
    if (size is not None and len(data) != size) or (limit is not None and len(data) > limit):
        raise _unreadable()
    return data


def _public_key(value: str | None) -> bytes:
    """The source's public key, refused here if nothing could be sealed to it (a low-order or
    non-canonical point, which a browser deriving it from a codename never sends): stored,
    it would make every later seal to the source fail."""
    key = _decode(value, KEY_SIZE)
    try:
        check_public_key(key)
    except InvalidPublicKey:
        raise _unreadable() from None
    return key


def _document(field: str, recipients: int) -> bytes:
    envelope = _decode(request.form.get(field), limit=MAX_DOCUMENT_ENVELOPE)
    if not envelope_shape_ok(envelope, recipients):
        raise _unreadable()
    return envelope


def _too_much(svc: Services) -> Rejected:
    limits = svc.config.source_interface
    return Rejected(
        413,
        _(
            "Nothing was saved: what you sent is larger than this site accepts. A report "
            "may hold at most %(files)d files and %(size)d MB in all.",
            files=limits.max_files_per_report,
            size=limits.max_upload_mb,
        ),
    )


class _Files:
    """A sealed form's files: kept from a draft, and finished uploads linked in as blobs."""

    def __init__(self, svc: Services, too_many: str) -> None:
        self.svc = svc
        self.upload_ids = request.form.getlist("upload")
        self.draft_hash, self.kept = draft_files(svc, request.form.get("draft", ""))
        self.linked: list[BlobRef] = []
        if draft_lost(request.form, self.kept):
            raise Rejected(409, draft_lost_message(), draft_lost=True)
        # Files kept from an earlier attempt that the reporter removed (their boxes ticked).
        names = request.form.getlist("kept_file")[: len(self.kept)]
        self.kept, _names = remove_kept(svc, request.form, self.draft_hash, self.kept, names)
        limit = svc.config.source_interface.max_files_per_report
        if len(self.upload_ids) + len(self.kept) > limit:
            raise Rejected(400, too_many)

    def link(self) -> list[BlobRef]:
        folder = upload_folder()
        blobs = self.svc.store.blobs
        recipients = len(self.svc.analysts)
        for upload_id in self.upload_ids:
            try:
                self.linked.append(off_loop(folder.link_into, upload_id, blobs, recipients))
            except UploadError as error:
                if error.status == 404:  # given up to make room, or expired
                    raise Rejected(400, _uploads_lost(), uploads_lost=True) from None
                raise _unreadable() from None
        if sum(ref.size for ref in self.linked) > max_upload_envelope():
            raise _too_much(self.svc)
        return self.kept + self.linked

    def done(self) -> None:
        """The items are recorded: the uploads are blobs now, forget them as uploads, and give
        the blobs the day's start as their times (an upload's last piece set them)."""
        folder = upload_folder()
        for upload_id in self.upload_ids:
            with contextlib.suppress(UploadError, OSError):
                folder.delete(upload_id)
        for ref in self.linked:
            with contextlib.suppress(OSError):
                self.svc.store.blobs.stamp(ref.name)

    def undo(self) -> None:
        for ref in self.linked:
            with contextlib.suppress(OSError, ValueError):
                self.svc.store.delete_blob(ref.name)


def _uploads_lost() -> str:
    message: str = _(
        "The server no longer has a file you sent (it waited too long for the report). "
        "Nothing was saved: send the report again, and your files will be sent again."
    )
    return message


def _store_whole(svc: Services, envelope: bytes) -> BlobRef:
    try:
        blob = svc.store.new_blob()
        try:
            blob.write(envelope)
            return blob.commit()
        except BaseException:
            blob.discard()
            raise
    except OSError as error:
        if is_no_space(error):
            raise Rejected(507, no_space_message()) from None
        raise


def submit_report() -> Response:
    """A report sealed in the browser: check, store, and say where the page goes next."""
    svc = services()
    seed = submission_seed(request.form.get(SUBMISSION_FIELD, ""))
    if seed is not None:
        outcome = svc.store.submission(submission_key(seed))
        if outcome is not None:
            return _already_stored(svc, seed, outcome)
    try:
        return _submit_report(svc, seed or secrets.token_bytes(32))
    except Rejected as rejected:
        return _answer(rejected.status, error=rejected.message, **rejected.extra)


def _already_stored(svc: Services, seed: bytes, outcome: str) -> Response:
    """The same form's report is stored (its answer was lost, and the page sent it again):
    where the first answer led, with the first's session (views/report.py)."""
    if outcome != "codename":
        return _answer(200, next=url_for("report.received"))
    response = _answer(200, next=url_for("followup.home", saved=1))
    if not svc.sessions.resume(request, response, seed):
        return _answer(200, next=url_for("report.received", codename=1))
    return response


def _submit_report(svc: Services, seed: bytes) -> Response:
    if not form_token_valid(request):
        raise Rejected(
            400,
            _(
                "This form had expired or came from another page. Everything you typed is "
                "below: check it and send it again."
            ),
        )
    form = request.form
    keeps_codename = "source_key" in form or "login_secret" in form
    source_key = login_secret = None
    if keeps_codename:
        source_key = _public_key(form.get("source_key"))
        login_secret = _decode(form.get("login_secret"), LOGIN_SECRET_BYTES)
    fields = _document("sealed_fields", len(svc.analysts) + int(keeps_codename))
    limit = svc.config.source_interface.max_files_per_report
    files = _Files(svc, _("A report can carry at most %(limit)d files.", limit=limit))

    verifier = None
    if login_secret is not None:
        verifier = login_verifier(login_secret, svc.login_hash_key)
        if svc.store.source_by_verifier(verifier) is not None:
            # The login secret of an existing source: only its owner could send it, and one
            # codename does not make a second source.
            raise _unreadable()
    session = None if source_key is None else svc.sessions.prepare(BROWSER_HELD_KEY, None, seed)
    outcome = "received" if session is None else "codename"
    fields_ref = None
    try:
        refs = files.link()
        fields_ref = _store_whole(svc, fields)
        # Source, report, items, the form's submission and the session in one transaction,
        # as on the no-JS path.  A fields blob committed and not recorded (a failure, a crash)
        # is referenced by no row: the next sweep removes it.
        svc.store.add_report(
            new_id(),
            [("fields", fields_ref)] + [("file", ref) for ref in refs],
            draft=files.draft_hash,
            new_source=NewSource(verifier, source_key),
            submission=Submission(submission_key(seed), outcome),
            new_session=session.row if session else None,
        )
    except DuplicateSubmission as duplicate:
        # The same form's other request stored it first: this one's copies are not needed.
        files.undo()
        files.done()
        if fields_ref is not None:
            svc.store.delete_blob(fields_ref.name)
        return _already_stored(svc, seed, duplicate.outcome)
    except BaseException:
        files.undo()
        raise
    files.done()
    if session is None:
        return _answer(200, next=url_for("report.received"))
    response = _answer(200, next=url_for("followup.home", saved=1))
    svc.sessions.set_cookie(request, response, session.cookie)
    return response


def login() -> Response:
    """A login with the secret the browser derived from the codename (never the codename)."""
    svc = services()
    if not form_token_valid(request):
        return _answer(400, error=_("This form had expired. Type your codename again."))
    try:
        secret = _decode(request.form.get("login_secret"), LOGIN_SECRET_BYTES)
    except Rejected as rejected:
        return _answer(rejected.status, error=rejected.message, **rejected.extra)
    if svc.login_failures.exceeded():
        return _answer(429, error=too_many_logins())
    source = svc.store.source_by_verifier(login_verifier(secret, svc.login_hash_key))
    if source is not None:
        response = _answer(200, next=url_for("followup.home"))
        svc.sessions.start(request, response, source.id, BROWSER_HELD_KEY)
        return response
    svc.login_failures.record_failure()
    return _answer(
        400, error=_("No report matches this codename. Check each word, in order, and try again.")
    )


def add_message(report_id: str, session: SourceSession) -> Response:
    """A follow-up message sealed in the browser, to the analysts and the source."""
    svc = services()
    try:
        if not form_token_valid(request):
            raise Rejected(400, _("This form had expired. Your message is below: send it again."))
        message = _document("sealed_message", len(svc.analysts) + 1)
        limit = svc.config.source_interface.max_files_per_report
        files = _Files(svc, _("A message can carry at most %(limit)d files.", limit=limit))
        if svc.store.report(session.source_id, report_id) is None:
            raise _unreadable()
        try:
            refs = files.link()
            message_ref = _store_whole(svc, message)
            added = svc.store.add_items(
                session.source_id,
                report_id,
                [("message", message_ref)] + [("file", ref) for ref in refs],
                draft=files.draft_hash,
            )
            if not added:
                raise _unreadable()
        except BaseException:
            files.undo()
            raise
        files.done()
    except Rejected as rejected:
        return _answer(rejected.status, error=rejected.message, **rejected.extra)
    return _answer(200, next=url_for("followup.home", sent=1))
