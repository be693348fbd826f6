"""The same report form sent twice stores one report (issue 14: a double click on Send, 9
reports became 11), and every request of it lands where the first led.

The report form carries a one-time submission id; the store records its keyed hash with the
report, in the same transaction, and a second report from it is refused there.  A codename's
session is derived from the id, so a browser that never got the first answer's cookie (it had
dropped the first request for the second) is handed the same session, and the same codename.
Real SQLCipher store, real argon2id, Flask's test client (tests/test_browser_engines.py does it
with browsers and a buffering relay).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_helpers import (
    Site,
    analyst_reports,
    confirm_codename,
    counts,
    form_state,
    open_site,
    post_report,
    shown_codename,
)
from test_browser_api import analysts, b64, report_fields, send_report

from crypto import codename
from crypto.envelope import seal
from source_interface.sessions import SESSION_COOKIE, submission_key, submission_seed
from source_interface.store.index import DuplicateSubmission, NewSource, Submission, new_id, today


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as site:
        yield site


def open_form(client) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The report form's token and submission id."""
    state = form_state(client.get("/report"))
    return state.value("form_token"), state.value("submission")


def test_each_form_has_its_own_submission_id(site: Site) -> None:
    client = site.client()
    first, second = open_form(client)[1], open_form(client)[1]
    assert first != second
    assert submission_seed(first) is not None and submission_seed(second) is not None


def test_a_form_sent_twice_stores_one_report(site: Site) -> None:
    client = site.client()
    token, submission = open_form(client)
    files = [(b"photo bytes " * 1000, "photo.jpg", "image/jpeg")]
    answers = [
        post_report(client, token, files, submission=submission, keep_codename="no")
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [303, 303]
    assert {a.headers["Location"] for a in answers} == {"/report/received"}
    assert len(analyst_reports(site)) == 1
    assert counts(site)["blobs"] == 2  # fields and one file: the second copy was not kept
    # Another form of the same browser is another report.
    token, other = open_form(client)
    assert post_report(client, token, submission=other, keep_codename="no").status_code == 303
    assert len(analyst_reports(site)) == 2


def test_the_second_request_gets_the_first_ones_codename(site: Site) -> None:
    """The browser dropped the first request: it never got its cookie.  The second request of
    the same form (another cookie jar here) is shown the codename the first one made."""
    first = site.client()
    token, submission = open_form(first)
    answer = post_report(first, token, submission=submission, keep_codename="yes")
    assert answer.headers["Location"] == "/report/codename"
    words = shown_codename(first.get("/report/codename"))

    second = site.client()
    second.set_cookie("blagh_form", token)
    again = post_report(second, token, submission=submission, keep_codename="yes")
    assert again.status_code == 303 and again.headers["Location"] == "/report/codename"
    assert shown_codename(second.get("/report/codename")) == words
    assert confirm_codename(second, words).headers["Location"] == "/followup?saved=1"
    assert counts(site)["reports"] == 1 and counts(site)["sources"] == 1

    # Logged out: the session is gone, and sending the form again gives nothing back.
    second.post("/logout", data={"form_token": token})
    third = site.client()
    third.set_cookie("blagh_form", token)
    late = post_report(third, token, submission=submission, keep_codename="yes")
    assert late.headers["Location"] == "/report/received?codename=1"
    assert third.get_cookie(SESSION_COOKIE) is None
    assert "Log in with your codename" in third.get(late.headers["Location"]).get_data(as_text=True)
    assert counts(site)["reports"] == 1


def test_a_sealed_report_sent_twice_is_stored_once(site: Site) -> None:
    """The JavaScript path: an answer lost, the page sends the same sealed form again."""
    client = site.client()
    token, submission = open_form(client)
    words = codename.generate(site.services.wordlist)
    keys = codename.derive(words, site.services.instance_salt)
    fields = seal(report_fields(), [*analysts(site), keys.public_key])
    more = {
        "source_key": b64(keys.public_key),
        "login_secret": b64(keys.login_secret),
        "submission": submission,
    }
    first = send_report(client, fields, **more)
    assert first.status_code == 200 and first.get_json()["next"] == "/followup?saved=1"
    other = site.client()
    other.set_cookie("blagh_form", token)
    again = send_report(other, fields, **more)
    assert again.status_code == 200 and again.get_json()["next"] == "/followup?saved=1"
    assert other.get_cookie(SESSION_COOKIE) is not None
    assert 'data-key-held="browser"' in other.get("/followup").get_data(as_text=True)
    assert counts(site)["reports"] == 1


def test_the_store_refuses_a_second_report_of_a_submission(site: Site) -> None:
    """In one transaction: whichever request of the form commits second records nothing, even
    when both passed the first look (both streamed in at once)."""
    index = site.store.index
    key = submission_key(base64.urlsafe_b64decode(b"A" * 43 + b"="))
    refs = []
    for _ in range(2):
        blob = site.store.new_blob()
        blob.write(b"x" * 100)
        refs.append(blob.commit())
    index.add_report(
        new_id(),
        [("fields", refs[0])],
        new_source=NewSource(None, None),
        submission=Submission(key, "received"),
    )
    with pytest.raises(DuplicateSubmission) as raised:
        index.add_report(
            new_id(),
            [("fields", refs[1])],
            new_source=NewSource(None, None),
            submission=Submission(key, "codename"),
        )
    assert raised.value.outcome == "received"
    assert index.submission(key) == "received"
    assert counts(site)["reports"] == 1 and counts(site)["sources"] == 1


def test_submissions_are_kept_a_day_or_two_at_day_granularity(site: Site) -> None:
    index = site.store.index
    with index.transaction() as db:
        for key, day in ((b"old", "2000-01-01"), (b"new", today())):
            db.execute(
                "INSERT INTO submissions (key, outcome, day) VALUES (?, 'received', ?)", (key, day)
            )
    assert index.expire_submissions() == 1
    assert index.submission(b"old") is None and index.submission(b"new") == "received"
