"""Coming back with a codename: own reports, replies, adding to a report, deleting it all.

The page decrypts in memory, with the key derived from the codename, only what was sealed to
the source too (report fields, their own messages, analysts' replies); files stay sealed to the
analysts alone.
"""

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from blagh import reporter_status
from blagh.payloads import PayloadError, decode_document
from blagh.web.categories import CATEGORIES
from crypto import codename
from crypto.envelope import open_envelope
from crypto.errors import CryptoError, InvalidCodename
from source_interface import flash
from source_interface import reporter_status as status_text
from source_interface.diskspace import NoSpace, is_no_space
from source_interface.forms import read_message
from source_interface.i18n import isolate
from source_interface.sealing import files_refused
from source_interface.services import Services, services
from source_interface.sessions import SourceSession, form_token_valid
from source_interface.store import Item, Report
from source_interface.submissions import (
    draft_files,
    draft_lost,
    draft_lost_message,
    keep_as_draft,
    no_space_message,
    remove_kept,
    seal_document,
    uploaded_files,
)
from source_interface.throttle import too_many_logins
from source_interface.views import sealed

bp = Blueprint("followup", __name__)


@dataclass(frozen=True)
class Entry:
    """One line of a report's conversation, decrypted for this page only."""

    kind: str
    day: str
    text: str
    attachments: tuple[str, ...]
    item: str = ""
    """The item's id when the browser holds the key and opens it in the page instead."""


@dataclass(frozen=True)
class ReportView:
    id: str
    day: str
    category: str
    danger: bool
    entries: tuple[Entry, ...]
    file_count: int
    fields_item: str = ""
    """The fields' item id when the browser opens them (category and danger are then blank)."""
    status: reporter_status.Status | None = None
    """The latest status the analysts set (it travels sealed, as a reply item)."""

    @property
    def status_label(self) -> str:
        return status_text.label(self.status) if self.status else ""

    @property
    def status_message(self) -> str:
        return status_text.message(self.status) if self.status else ""

    @property
    def status_day(self) -> str:
        return status_text.day(self.status) if self.status else ""


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The codename login.  A refused one is answered with a redirect back here (never a page
    of its own: going back to it would show "Document Expired", reloading it would send the
    codename again); the page after it shows the error and what was typed (source_interface/
    flash.py), so a typo costs one word, not seven."""
    svc = services()
    if request.method == "GET":
        response = make_response()
        kept = flash.take(request, response, svc.login_hash_key, "login") or {}
        error, status = _login_message(kept)
        page = render_template("followup/login.html", error=error, typed=kept.get("typed", ""))
        response.set_data(page)
        response.status_code = status
        return response
    if sealed.is_sealed_login(request.form):
        return sealed.login()  # the codename stayed in the browser (the JavaScript path)
    typed = request.form.get("codename", "")
    refused = _login_refusal(svc, typed)
    if refused is None and svc.login_failures.exceeded():
        refused = {"error": "too-many"}
    if refused is None:
        try:
            keys = svc.derive(typed)
        except InvalidCodename:
            refused = {"error": "word-count"}
        else:
            verifier = codename.login_verifier(keys.login_secret, svc.login_hash_key)
            source = svc.store.source_by_verifier(verifier)
            if source is not None:
                welcome = redirect(url_for("followup.home"), 303)
                svc.sessions.start(request, welcome, source.id, keys.secret_key)
                return welcome
            svc.login_failures.record_failure()
            refused = {"error": "no-match"}
    again = redirect(url_for("followup.login"), 303)
    kept = {**refused, "typed": typed[: codename.MAX_INPUT_CHARS]}
    flash.keep(request, again, svc.login_hash_key, "login", kept)
    return again


def _login_refusal(svc: Services, typed: str) -> dict[str, Any] | None:
    """Why input that cannot be a codename is refused, found before any derivation."""
    if not form_token_valid(request):
        return {"error": "expired"}
    if len(typed) > codename.MAX_INPUT_CHARS:
        return {"error": "too-long"}
    unknown = codename.check_words(typed, svc.accepted_words)
    if unknown:
        return {"error": "unknown-words", "words": unknown[:7]}
    if len(typed.split()) != codename.WORD_COUNT:
        return {"error": "word-count"}
    return None


def _login_message(kept: dict[str, Any]) -> tuple[str | None, int]:
    """The login page's error, in the page's language, and its status."""
    code = kept.get("error")
    if code == "too-many":
        return too_many_logins(), 429
    if code == "expired":
        return _("This form had expired. Type your codename again."), 400
    if code == "too-long":
        return _("This is too long to be a codename: it is seven short words."), 400
    if code == "unknown-words":
        words = isolate(", ".join(str(word) for word in kept.get("words", [])[:7]))
        return (
            _("These words are not codename words: %(words)s. Check their spelling.", words=words),
            400,
        )
    if code == "word-count":
        return _("A codename is seven words separated by spaces."), 400
    if code == "no-match":
        message = _("No report matches this codename. Check each word, in order, and try again.")
        return message, 400
    return None, 200


def _session_or_login() -> SourceSession | Response:
    session = services().sessions.load(request)
    if session is None:
        return redirect(url_for("followup.login"), 303)
    return session


@bp.get("/followup")
def home() -> ResponseReturnValue:
    session = _session_or_login()
    if isinstance(session, Response):
        return session
    return _home_page(session)


def _home_page(
    session: SourceSession,
    errors: dict[str, Any] | None = None,
    typed: str = "",
    draft: str = "",
    kept: list[str] | None = None,
    status: int = 200,
) -> Response:
    svc = services()
    reports = [_view(report, session) for report in svc.store.reports_of(session.source_id)]
    page = render_template(
        "followup/home.html",
        reports=reports,
        categories_by_slug=dict(CATEGORIES),
        status_labels={code: str(text) for code, text in status_text.LABELS.items()},
        status_messages={code: str(text) for code, text in status_text.MESSAGES.items()},
        errors=errors or {},
        typed=typed,
        draft=draft,
        kept_files=kept or [],
        saved=request.args.get("saved") == "1",
        limits=svc.config.source_interface,
        page_keys=sealed.page_keys(svc, session),
    )
    return make_response(page, status)


def _open(item: Item, session: SourceSession, *kinds: str) -> dict[str, Any] | None:
    """The document in ``item`` if it is one of ``kinds``: a reply item holds a ``reply`` or a
    ``status`` (the server cannot tell them apart)."""
    try:
        plaintext = open_envelope(services().store.read_blob(item.blob), [session.secret_key])
    except (CryptoError, OSError):
        return None
    for kind in kinds:
        try:
            return decode_document(plaintext, kind)
        except PayloadError:
            continue
    return None


def _view(report: Report, session: SourceSession) -> ReportView:
    if session.secret_key == sealed.BROWSER_HELD_KEY:
        return _sealed_view(report)
    fields: dict[str, Any] = {}
    entries = []
    status: reporter_status.Status | None = None
    for item in report.items:
        if item.kind == "fields":
            fields = _open(item, session, "report") or {}
        elif item.kind in ("message", "reply"):
            document = _open(
                item, session, *([item.kind, "status"] if item.kind == "reply" else [item.kind])
            )
            if document is not None and document.get("kind") == "status":
                status = reporter_status.read(document) or status
            elif document is not None:
                entries.append(
                    Entry(
                        item.kind,
                        item.day,
                        str(document.get("text", "")),
                        tuple(str(a) for a in document.get("attachments", ())),
                    )
                )
    return ReportView(
        id=report.id,
        day=report.day,
        category=str(fields.get("category", "")),
        danger=bool(fields.get("danger")),
        entries=tuple(entries),
        file_count=sum(1 for item in report.items if item.kind == "file"),
        status=status,
    )


def _sealed_view(report: Report) -> ReportView:
    """The report as the page will open it, with the key the browser holds."""
    fields = [item.id for item in report.items if item.kind == "fields"]
    return ReportView(
        id=report.id,
        day=report.day,
        category="",
        danger=False,
        entries=tuple(
            Entry(item.kind, item.day, "", (), item.id)
            for item in report.items
            if item.kind in ("message", "reply")
        ),
        file_count=sum(1 for item in report.items if item.kind == "file"),
        fields_item=fields[0] if fields else "",
    )


@bp.post("/followup/<report_id>/message")
def add_message(report_id: str) -> ResponseReturnValue:
    session = _session_or_login()
    if isinstance(session, Response):
        return session
    if sealed.is_sealed_message(request.form):
        return sealed.add_message(report_id, session)  # sealed in the browser
    svc = services()
    text, errors = read_message(request.form)
    uploads = uploaded_files(request.sealed_uploads)  # type: ignore[attr-defined]
    no_space = files_refused(request.sealed_uploads)  # type: ignore[attr-defined]
    draft_token = request.form.get("draft", "")
    draft_hash, kept = draft_files(svc, draft_token)
    kept_names = request.form.getlist("kept_file")[: len(kept)]
    lost = draft_lost(request.form, kept)
    if form_token_valid(request):
        # Kept files the reporter removed (their boxes ticked) go before anything else.
        kept, kept_names = remove_kept(svc, request.form, draft_hash, kept, kept_names)
    else:
        errors["form"] = _("This form had expired. Your message is below: send it again.")
    if not text and not uploads and not kept and not no_space:
        errors["message"] = _("Write a message or attach a file.")
    limit = svc.config.source_interface.max_files_per_report
    if len(kept) + len(uploads) > limit:
        errors["files"] = _("A message can carry at most %(limit)d files.", limit=limit)
        uploads = []
    if lost:
        errors["files"] = draft_lost_message()
    if no_space:
        errors["files"] = no_space_message()
        uploads = []
    if svc.store.report(session.source_id, report_id) is None:
        return redirect(url_for("followup.home"), 303)
    if errors:
        draft = keep_as_draft(svc, draft_token, uploads, kept_names)
        if draft.lost:
            errors["files"] = draft_lost_message()
        status = 507 if no_space else 400
        return _home_page(session, errors, text, draft.token, draft.names, status)
    source = svc.store.source(session.source_id)
    assert source is not None and source.public_key is not None
    attachments = kept_names + [upload.filename for upload in uploads]
    try:
        files = kept + [upload.commit() for upload in uploads]
        message = seal_document(
            svc,
            [*svc.analysts, source.public_key],
            "message",
            {"text": text, "attachments": attachments},
        )
        svc.store.add_items(
            session.source_id,
            report_id,
            [("message", message)] + [("file", ref) for ref in files],
            draft=draft_hash,
        )
    except (NoSpace, OSError) as error:
        if not isinstance(error, NoSpace) and not is_no_space(error):
            raise
        # The disk filled up while storing: the message comes back, nothing typed is lost.
        errors["files"] = no_space_message()
        return _home_page(session, errors, text, draft_token if draft_hash else "", kept_names, 507)
    return redirect(url_for("followup.home", sent=1), 303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    svc = services()
    response = redirect(url_for("landing.index"), 303)
    if form_token_valid(request):
        svc.sessions.end(request, response, svc.sessions.load(request))
    return response


@bp.route("/delete", methods=["GET", "POST"])
def delete() -> ResponseReturnValue:
    """Delete everything of this source's: rows, envelopes, session. Asked twice."""
    session = _session_or_login()
    if isinstance(session, Response):
        return session
    svc = services()
    if request.method == "GET" or not form_token_valid(request):
        return make_response(render_template("followup/delete.html"))
    svc.store.delete_source(session.source_id)
    response = make_response(render_template("followup/deleted.html"))
    svc.sessions.end(request, response, session)
    return response
