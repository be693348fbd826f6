"""New reports, and the codename a reporter keeps to come back (the no-JavaScript path)."""

import secrets
import unicodedata

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from blagh.web.categories import CATEGORIES, GUIDES
from crypto import codename
from crypto.codename import login_verifier
from source_interface import flash
from source_interface.diskspace import NoSpace, is_no_space
from source_interface.forms import ReportForm, month_names
from source_interface.sealing import files_refused
from source_interface.services import services
from source_interface.sessions import (
    SUBMISSION_FIELD,
    form_token_valid,
    new_submission_id,
    submission_key,
    submission_seed,
)
from source_interface.store.records import DuplicateSubmission, NewSource, Submission, new_id
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
from source_interface.views import sealed

bp = Blueprint("report", __name__, url_prefix="/report")


def _form_page(report: ReportForm, draft: str, kept: list[str], status: int = 200) -> Response:
    # A form sent back for correction keeps its submission id: nothing was stored under it.
    submission = request.form.get(SUBMISSION_FIELD, "") if request.method == "POST" else ""
    page = render_template(
        "report/new.html",
        report=report,
        categories=CATEGORIES,
        guides=GUIDES,
        draft=draft,
        kept_files=kept,
        limits=services().config.source_interface,
        month_names=month_names(),
        submission=submission if submission_seed(submission) else new_submission_id(),
    )
    return make_response(page, status)


def already_stored(seed: bytes, outcome: str) -> Response:
    """The answer to a form whose report is already stored (a double click, a resent POST):
    the page the first request led to.  Its codename page needs its session, whose cookie the
    browser may never have received (it dropped the first request for the second): the
    session is derived from the submission id, so it is handed over here while it is open."""
    svc = services()
    if outcome != "codename":
        return redirect(url_for("report.received"), 303)
    response = redirect(url_for("report.codename_check"), 303)
    if not svc.sessions.resume(request, response, seed):
        return redirect(url_for("report.received", codename=1), 303)
    return response


@bp.get("")
def new() -> ResponseReturnValue:
    return _form_page(ReportForm(), "", [])


@bp.post("")
def submit() -> ResponseReturnValue:
    if sealed.is_sealed_report(request.form):
        return sealed.submit_report()  # sealed in the browser (the JavaScript path)
    svc = services()
    seed = submission_seed(request.form.get(SUBMISSION_FIELD, ""))
    if seed is not None:
        outcome = svc.store.submission(submission_key(seed))
        if outcome is not None:
            return already_stored(seed, outcome)  # its files are discarded with the request
    report = ReportForm.read(request.form)
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
        report.errors["form"] = _(
            "This form had expired or came from another page. Everything you typed is below: "
            "check it and send it again."
        )
    limit = svc.config.source_interface.max_files_per_report
    if len(kept) + len(uploads) > limit:
        report.errors["files"] = _("A report can carry at most %(limit)d files.", limit=limit)
    if lost:
        report.errors["files"] = draft_lost_message()
    if no_space:
        report.errors["files"] = no_space_message()
    if report.errors:
        if len(kept) + len(uploads) > limit or no_space:
            uploads = []
        draft = keep_as_draft(svc, draft_token, uploads, kept_names)
        if draft.lost:
            report.errors["files"] = draft_lost_message()
        return _form_page(report, draft.token, draft.names, 507 if no_space else 400)

    source_keys = None
    secret_codename = None
    new_source = NewSource(None, None)
    session = None
    # A form without a submission id (made before there were any) is stored as it comes.
    seed = seed or secrets.token_bytes(32)
    if report.keep_codename:
        secret_codename = codename.generate(svc.wordlist)
        source_keys = svc.derive(secret_codename)
        new_source = NewSource(
            login_verifier(source_keys.login_secret, svc.login_hash_key), source_keys.public_key
        )
        session = svc.sessions.prepare(source_keys.secret_key, secret_codename, seed)
    outcome = "received" if session is None else "codename"
    submission = Submission(submission_key(seed), outcome)
    # Blobs committed here and not recorded below (a failure, a crash) are referenced by no
    # row: the next sweep removes them.  Source, report and items are one transaction.
    recipients = list(svc.analysts)
    if source_keys is not None:
        recipients.append(source_keys.public_key)
    attachments = kept_names + [upload.filename for upload in uploads]
    try:
        files = kept + [upload.commit() for upload in uploads]
        fields = seal_document(svc, recipients, "report", report.document(attachments))
        svc.store.add_report(
            new_id(),
            [("fields", fields)] + [("file", ref) for ref in files],
            draft=draft_hash,
            new_source=new_source,
            submission=submission,
            new_session=session.row if session else None,
        )
    except DuplicateSubmission as duplicate:
        # The same form's other request stored its report first, while this one streamed in:
        # this one's blobs are referenced by no row (the sweep would remove them; done now).
        for ref in [fields, *files[len(kept) :]]:  # (kept files are the first one's now)
            svc.store.delete_blob(ref.name)
        return already_stored(seed, duplicate.outcome)
    except (NoSpace, OSError) as error:
        if not isinstance(error, NoSpace) and not is_no_space(error):
            raise
        # The disk filled up while storing: the reporter gets the form back with everything
        # typed (and the files kept from earlier, still in their draft), not an error page.
        report.errors["files"] = no_space_message()
        return _form_page(report, draft_token if draft_hash else "", kept_names, 507)
    if session is None:
        return redirect(url_for("report.received"), 303)
    response = redirect(url_for("report.codename_check"), 303)
    svc.sessions.set_cookie(request, response, session.cookie)
    return response


@bp.get("/received")
def received() -> str:
    """``?codename=1``: a report sent again after its codename session ended (logged out)."""
    return render_template("report/received.html", kept_codename=request.args.get("codename"))


@bp.route("/codename", methods=["GET", "POST"])
def codename_check() -> ResponseReturnValue:
    """Show the new codename once, and ask for it back so we know it was written down.

    A wrong one is answered with a redirect back here, its error and what was typed carried
    by the encrypted flash cookie (source_interface/flash.py): going back to a page that
    answered a POST shows "Document Expired" in Firefox."""
    svc = services()
    session = svc.sessions.load(request)
    if session is None or session.pending_codename is None:
        return redirect(url_for("followup.home"), 303)
    words = session.pending_codename.split()
    if request.method == "POST":
        typed = request.form.get("codename", "")[: codename.MAX_INPUT_CHARS]
        if not form_token_valid(request):
            refused: dict[str, object] = {"error": "expired"}
        else:
            wrong = _wrong_positions(typed, words)
            if not wrong:
                svc.sessions.forget_codename(session)
                return redirect(url_for("followup.home", saved=1), 303)
            refused = {"error": "mismatch", "positions": wrong}
        response = redirect(url_for("report.codename_check"), 303)
        flash.keep(request, response, svc.login_hash_key, "codename", {**refused, "typed": typed})
        return response
    response = make_response()
    kept = flash.take(request, response, svc.login_hash_key, "codename") or {}
    error = None
    if kept.get("error") == "expired":
        error = _("This form had expired. Type your codename again.")
    elif kept.get("error") == "mismatch":
        positions = [int(p) for p in kept.get("positions", []) if isinstance(p, int)]
        error = _(
            "This does not match. Check word %(positions)s and type the codename again.",
            positions=", ".join(str(p) for p in positions),
        )
    typed = str(kept.get("typed", ""))
    response.set_data(
        render_template("report/codename.html", words=words, error=error, typed=typed)
    )
    response.status_code = 400 if error else 200
    return response


def _wrong_positions(typed: str, words: list[str]) -> list[int]:
    """1-based positions of the words that differ (missing words count as wrong)."""
    typed_words = unicodedata.normalize("NFKC", typed).casefold().split()
    return [
        i + 1 for i, word in enumerate(words) if i >= len(typed_words) or typed_words[i] != word
    ] + list(range(len(words) + 1, len(typed_words) + 1))
