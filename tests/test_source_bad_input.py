"""Every kind of bad input gets a clear page, and nothing is left half-stored.

"Nothing half-stored" is checked by counting rows (sources, reports, items, drafts, sessions),
committed blobs and files still being written (blobs/tmp) before and after each request.  The
one thing a refused form may keep on purpose is its files, as a *draft*, so that the reporter
does not upload them again: those are counted separately.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from source_helpers import (
    REPORT_FIELDS,
    Site,
    analyst_reports,
    assert_consistent,
    confirm_codename,
    counts,
    form_state,
    fresh_token,
    login,
    multipart,
    open_site,
    page_text,
    page_token,
    post_report,
    raw_multipart,
    session_cookie,
    submit_for_codename,
)
from werkzeug.test import TestResponse

import crypto.codename
import source_interface.throttle
from blagh.web.categories import SLUGS
from source_interface.forms import MAX_DESCRIPTION

TYPED = {
    "category": "harassment",
    "danger": "yes",
    "description": "He writes to me every day <script>alert(1)</script> & threatens me.",
    "links": "https://example.com/u/1\n@handle_2",
    "platform": "Chat app",
    "seen_day": "15",
    "seen_month": "1",
    "seen_year": "2025",
    "name": "Sam O'Neil",
    "phone": "+33 6 12 34 56 78",
    "email": "sam@example.org",
    "keep_codename": "no",
}
"""A whole form, with characters that need escaping, to check nothing typed is lost."""

NOTHING = {"sources": 0, "reports": 0, "items": 0, "drafts": 0, "sessions": 0, "blobs": 0, "tmp": 0}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as site:
        yield site


def assert_everything_kept(response: TestResponse, typed: dict[str, str]) -> None:
    """The form page sent back shows every value as typed (trimmed), boxes still ticked."""
    state = form_state(response)
    for name in ("description", "links", "platform", "name", "phone", "email"):
        if name in typed:
            assert state.value(name) == typed[name].strip(), name
    for name in ("seen_day", "seen_month", "seen_year"):
        if name in typed:
            expected = typed[name].strip()
            if name == "seen_month" and expected not in {str(m) for m in range(1, 13)}:
                expected = ""  # a menu cannot show a month it does not have
            assert state.value(name) == expected, name
    # A category is a radio button: an unknown one cannot be shown checked, so none is.
    known = typed.get("category") in SLUGS
    assert state.checked.get("category") == ([typed["category"]] if known else None)
    assert state.checked.get("danger") == (["yes"] if typed.get("danger") == "yes" else None)
    expected_choice = "no" if typed.get("keep_codename") == "no" else "yes"
    assert state.checked.get("keep_codename") == [expected_choice]


def assert_form_error(response: TestResponse, field: str, words: str) -> None:
    """A 400 form page with an error next to ``field`` saying ``words``, the field marked."""
    assert response.status_code == 400
    state = form_state(response)
    assert words in state.errors.get(field, ""), state.errors
    if field == "seen_on":  # a day is asked in three fields
        assert {"seen_day", "seen_month", "seen_year"} <= state.invalid, state.invalid
    elif field != "form":
        assert field in state.invalid, state.invalid
    assert "Please correct what is marked below" in page_text(response)


# --- the report form -----------------------------------------------------------------------


def test_missing_category_and_description(site: Site) -> None:
    client = site.client()
    typed = {**TYPED, "category": "", "description": "   "}
    response = post_report(client, fresh_token(client), **typed)
    assert_form_error(response, "category", "Choose what kind of crime")
    assert_form_error(response, "description", "Describe what happened")
    assert_everything_kept(response, typed)
    assert counts(site) == NOTHING


def test_fields_are_kept_and_escaped(site: Site) -> None:
    client = site.client()
    response = post_report(client, fresh_token(client), **{**TYPED, "category": ""})
    assert response.status_code == 400
    raw = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in raw
    assert "&lt;script&gt;" in raw
    assert_everything_kept(response, {**TYPED, "category": ""})


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"description": "x" * (MAX_DESCRIPTION + 1)}, "description", "too long"),
        ({"category": "piracy"}, "category", "Choose what kind of crime"),
        ({"category": "fraud\x00"}, "category", "Choose what kind of crime"),
        ({"seen_month": ""}, "seen_on", "choose the month"),
        ({"seen_day": ""}, "seen_on", "a number from 1 to 31"),
        ({"seen_year": "25"}, "seen_on", "the year in four digits"),
        ({"seen_day": "1st"}, "seen_on", "a number from 1 to 31"),
        ({"seen_day": "30", "seen_month": "2"}, "seen_on", "does not exist"),
        ({"seen_day": "15", "seen_month": "13"}, "seen_on", "does not exist"),
        (
            {"seen_year": str(datetime.now(UTC).year + 1)},
            "seen_on",
            "in the future",
        ),
        ({"email": "not an address"}, "email", "does not look right"),
        ({"email": "@example.org"}, "email", "does not look right"),
        ({"email": "a@" + "b" * 260 + ".org"}, "email", "does not look right"),
        ({"phone": "call me maybe"}, "phone", "digits, spaces and +"),
        ({"phone": "1" * 41}, "phone", "digits, spaces and +"),
        ({"name": "n" * 201}, "name", "too long"),
        ({"platform": "p" * 201}, "platform", "too long"),
        ({"links": "\n".join(f"https://e.example/{i}" for i in range(51))}, "links", "at most"),
        ({"links": "https://e.example/" + "a" * 2100}, "links", "at most"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else None,
)
def test_bad_field(site: Site, changes: dict[str, str], field: str, words: str) -> None:
    client = site.client()
    typed = {**TYPED, **changes}
    response = post_report(client, fresh_token(client), **typed)
    assert_form_error(response, field, words)
    assert_everything_kept(response, typed)
    assert counts(site) == NOTHING


def test_a_day_today_or_long_ago_is_accepted(site: Site) -> None:
    client = site.client()
    for day in (date(1999, 12, 31), datetime.now(UTC).date()):
        response = post_report(
            client,
            fresh_token(client),
            seen_day=str(day.day),
            seen_month=str(day.month),
            seen_year=str(day.year),
            keep_codename="no",
        )
        assert response.status_code == 303
    assert sorted(r.fields["seen_on"] for r in analyst_reports(site)) == [
        "1999-12-31",
        datetime.now(UTC).date().isoformat(),
    ]


@pytest.mark.parametrize(
    ("phone", "sealed"),
    [
        ("٠٥٥٥ ١٢ ٣٤ ٥٦", "0555 12 34 56"),
        ("+٢١٣ (٠) ٥٥٥-١٢٣٤", "+213 (0) 555-1234"),
        ("۰۹۱۲ ۳۴۵", "0912 345"),
    ],
)
def test_arabic_indic_digits_in_phone_numbers(site: Site, phone: str, sealed: str) -> None:
    """Arabic keyboards type Arabic-Indic (or Persian) digits: accepted, sealed as 0-9."""
    client = site.client()
    response = post_report(client, fresh_token(client), phone=phone, keep_codename="no")
    assert response.status_code == 303
    assert analyst_reports(site)[0].fields["identity"]["phone"] == sealed


@pytest.mark.parametrize(
    ("parts", "sealed"),
    [
        (("15", "1", "2025"), "2025-01-15"),
        (("05", "03", "2024"), "2024-03-05"),
        (("٢٩", "2", "٢٠٢٤"), "2024-02-29"),
        ((" 9 ", "12", " 2023 "), "2023-12-09"),
    ],
)
def test_days_are_sealed_as_year_month_day(
    site: Site, parts: tuple[str, str, str], sealed: str
) -> None:
    """The three fields (Arabic-Indic digits too) become YYYY-MM-DD for the analyst, as
    docs/payloads.md says."""
    client = site.client()
    day, month, year = parts
    response = post_report(
        client,
        fresh_token(client),
        seen_day=day,
        seen_month=month,
        seen_year=year,
        keep_codename="no",
    )
    assert response.status_code == 303
    assert analyst_reports(site)[0].fields["seen_on"] == sealed


@pytest.mark.parametrize("language", ["ar", "fr", "en", "es"])
def test_the_day_is_asked_in_the_pages_language(site: Site, language: str) -> None:
    """Issue 14: a type="date" field shows the browser's mm/dd/yyyy on an Arabic page (Tor
    Browser reports en-US).  The page asks for day, month and year in its own language, and
    the server's error names those same fields."""
    client = site.client()
    page = client.get(f"/report?lang={language}")
    text = page.get_data(as_text=True)
    assert 'type="date"' not in text
    march = {"ar": "مارس", "fr": "mars", "en": "March", "es": "marzo"}[language]
    assert f'<option value="3">{march}</option>' in text
    response = post_report(
        client, page_token(page), seen_day="31", seen_month="2", seen_year="2025"
    )
    assert response.status_code == 400
    error = form_state(response).errors["seen_on"]
    expected = {
        "ar": "هذا التاريخ غير موجود",
        "fr": "Cette date n’existe pas",
        "en": "This date does not exist",
        "es": "Esta fecha no existe",
    }[language]
    assert error.startswith(expected), error
    assert {"seen_day", "seen_month", "seen_year"} <= form_state(response).invalid


def test_a_day_sent_as_one_field_by_an_older_page_is_read(site: Site) -> None:
    """A report form left open across the upgrade sends ``seen_on`` as year-month-day."""
    client = site.client()
    response = post_report(client, fresh_token(client), seen_on="2025-01-15", keep_codename="no")
    assert response.status_code == 303
    assert analyst_reports(site)[0].fields["seen_on"] == "2025-01-15"


def test_description_at_the_limit_is_accepted(site: Site) -> None:
    client = site.client()
    description = "é" * MAX_DESCRIPTION
    response = post_report(client, fresh_token(client), description=description, keep_codename="no")
    assert response.status_code == 303
    [report] = analyst_reports(site)
    assert report.fields["description"] == description


# --- the form token ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "x" * 43, "short"])
def test_missing_or_wrong_form_token(site: Site, token: str | None) -> None:
    client = site.client()
    fresh_token(client)
    response = post_report(client, token, **TYPED)
    assert_form_error(response, "form", "This form had expired or came from another page")
    assert_everything_kept(response, TYPED)
    assert counts(site) == NOTHING
    # The page sent back carries the right token: sending it again works.
    again = post_report(client, form_state(response).value("form_token"), **TYPED)
    assert again.status_code == 303
    assert counts(site)["reports"] == 1


def test_stale_form_token_keeps_files_as_a_draft(site: Site) -> None:
    """The token cookie was replaced (a new browser session) since the page was loaded."""
    client = site.client()
    old_token = fresh_token(client)
    client.delete_cookie("blagh_form")
    proof = (b"proof " * 100, "proof.txt", "text/plain")
    response = post_report(client, old_token, [proof], **TYPED)
    assert_form_error(response, "form", "This form had expired")
    assert_everything_kept(response, TYPED)
    state = form_state(response)
    new_token = state.value("form_token")
    assert new_token and new_token != old_token
    cookie = client.get_cookie("blagh_form")
    assert cookie is not None and cookie.value == new_token
    assert state.values["kept_file"] == ["proof.txt"]
    assert counts(site) == {**NOTHING, "drafts": 1, "blobs": 1}

    again = post_report(
        client, new_token, draft=state.value("draft"), kept_file=["proof.txt"], **TYPED
    )
    assert again.status_code == 303
    [report] = analyst_reports(site)
    assert [(f.name, f.content) for f in report.files] == [("proof.txt", proof[0])]
    assert counts(site)["drafts"] == 0
    assert_consistent(site)


def test_report_without_a_form_token_cookie(site: Site) -> None:
    client = site.client()
    token = fresh_token(client)
    client.delete_cookie("blagh_form")
    response = post_report(client, token, **TYPED)
    assert_form_error(response, "form", "This form had expired")
    assert counts(site) == NOTHING


# --- files ------------------------------------------------------------------------------------


def test_more_file_parts_than_allowed_is_413(tmp_path: Path) -> None:
    """The request class refuses a third file part while parsing (sealing.TooManyFiles), before
    the view runs: a 413 page stating the limits, and the parts sealed so far discarded."""
    with open_site(tmp_path, max_files_per_report=2) as site:
        client = site.client()
        files = [(b"%d" % i * 1000, f"f{i}.txt", "text/plain") for i in range(3)]
        response = post_report(client, fresh_token(client), files, **TYPED)
        assert response.status_code == 413
        text = page_text(response)
        assert "Too much to send at once" in text
        assert "at most 2 files and 500 MB in all" in text
        assert "Nothing was saved" in text
        assert counts(site) == NOTHING

        # Two files are fine.
        response = post_report(client, fresh_token(client), files[:2], **TYPED)
        assert response.status_code == 303
        assert [f.name for f in analyst_reports(site)[0].files] == ["f0.txt", "f1.txt"]


def test_kept_files_count_towards_the_limit(tmp_path: Path) -> None:
    """Two files kept from a first attempt plus one more: the form says so (400); the new file
    is dropped, the kept ones stay kept, and the report then goes through with them."""
    with open_site(tmp_path, max_files_per_report=2) as site:
        client = site.client()
        files = [(b"%d" % i * 1000, f"f{i}.txt", "text/plain") for i in range(3)]
        first = post_report(client, fresh_token(client), files[:2], **{**TYPED, "description": ""})
        assert_form_error(first, "description", "Describe what happened")
        draft = form_state(first).value("draft")
        assert counts(site) == {**NOTHING, "drafts": 2, "blobs": 2}

        second = post_report(
            client,
            fresh_token(client),
            files[2:],
            draft=draft,
            kept_file=["f0.txt", "f1.txt"],
            **TYPED,
        )
        assert_form_error(second, "files", "at most 2 files")
        assert form_state(second).values["kept_file"] == ["f0.txt", "f1.txt"]
        assert form_state(second).value("draft") == draft
        assert counts(site) == {**NOTHING, "drafts": 2, "blobs": 2}

        third = post_report(
            client, fresh_token(client), draft=draft, kept_file=["f0.txt", "f1.txt"], **TYPED
        )
        assert third.status_code == 303
        [report] = analyst_reports(site)
        assert [f.content for f in report.files] == [files[0][0], files[1][0]]
        assert counts(site)["drafts"] == 0
        assert_consistent(site)


def test_request_over_the_size_limit_is_413(tmp_path: Path) -> None:
    with open_site(tmp_path, max_upload_mb=1) as site:
        client = site.client()
        big = (b"\x00" * (1024 * 1024 + 1), "big.bin", "application/octet-stream")
        response = post_report(client, fresh_token(client), [big], **TYPED)
        assert response.status_code == 413
        text = page_text(response)
        assert "Too much to send at once" in text
        assert "at most 20 files and 1 MB in all" in text
        assert counts(site) == NOTHING

        # The whole request counts, not each file: two files of 600 KB are refused too.
        halves = [(b"\x01" * 600_000, f"half{i}.bin", "application/octet-stream") for i in (1, 2)]
        response = post_report(client, fresh_token(client), halves, **TYPED)
        assert response.status_code == 413
        assert counts(site) == NOTHING


def test_files_are_kept_as_a_draft_while_the_form_is_corrected(site: Site) -> None:
    client = site.client()
    photo = (b"\xff\xd8\xff" + b"jpeg" * 5000, "photo.jpg", "image/jpeg")
    video = (b"\x00\x00\x00\x18ftypmp42" * 3000, "clip.mp4", "video/mp4")
    first = post_report(client, fresh_token(client), [photo, video], **{**TYPED, "category": ""})
    assert_form_error(first, "category", "Choose what kind of crime")
    state = form_state(first)
    assert state.values["kept_file"] == ["photo.jpg", "clip.mp4"]
    assert "already attached and kept safely" in page_text(first)
    draft = state.value("draft")
    assert len(draft) == 64
    # Kept sealed and durable (not in tmp/), referenced by draft rows only.
    assert counts(site) == {**NOTHING, "drafts": 2, "blobs": 2}

    # Corrected, and the files are not sent again.
    second = post_report(
        client,
        state.value("form_token"),
        draft=draft,
        kept_file=state.values["kept_file"],
        **TYPED,
    )
    assert second.status_code == 303
    [report] = analyst_reports(site)
    assert report.fields["attachments"] == ["photo.jpg", "clip.mp4"]
    assert [(f.name, f.type, f.content) for f in report.files] == [
        (name, kind, content) for content, name, kind in (photo, video)
    ]
    assert counts(site) == {
        **NOTHING,
        "sources": 1,
        "reports": 1,
        "items": 3,
        "blobs": 3,
    }
    assert_consistent(site)

    # A draft is used once: sending its token again brings no files, and the form says so
    # rather than sending a report without the files it lists.
    third = post_report(client, fresh_token(client), draft=draft, kept_file=["photo.jpg"], **TYPED)
    assert_form_error(third, "files", "Attach them again")
    assert "kept_file" not in form_state(third).values
    assert len(analyst_reports(site)) == 1


def test_a_draft_grows_over_several_failed_attempts(site: Site) -> None:
    client = site.client()
    one = (b"one", "one.txt", "text/plain")
    two = (b"two", "two.txt", "text/plain")
    first = post_report(client, fresh_token(client), [one], **{**TYPED, "email": "bad"})
    draft = form_state(first).value("draft")
    second = post_report(
        client,
        fresh_token(client),
        [two],
        draft=draft,
        kept_file=["one.txt"],
        **{**TYPED, "phone": "bad"},
    )
    assert_form_error(second, "phone", "digits")
    assert form_state(second).value("draft") == draft
    assert form_state(second).values["kept_file"] == ["one.txt", "two.txt"]
    third = post_report(
        client, fresh_token(client), draft=draft, kept_file=["one.txt", "two.txt"], **TYPED
    )
    assert third.status_code == 303
    [report] = analyst_reports(site)
    assert [(f.name, f.content) for f in report.files] == [("one.txt", b"one"), ("two.txt", b"two")]
    assert_consistent(site)


@pytest.mark.parametrize("draft", ["zz" * 32, "ab" * 31, "", "../../etc/passwd", "ab" * 32])
def test_unknown_or_malformed_draft_tokens_bring_no_files(site: Site, draft: str) -> None:
    client = site.client()
    response = post_report(client, fresh_token(client), draft=draft, kept_file=["x.txt"], **TYPED)
    assert_form_error(response, "files", "Attach them again")
    assert analyst_reports(site) == []
    # The form sent back lists no kept file: sent as it is, it goes through.
    state = form_state(response)
    assert "kept_file" not in state.values
    again = post_report(client, state.value("form_token"), draft=state.value("draft"), **TYPED)
    assert again.status_code == 303
    [report] = analyst_reports(site)
    assert report.files == [] and report.fields["attachments"] == []


def test_an_expired_draft_brings_no_files(site: Site) -> None:
    client = site.client()
    first = post_report(
        client,
        fresh_token(client),
        [(b"old", "old.txt", "text/plain")],
        **{**TYPED, "name": "n" * 300},
    )
    draft = form_state(first).value("draft")
    with site.store.index.transaction() as db:
        db.execute("UPDATE drafts SET expires = ?", (int(time.time()) - 1,))
    second = post_report(client, fresh_token(client), draft=draft, kept_file=["old.txt"], **TYPED)
    assert_form_error(second, "files", "Attach them again")
    assert analyst_reports(site) == []
    site.store.sweep()
    assert_consistent(site)


# --- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"garbage that is not multipart at all",
        b"--XYZ\r\nno headers, no end",
        b'--XYZ\r\nContent-Disposition: form-data; name="description"\r\n\r\ncut short',
        b'--XYZ\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + b"A" * 200_000,
        b"",
    ],
    ids=["garbage", "no-headers", "unterminated-field", "unterminated-file", "empty"],
)
def test_malformed_multipart_is_a_clear_400(site: Site, body: bytes) -> None:
    client = site.client()
    fresh_token(client)
    response = client.post("/report", data=body, content_type="multipart/form-data; boundary=XYZ")
    assert response.status_code == 400
    text = page_text(response)
    if body:
        assert "The request could not be understood" in text
        assert "Go back, reload the page, and try again." in text
    else:
        # An empty body is a well-formed empty form: the form page says what is missing.
        assert "Please correct what is marked below" in text
    assert "Traceback" not in text
    assert counts(site) == NOTHING


def test_multipart_without_a_boundary_is_a_clear_400(site: Site) -> None:
    client = site.client()
    response = client.post("/report", data=b"--x\r\n\r\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Traceback" not in page_text(response)
    assert counts(site) == NOTHING


def test_non_utf8_text_is_named_and_nothing_stored(site: Site) -> None:
    client = site.client()
    token = fresh_token(client)
    body = raw_multipart(
        [
            ("form_token", token.encode()),
            ("category", b"fraud"),
            ("description", b"caf\xe9 au lait \xff\xfe in Latin-1"),
            ("keep_codename", b"no"),
        ]
    )
    response = client.post(
        "/report", data=body, content_type="multipart/form-data; boundary=blaghboundary"
    )
    assert_form_error(response, "form", "not UTF-8")
    # What could be read is kept, so the reporter sees where the damage is.
    assert form_state(response).value("description").startswith("caf")
    assert counts(site) == NOTHING


def test_utf8_text_in_many_scripts_is_fine(site: Site) -> None:
    client = site.client()
    description = "بلاغ عن احتيال — arnaque signalée — 詐欺 — 🙂"
    response = post_report(client, fresh_token(client), description=description, keep_codename="no")
    assert response.status_code == 303
    assert analyst_reports(site)[0].fields["description"] == description


@pytest.mark.parametrize(
    "extra",
    [
        {f"extra{i}": "x" for i in range(200)},
        {"description": "x" * (1024 * 1024 + 1)},
    ],
    ids=["200-fields", "1-MiB-field"],
)
def test_too_many_or_too_large_form_fields_are_413(site: Site, extra: dict[str, str]) -> None:
    """Beyond what any honest form sends (64 fields, 1 MiB a field; the description's own limit
    is 20,000 characters, with a friendly form error): the 413 page."""
    client = site.client()
    response = client.post(
        "/report",
        data=multipart({**REPORT_FIELDS, "form_token": fresh_token(client), **extra}),
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "Too much to send at once" in page_text(response)
    assert counts(site) == NOTHING


# --- codenames ----------------------------------------------------------------------------


def test_wrong_codename(site: Site) -> None:
    client = site.client()
    words = " ".join(site.services.wordlist[:7])
    response = login(client, words)
    assert response.status_code == 400
    assert "No report matches this codename. Check each word" in page_text(response)
    assert session_cookie(client) is None
    assert counts(site) == NOTHING


def no_derivation(*args: object) -> None:
    raise AssertionError("a derivation was started for input that cannot be a codename")


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("abacus " * 1500, "too long to be a codename"),
        ("x" * 10_000, "too long to be a codename"),
        ("ﷺ" * 257, "too long to be a codename"),
        ("abacus abdomen qwertyuiop abide zzzz ability able", "qwertyuiop, zzzz"),
        ("abacus abdomen abide", "seven words"),
        ("abacus abdomen abide ability able ablaze abnormal abolish", "seven words"),
        ("", "seven words"),
        ("ﷺ " * 7, "not codename words"),
    ],
    ids=[
        "long-words",
        "long-x",
        "long-expanding",
        "unknown-words",
        "three",
        "eight",
        "empty",
        "expanding",
    ],
)
def test_codename_refused_before_any_derivation(
    site: Site, monkeypatch: pytest.MonkeyPatch, typed: str, words: str
) -> None:
    monkeypatch.setattr(crypto.codename, "derive", no_derivation)
    client = site.client()
    started = time.monotonic()
    response = login(client, typed)
    assert time.monotonic() - started < 2.0
    assert response.status_code == 400
    assert words in page_text(response)
    assert session_cookie(client) is None
    assert counts(site) == NOTHING


def test_login_without_form_token_is_refused_before_derivation(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crypto.codename, "derive", no_derivation)
    client = site.client()
    fresh_token(client, "/login")
    response = client.post("/login", data={"codename": " ".join(site.services.wordlist[:7])})
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    response = client.get("/login")
    assert response.status_code == 400
    assert "This form had expired" in page_text(response)


def test_codename_type_back_input_is_capped(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(client)
    response = confirm_codename(client, words + " " + "x" * 10_000)
    assert response.status_code == 400
    assert len(form_state(response).value("codename")) <= crypto.codename.MAX_INPUT_CHARS
    assert confirm_codename(client, words).status_code == 303


# --- follow-up --------------------------------------------------------------------------------


def test_follow_up_pages_need_a_session(site: Site) -> None:
    client = site.client()
    response = client.get("/followup")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    token = fresh_token(client, "/login")
    response = client.post(
        "/followup/" + "a" * 32 + "/message",
        data=multipart({"form_token": token, "message": "hi"}, [(b"x", "x.txt", "text/plain")]),
        content_type="multipart/form-data",
    )
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    for path in ("/delete",):
        assert client.get(path).headers["Location"] == "/login"
        assert client.post(path, data={"form_token": token}).headers["Location"] == "/login"
    client.set_cookie("blagh_session", "not base64 at all!!")
    assert client.get("/followup").headers["Location"] == "/login"
    client.set_cookie("blagh_session", "QUFB" * 22)
    assert client.get("/followup").headers["Location"] == "/login"
    assert counts(site) == NOTHING


def test_message_to_another_sources_report_is_not_stored(site: Site) -> None:
    stranger = site.client()
    assert post_report(stranger, fresh_token(stranger), keep_codename="no").status_code == 303
    [(their_report,)] = site.rows("SELECT id FROM reports")

    client = site.client()
    words = submit_for_codename(client)
    assert confirm_codename(client, words).status_code == 303
    before = counts(site)
    for report_id in (their_report, "f" * 32, "../../etc"):
        response = client.post(
            f"/followup/{report_id}/message",
            data=multipart(
                {"form_token": fresh_token(client, "/followup"), "message": "not yours"},
                [(b"sneaky", "sneaky.txt", "text/plain")],
            ),
            content_type="multipart/form-data",
        )
        assert response.status_code in (303, 404), report_id
        if response.status_code == 303:
            assert response.headers["Location"] == "/followup"
        assert counts(site) == before
    theirs = next(r for r in analyst_reports(site) if r.id == their_report)
    assert theirs.kinds == ["fields"]
    assert_consistent(site)


def test_bad_follow_up_messages(site: Site) -> None:
    client = site.client()
    words = submit_for_codename(client)
    assert confirm_codename(client, words).status_code == 303
    home = client.get("/followup").get_data(as_text=True)
    [(report_id,)] = site.rows("SELECT id FROM reports")
    assert f"/followup/{report_id}/message" in home
    before = counts(site)

    def send(
        fields: dict[str, str], files: list[tuple[bytes, str, str]] | None = None
    ) -> TestResponse:
        return client.post(
            f"/followup/{report_id}/message",
            data=multipart(fields, files or []),
            content_type="multipart/form-data",
        )

    token = fresh_token(client, "/followup")
    empty = send({"form_token": token, "message": "   "})
    assert empty.status_code == 400
    assert "Write a message or attach a file." in form_state(empty).errors["message"]

    long_text = "y" * 20_001
    too_long = send({"form_token": token, "message": long_text})
    assert too_long.status_code == 400
    assert "too long" in form_state(too_long).errors["message"]
    assert long_text in form_state(too_long).values["message"]

    forged = send({"form_token": "z" * 43, "message": "kept text"})
    assert forged.status_code == 400
    assert "kept text" in form_state(forged).values["message"]
    assert "This form had expired" in page_text(forged)
    assert counts(site) == before

    garbled = client.post(
        f"/followup/{report_id}/message",
        data=raw_multipart([("form_token", token.encode()), ("message", b"r\xe9sum\xe9 \xff")]),
        content_type="multipart/form-data; boundary=blaghboundary",
    )
    assert garbled.status_code == 400
    assert "not UTF-8" in form_state(garbled).errors["message"]
    assert counts(site) == before

    # A message refused with a file keeps the file as a draft; sent again, it arrives.
    refused = send(
        {"form_token": "z" * 43, "message": "with a file"}, [(b"f", "f.txt", "text/plain")]
    )
    assert refused.status_code == 400
    state = form_state(refused)
    assert counts(site) == {**before, "drafts": 1, "blobs": before["blobs"] + 1}
    sent = send(
        {
            "form_token": token,
            "message": "with a file",
            "draft": state.value("draft"),
            "kept_file": "f.txt",
        }
    )
    assert sent.status_code == 303
    [report] = analyst_reports(site)
    assert report.kinds == ["fields", "message", "file"]
    assert report.messages[0]["attachments"] == ["f.txt"]
    assert counts(site)["drafts"] == 0
    assert_consistent(site)


# --- hostile file names and types -------------------------------------------------------------


def test_hostile_file_names_and_types_still_reach_the_analyst(site: Site) -> None:
    """Name and type are whatever the client claims.  However long or strange, the analyst must
    still be able to open the file: the name is cut to its last 255 characters and a type that
    is not short printable ASCII becomes application/octet-stream, which keeps the attachment's
    description line under payloads.MAX_ATTACHMENT_HEADER (it used not to be bounded)."""
    client = site.client()
    files = [
        (b"one", "😀" * 300, "image/png; " + "x" * 5000),
        (b"two", "x" * 1000 + ".png", "ïmage/" + "é" * 300),
        (b"three", "../../c\t<img src=x onerror=alert(1)>.txt", 'text/plain; n="' + "'" * 200),
        (b"four", "😀" * 255, 'type/"' + '"' * 248),
    ]
    response = post_report(client, fresh_token(client), files, keep_codename="no")
    assert response.status_code == 303
    [report] = analyst_reports(site)
    assert [(f.name, f.type, f.content) for f in report.files] == [
        ("😀" * 255, "application/octet-stream", b"one"),
        ("x" * 251 + ".png", "application/octet-stream", b"two"),
        (files[2][1], files[2][2], b"three"),
        (files[3][1], files[3][2], b"four"),
    ]
    assert report.fields["attachments"] == [f.name for f in report.files]


def test_kept_file_names_are_escaped(site: Site) -> None:
    client = site.client()
    name = '"><img src=x onerror=alert(1)>.png'
    body = raw_multipart(
        [
            ("form_token", fresh_token(client).encode()),
            ("description", b"no category"),
            ("files", b"x", name.replace('"', '\\"'), "image/png"),
        ]
    )
    response = client.post(
        "/report", data=body, content_type="multipart/form-data; boundary=blaghboundary"
    )
    assert response.status_code == 400
    assert "<img src=x" not in response.get_data(as_text=True)
    assert form_state(response).values["kept_file"] == [name]


def test_an_empty_file_input_attaches_nothing(site: Site) -> None:
    """Browsers send an empty part (no name, no bytes) for a file input left empty."""
    client = site.client()
    body = raw_multipart(
        [
            ("form_token", fresh_token(client).encode()),
            ("category", b"fraud"),
            ("files", b"", "", "application/octet-stream"),
            ("description", b"words"),
            ("keep_codename", b"no"),
        ]
    )
    response = client.post(
        "/report", data=body, content_type="multipart/form-data; boundary=blaghboundary"
    )
    assert response.status_code == 303
    [report] = analyst_reports(site)
    assert report.files == [] and report.fields["attachments"] == []
    assert report.fields["description"] == "words"
    assert_consistent(site)


# --- expensive work is bounded ----------------------------------------------------------------


def test_busy_derivations_give_a_503_at_once_and_store_nothing(tmp_path: Path) -> None:
    """With the one derivation thread taken and no queue, a report keeping a codename is
    refused as busy at once (no waiting), its uploads discarded, no source row left behind; a
    login too."""
    limits = {"derivations_per_worker": 1, "derivation_queue_per_worker": 0}
    with open_site(tmp_path, limits) as site:
        running, release = threading.Event(), threading.Event()
        holder = threading.Thread(
            target=site.services.derivations.run,
            args=(lambda: (running.set(), release.wait(30)),),
        )
        holder.start()
        assert running.wait(30)
        try:
            client = site.client()
            files = [(b"z" * 100_000, "z.bin", "application/octet-stream")]
            response = post_report(client, fresh_token(client), files, keep_codename="yes")
            assert response.status_code == 503
            assert "The site is busy" in page_text(response)
            assert counts(site) == NOTHING
            response = login(client, " ".join(site.services.wordlist[:7]))
            assert response.status_code == 503
            assert session_cookie(client) is None
            # A report without a codename needs no derivation and goes through.
            response = post_report(client, fresh_token(client), files, keep_codename="no")
            assert response.status_code == 303
        finally:
            release.set()
            holder.join()
        assert counts(site)["reports"] == 1
        # Free again: a codename report goes through.
        response = post_report(client, fresh_token(client), files, keep_codename="yes")
        assert response.status_code == 303


def test_a_burst_of_failed_logins_pauses_logins_at_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the free failures, logins get the 429 page straight away (no sleep, no
    derivation), saying the codename is safe; input that cannot be a codename does not count."""
    client = site.client()
    wordlist = site.services.wordlist
    for _ in range(5):
        assert login(client, "too few words").status_code == 400
    free = source_interface.throttle.FREE_FAILURES
    for attempt in range(free):
        words = " ".join(wordlist[attempt : attempt + 7])
        assert login(client, words).status_code == 400
    monkeypatch.setattr(crypto.codename, "derive", no_derivation)
    response = login(client, " ".join(wordlist[100:107]))
    assert response.status_code == 429
    assert "logins are paused" in page_text(response)
    # Other pages are not affected.
    assert client.get("/").status_code == 200


# --- failures while storing -------------------------------------------------------------------


@pytest.mark.parametrize("keep_codename", ["yes", "no"])
def test_a_failure_while_storing_leaves_no_source_behind(
    site: Site, monkeypatch: pytest.MonkeyPatch, keep_codename: str
) -> None:
    """If recording the report fails (an I/O error; a full disk gives the form back instead,
    tests/test_source_disk.py), the reporter gets the 500 page, no session, and no source row
    without its report (there used to be one).  The files kept from an earlier attempt are
    still in their draft; the blobs sealed for this
    attempt are referenced by nothing and go with the next sweep."""
    client = site.client()
    first = post_report(
        client,
        fresh_token(client),
        [(b"kept", "kept.txt", "text/plain")],
        **{**TYPED, "description": ""},
    )
    draft = form_state(first).value("draft")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(site.store.index, "add_report", fail)
    response = post_report(
        client,
        fresh_token(client),
        [(b"new", "new.txt", "text/plain")],
        draft=draft,
        kept_file=["kept.txt"],
        **{**TYPED, "keep_codename": keep_codename},
    )
    assert response.status_code == 500
    assert "Something went wrong" in page_text(response)
    assert "Input/output" not in page_text(response)
    assert session_cookie(client) is None
    found = counts(site)
    assert {k: found[k] for k in ("sources", "reports", "items", "drafts", "sessions", "tmp")} == {
        "sources": 0,
        "reports": 0,
        "items": 0,
        "drafts": 1,
        "sessions": 0,
        "tmp": 0,
    }
    site.store.sweep()
    assert counts(site) == {**NOTHING, "drafts": 1, "blobs": 1}

    # Once storing works again, the same draft goes through.
    monkeypatch.undo()
    again = post_report(client, fresh_token(client), draft=draft, kept_file=["kept.txt"], **TYPED)
    assert again.status_code == 303
    [report] = analyst_reports(site)
    assert [(f.name, f.content) for f in report.files] == [("kept.txt", b"kept")]
    assert_consistent(site)


def test_a_kept_file_can_be_removed(site: Site) -> None:
    """Issue 14: the wrong photo, an identifying one, kept in the draft after a form error,
    could not be taken out.  Each kept file has a "remove" box: ticked, the file is not sent
    and its envelope is deleted from the server, whether the form is sent or comes back."""
    client = site.client()
    photo = (b"\xff\xd8\xff" + b"jpeg" * 5000, "me.jpg", "image/jpeg")
    video = (b"\x00\x00\x00\x18ftypmp42" * 3000, "clip.mp4", "video/mp4")
    shot = (b"PNG" * 4000, "screen.png", "image/png")
    first = post_report(
        client, fresh_token(client), [photo, video, shot], **{**TYPED, "category": ""}
    )
    state = form_state(first)
    boxes = re.findall(r'name="remove_file" value="(\d+)"', first.get_data(as_text=True))
    assert boxes == ["0", "1", "2"]  # one box per kept file
    assert counts(site) == {**NOTHING, "drafts": 3, "blobs": 3}

    # Removed while the form still has an error: gone from the draft and the disk at once.
    second = post_report(
        client,
        state.value("form_token"),
        draft=state.value("draft"),
        kept_file=state.values["kept_file"],
        remove_file="0",
        **{**TYPED, "description": ""},
    )
    assert_form_error(second, "description", "Describe what happened")
    state = form_state(second)
    assert state.values["kept_file"] == ["clip.mp4", "screen.png"]
    assert counts(site) == {**NOTHING, "drafts": 2, "blobs": 2}

    # Removed as the form is sent: the report holds only what stays.
    third = post_report(
        client,
        state.value("form_token"),
        draft=state.value("draft"),
        kept_file=state.values["kept_file"],
        remove_file="1",
        **TYPED,
    )
    assert third.status_code == 303
    [report] = analyst_reports(site)
    assert report.fields["attachments"] == ["clip.mp4"]
    assert [f.content for f in report.files] == [video[0]]
    assert counts(site) == {**NOTHING, "sources": 1, "reports": 1, "items": 2, "blobs": 2}
    assert_consistent(site)


def test_a_failed_login_is_redirected_and_keeps_what_was_typed(site: Site) -> None:
    """Issue 14: the field came back empty, on a page that answered the POST.  Now: a redirect
    to /login (nothing in the URL), and what was typed comes back in the field, carried by an
    encrypted cookie that holds no readable word and is gone once read."""
    client = site.client()
    typed = " ".join(site.services.wordlist[10:17])
    response = client.post(
        "/login", data={"form_token": fresh_token(client, "/login"), "codename": typed}
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("blagh_flash=")]
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert "max-age=600" in attributes
    value = cookie.split(";")[0].removeprefix("blagh_flash=")
    raw = base64.urlsafe_b64decode(value)
    for word in typed.split():
        assert word.encode() not in raw and word not in value
    page = client.get("/login")
    assert page.status_code == 400
    assert form_state(page).value("codename") == typed
    assert "No report matches this codename" in page_text(page)
    assert client.get_cookie("blagh_flash") is None
    assert client.get("/login").status_code == 200  # read once

    # A cookie changed by a bit says nothing.  (The bit is flipped in the sealed bytes: a
    # changed base64 character can differ only in bits the decoding drops, one run in 16.)
    forged_bytes = bytearray(raw)
    forged_bytes[len(raw) // 2] ^= 1
    client.set_cookie("blagh_flash", base64.urlsafe_b64encode(bytes(forged_bytes)).decode())
    forged = client.get("/login")
    assert forged.status_code == 200 and form_state(forged).value("codename") == ""
