"""New reports, and the codename a reporter keeps to come back (the no-JavaScript path)."""

import unicodedata

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from crypto import codename
from crypto.codename import login_verifier
from source_interface.categories import CATEGORIES
from source_interface.diskspace import NoSpace, is_no_space
from source_interface.forms import ReportForm, month_names
from source_interface.sealing import files_refused
from source_interface.services import services
from source_interface.sessions import form_token_valid
from source_interface.store.index import NewSource, new_id
from source_interface.submissions import (
    draft_files,
    draft_lost,
    draft_lost_message,
    keep_as_draft,
    no_space_message,
    seal_document,
    uploaded_files,
)
from source_interface.views import sealed

bp = Blueprint("report", __name__, url_prefix="/report")


def _form_page(report: ReportForm, draft: str, kept: list[str], status: int = 200) -> Response:
    page = render_template(
        "report/new.html",
        report=report,
        categories=CATEGORIES,
        draft=draft,
        kept_files=kept,
        limits=services().config.source_interface,
        month_names=month_names(),
    )
    return make_response(page, status)


@bp.get("")
def new() -> ResponseReturnValue:
    return _form_page(ReportForm(), "", [])


@bp.post("")
def submit() -> ResponseReturnValue:
    if sealed.is_sealed_report(request.form):
        return sealed.submit_report()  # sealed in the browser (the JavaScript path)
    svc = services()
    report = ReportForm.read(request.form)
    uploads = uploaded_files(request.sealed_uploads)  # type: ignore[attr-defined]
    no_space = files_refused(request.sealed_uploads)  # type: ignore[attr-defined]
    draft_token = request.form.get("draft", "")
    draft_hash, kept = draft_files(svc, draft_token)
    kept_names = request.form.getlist("kept_file")[: len(kept)]
    if not form_token_valid(request):
        report.errors["form"] = _(
            "This form had expired or came from another page. Everything you typed is below: "
            "check it and send it again."
        )
    limit = svc.config.source_interface.max_files_per_report
    if len(kept) + len(uploads) > limit:
        report.errors["files"] = _("A report can carry at most %(limit)d files.", limit=limit)
    if draft_lost(request.form, kept):
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
    if report.keep_codename:
        secret_codename = codename.generate(svc.wordlist)
        source_keys = svc.derive(secret_codename)
        new_source = NewSource(
            login_verifier(source_keys.login_secret, svc.login_hash_key), source_keys.public_key
        )
    # Blobs committed here and not recorded below (a failure, a crash) are referenced by no
    # row: the next sweep removes them.  Source, report and items are one transaction.
    recipients = list(svc.analysts)
    if source_keys is not None:
        recipients.append(source_keys.public_key)
    attachments = kept_names + [upload.filename for upload in uploads]
    try:
        files = kept + [upload.commit() for upload in uploads]
        fields = seal_document(svc, recipients, "report", report.document(attachments))
        stored = svc.store.index.add_report(
            new_id(),
            [("fields", fields)] + [("file", ref) for ref in files],
            draft=draft_hash,
            new_source=new_source,
        )
    except (NoSpace, OSError) as error:
        if not isinstance(error, NoSpace) and not is_no_space(error):
            raise
        # The disk filled up while storing: the reporter gets the form back with everything
        # typed (and the files kept from earlier, still in their draft), not an error page.
        report.errors["files"] = no_space_message()
        return _form_page(report, draft_token if draft_hash else "", kept_names, 507)
    if source_keys is None:
        return redirect(url_for("report.received"), 303)
    response = redirect(url_for("report.codename_check"), 303)
    svc.sessions.start(request, response, stored.source_id, source_keys.secret_key, secret_codename)
    return response


@bp.get("/received")
def received() -> str:
    return render_template("report/received.html")


@bp.route("/codename", methods=["GET", "POST"])
def codename_check() -> ResponseReturnValue:
    """Show the new codename once, and ask for it back so we know it was written down."""
    svc = services()
    session = svc.sessions.load(request)
    if session is None or session.pending_codename is None:
        return redirect(url_for("followup.home"), 303)
    words = session.pending_codename.split()
    error = None
    typed = ""
    if request.method == "POST":
        typed = request.form.get("codename", "")[: codename.MAX_INPUT_CHARS]
        if not form_token_valid(request):
            error = _("This form had expired. Type your codename again.")
        else:
            wrong = _wrong_positions(typed, words)
            if not wrong:
                svc.sessions.forget_codename(session)
                return redirect(url_for("followup.home", saved=1), 303)
            error = _(
                "This does not match. Check word %(positions)s and type the codename again.",
                positions=", ".join(str(p) for p in wrong),
            )
    page = render_template("report/codename.html", words=words, error=error, typed=typed)
    return make_response(page, 400 if error else 200)


def _wrong_positions(typed: str, words: list[str]) -> list[int]:
    """1-based positions of the words that differ (missing words count as wrong)."""
    typed_words = unicodedata.normalize("NFKC", typed).casefold().split()
    return [
        i + 1 for i, word in enumerate(words) if i >= len(typed_words) or typed_words[i] != word
    ] + list(range(len(words) + 1, len(typed_words) + 1))
