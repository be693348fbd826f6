"""The reporters' pages in a real browser: Debian's Chromium, driven by Playwright, against
``blagh serve`` (gunicorn) on loopback.

What only a browser shows: that with JavaScript and WebAssembly the page seals everything
itself (no request carries a byte of plaintext, and the analyst's key opens what arrived); that
without JavaScript, without WebAssembly, or with a tampered libsodium.js, the same report
still arrives through the server-side path; that a cut connection costs one piece of an
upload, not the upload; that a codename never leaves the browser on the JS path and replies
are read in the page; how the pages look on a phone and in Arabic (screenshots under
test-artifacts/); that axe-core finds no serious accessibility violation; and that envelopes
and codename keys made in the page and in Python are the same thing.

One server and one browser serve the whole module, to keep it near a minute.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import report_scenarios as scenarios
from babel.dates import format_date
from browser_helpers import (
    AXE,
    NO_WASM,
    ChromiumTab,
    RequestLog,
    Site,
    launch,
    missing_requirements,
    running_site,
    screenshot,
)
from media_helpers import exif, gps_jpeg, jpeg_segments
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright
from report_scenarios import (
    MIB,
    SERVER_SEALS,
    check_arrived,
    check_source_keys,
    file_bytes,
    marker,
    report_files,
)

from blagh.payloads import encode_document, split_attachment
from crypto import codename
from crypto.envelope import open_envelope, seal
from crypto.errors import DecryptionError
from crypto.keys import AnalystKey, generate_analyst_key
from source_interface.presealed import UploadFolder
from source_interface.services import load_retired_words, load_wordlist
from source_interface.store.index import NewSource, new_id

PIECE = MIB  # source_interface.presealed.CHUNK_BYTES


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    problem = missing_requirements()
    if problem:
        pytest.fail(problem)
    with running_site("blagh-browser-") as site:
        yield site


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def context(chromium: Browser, site: Site) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=site.url)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda error: pytest.fail(f"script error in the page: {error}"))
    return page


# --- a report, as a reporter types it (tests/report_scenarios.py) ---------------------------


def fill_report(page: Page, mark: str, files: list[dict[str, Any]], keep_codename: bool) -> None:
    scenarios.fill_report(ChromiumTab(page), mark, files, keep_codename)


def wait_for_sealing(page: Page) -> None:
    """Until the script has taken over the page (libsodium.js loaded and checked)."""
    page.locator("html[data-blagh=sealing]").wait_for(state="attached")


def protection(page: Page) -> str:
    return page.locator("#protection").inner_text().strip()


def submit_report(page: Page) -> None:
    page.click("#report-form button[type=submit]")


# --- the JavaScript path ----------------------------------------------------------------------


def test_report_is_sealed_in_the_page(page: Page, site: Site) -> None:
    log = RequestLog()
    log.attach(page)
    page.goto("/report")
    wait_for_sealing(page)
    mark = marker()
    files = report_files(mark)
    before = site.report_ids()
    fill_report(page, mark, files, keep_codename=True)
    submit_report(page)

    # The codename, made in the page, shown once and typed back.
    words = page.locator("#js-codename-words")
    words.wait_for(state="visible", timeout=60_000)
    shown = words.inner_text().strip()
    assert len(shown.split()) == codename.WORD_COUNT
    screenshot(page, "js-codename-panel")
    page.fill("#js-codename-typed", "wrong " + shown)
    page.click("#js-codename-check button")
    assert "word" in page.locator("#js-codename-error").inner_text()
    page.fill("#js-codename-typed", shown.upper())
    page.click("#js-codename-check button")
    page.wait_for_url("**/followup?saved=1")

    # The follow-up page opens the report in the page, with the key derived there.
    heading = page.locator("section.report h2").first
    heading.filter(has_text="Online harassment or threats").wait_for()
    assert page.locator("section.report p.danger").first.is_visible()

    # Nothing typed, no file byte, no file name, no codename in any request.
    plaintext = [mark.encode(), shown.encode(), shown.replace(" ", "+").encode()]
    assert log.containing(plaintext) == []
    sent = [(method, body) for method, _url, body in log.requests if method != "GET"]
    assert [method for method, _body in sent].count("PUT") == 5  # 1 + 4 pieces
    assert all(len(body) > 0 for _method, body in sent)  # every body was seen, and scanned

    # The analyst opens it; the source's key derived in Python opens the fields too.
    opened = check_arrived(site, before, mark, files)
    check_source_keys(site, opened, shown)


def test_resumed_upload_sends_each_piece_once(page: Page, site: Site) -> None:
    """The connection drops during piece 1: piece 1 is sent again, pieces 0, 2, 3 only once."""
    puts: list[int] = []
    cut: list[int] = []

    def cut_once(route: Route) -> None:
        index = int(route.request.url.rsplit("/", 1)[1])
        puts.append(index)
        if index == 1 and not cut:
            cut.append(index)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/upload/*/*", cut_once)
    statuses: list[str] = []
    page.on(
        "request",
        lambda r: statuses.append(r.url) if r.method == "GET" and "/upload/" in r.url else None,
    )
    page.goto("/report")
    wait_for_sealing(page)
    mark = marker()
    files = [
        {"name": f"{mark}.mov", "mimeType": "video/quicktime", "buffer": file_bytes(mark, 3 * MIB)}
    ]
    before = site.report_ids()
    fill_report(page, mark, files, keep_codename=False)
    submit_report(page)
    page.wait_for_url("**/report/received")
    assert cut == [1]
    assert sorted(puts) == [0, 1, 1, 2, 3]  # 3 MiB of file + padding and overhead: 4 pieces
    assert len(statuses) >= 1  # it asked the server where it was before going on
    check_arrived(site, before, mark, files)


def test_codename_login_reads_the_reply_in_the_page(
    context: BrowserContext, page: Page, site: Site
) -> None:
    secret = codename.generate(load_wordlist())
    reply_text = f"Reply {marker()}: we are looking into it."
    report_id, source_keys = store_report_with_reply(site, secret, reply_text)

    log = RequestLog()
    log.attach(page)
    page.goto("/login")
    wait_for_sealing(page)
    page.fill("#codename", "  " + secret.upper().replace(" ", "\n"))
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/followup")
    page.get_by_text(reply_text).wait_for()
    screenshot(page, "js-followup-reply")

    # A message from the page: sealed there to the analysts and the source.
    message = f"Message {marker()}"
    page.fill(f"#message-{report_id}", message)
    page.click(f"form[action$='/followup/{report_id}/message'] button[type=submit]")
    page.wait_for_url("**/followup?sent=1")
    page.get_by_text(message).wait_for()

    # A new tab has no key: the page asks for the codename again and then opens the reply.
    other = context.new_page()
    other.goto("/followup")
    other.locator("#unlock-codename").wait_for(state="visible")
    other.fill("#unlock-codename", secret)
    other.click("#unlock-form button")
    other.get_by_text(reply_text).wait_for()
    other.close()

    needles = [secret.encode(), secret.replace(" ", "+").encode(), b"codename=", message.encode()]
    assert log.containing(needles) == []
    with site.store() as store:
        report = store.index.report(source_id_of(site, report_id), report_id)
        assert report is not None
        sent = [i for i in report.items if i.kind == "message"]
        assert len(sent) == 1
        envelope = store.read_blob(sent[0].blob)
    for identity in (site.analyst.encryption_secret, source_keys.secret_key):
        assert message.encode() in open_envelope(envelope, [identity])


def test_the_page_opens_the_status_the_analysts_set(page: Page, site: Site) -> None:
    """A status travels as a reply item (docs/casework.md): the browser holding the key opens
    it as a status, not as an answer it cannot read."""
    secret = codename.generate(load_wordlist())
    status = {"status": "content_removed", "message": "thanks", "day": "2026-03-14"}
    store_report_with_reply(site, secret, f"Reply {marker()}", status)
    page.goto("/login")
    wait_for_sealing(page)
    page.fill("#codename", secret)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/followup")
    page.get_by_text("Content removed — March 14, 2026").wait_for()
    page.get_by_text("Thank you for your report.").wait_for()
    assert page.get_by_text("This could not be opened.").count() == 0


def test_a_follow_up_photo_loses_its_location_data_in_the_page(
    page: Page, site: Site, tmp_path: Path
) -> None:
    """The message form on the follow-up page offers the same box as the report form (issue
    14): ticked, a photo added to a report arrives without its GPS and device data."""
    secret = codename.generate(load_wordlist())
    report_id, _ = store_report_with_reply(site, secret, f"Reply {marker()}")
    page.goto("/login")
    wait_for_sealing(page)
    page.fill("#codename", secret)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/followup")
    box = f"#strip-metadata-{report_id}"
    page.locator(box).wait_for(state="visible")
    assert page.is_checked(box)
    photo = gps_jpeg(tmp_path)
    page.set_input_files(
        f"#files-{report_id}", [{"name": "IMG_2.jpg", "mimeType": "image/jpeg", "buffer": photo}]
    )
    page.click(f"form[action$='/followup/{report_id}/message'] button[type=submit]")
    page.wait_for_url("**/followup?sent=1")
    with site.store() as store:
        report = store.index.report(source_id_of(site, report_id), report_id)
        assert report is not None
        file = next(i for i in report.items if i.kind == "file")
        plaintext = open_envelope(store.read_blob(file.blob), [site.analyst.encryption_secret])
    description, data = split_attachment(plaintext)
    assert description["name"] == "IMG_2.jpg"
    tags = exif(tmp_path, data)
    assert not {"GPSLatitude", "Make", "Model", "Artist"} & set(tags)
    assert jpeg_segments(data)[1] == jpeg_segments(photo)[1]


def test_an_arabic_follow_up_page_opened_in_the_page_keeps_days_and_words_readable(
    page: Page, site: Site
) -> None:
    """Issue 12, on the JavaScript path: the heading the script writes keeps the day Babel
    wrote in the page's language (never the ISO day), and the reply and the file names the
    script puts in the page are isolated from the right-to-left page (dir=auto, <bdi>)."""
    secret = codename.generate(load_wordlist())
    reply_text = f"شكرا — thanks for https://shop.example {marker()}"
    report_id, _ = store_report_with_reply(site, secret, reply_text)
    with site.store() as store:
        report = store.index.report(source_id_of(site, report_id), report_id)
        assert report is not None
        day = report.day
    page.goto("/login?lang=ar")
    wait_for_sealing(page)
    page.fill("#codename", secret)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/followup")
    page.get_by_text(reply_text).wait_for()

    heading = page.locator(f"section.report:has(#message-{report_id}) h2")
    heading.filter(has_text="احتيال").wait_for()  # the category, opened in the page
    shown = format_date(date.fromisoformat(day), "long", locale="ar")
    assert heading.locator(f'time[datetime="{day}"]').inner_text() == shown
    assert day not in heading.inner_text()
    reply = page.locator(".reply .text", has_text=reply_text)
    assert reply.get_attribute("dir") == "auto"

    name = "لقطة screenshot (1).png"
    page.fill(f"#message-{report_id}", "رسالة: see the picture")
    page.set_input_files(
        f"#files-{report_id}", [{"name": name, "mimeType": "image/png", "buffer": b"\x89PNG"}]
    )
    page.click(f"form[action$='/followup/{report_id}/message'] button[type=submit]")
    page.wait_for_url("**/followup?sent=1")
    files = page.locator(".message [data-files]")
    files.wait_for(state="visible")
    assert files.locator("bdi").all_inner_texts() == [name]
    message = page.locator(".message .text", has_text="رسالة: see the picture")
    assert message.get_attribute("dir") == "auto"


def source_id_of(site: Site, report_id: str) -> str:
    with site.store() as store:
        row = store.index._db.execute(
            "SELECT source_id FROM reports WHERE id = ?", (report_id,)
        ).fetchone()
    return str(row[0])


def store_report_with_reply(
    site: Site, secret: str, reply_text: str, status: dict[str, str] | None = None
) -> tuple[str, codename.SourceKeys]:
    """A report made with ``secret`` and an analyst's reply to it (and the status the reporter
    sees, which travels as one more reply item), stored as the server would."""
    keys = codename.derive(secret, site.data_dir.read_instance_salt())
    analyst = site.analyst.public().encryption
    fields = seal(
        encode_document(
            "report",
            {
                "category": "fraud",
                "danger": False,
                "description": "Fake tickets",
                "links": [],
                "platform": "",
                "seen_on": None,
                "identity": None,
                "attachments": [],
            },
        ),
        [analyst, keys.public_key],
    )
    reply = seal(encode_document("reply", {"text": reply_text}), [keys.public_key, analyst])
    replies = [reply]
    if status is not None:
        replies.append(seal(encode_document("status", status), [keys.public_key, analyst]))
    verifier = codename.login_verifier(keys.login_secret, site.data_dir.read_login_hash_key())
    with site.store() as store:
        refs = []
        for envelope in (fields, *replies):
            blob = store.new_blob()
            blob.write(envelope)
            refs.append(blob.commit())
        report = store.index.add_report(
            new_id(), [("fields", refs[0])], new_source=NewSource(verifier, keys.public_key)
        )
        store.index.add_items(report.source_id, report.id, [("reply", ref) for ref in refs[1:]])
    return report.id, keys


# --- without JavaScript, without WebAssembly, with a tampered library: the server seals ----


def test_when_the_server_is_full_the_page_sends_the_report_without_javascript(
    page: Page, site: Site
) -> None:
    """Every partial-upload slot taken by uploads still sending (nothing to give up): the
    page's upload gets 503 "server full" and the form goes as a plain multipart post instead,
    with everything typed, chosen and attached."""
    folder = UploadFolder(site.data_dir.path / "store" / "uploads")
    size = len(seal(b"x", [site.analyst.public().encryption]))
    fillers = [
        folder.create(size, 1, secrets.token_urlsafe(32))
        for _ in range(folder.bounds.max_uploads - folder.live_count())
    ]
    try:
        log = RequestLog()
        log.attach(page)
        page.goto("/report")
        wait_for_sealing(page)
        mark = marker()
        files = report_files(mark, big=600_000)
        before = site.report_ids()
        fill_report(page, mark, files, keep_codename=False)
        submit_report(page)
        page.wait_for_url("**/report/received")
        check_arrived(site, before, mark, files)
        sent = [(m, u.removeprefix(site.url)) for m, u, _b in log.requests if m != "GET"]
        assert sent == [("POST", "/upload"), ("POST", "/report")]
    finally:
        for upload_id in fillers:
            folder.delete(upload_id)


def no_js_report(page: Page, site: Site, protection_text: str = SERVER_SEALS) -> None:
    """A report through the server-side path; the page said so beforehand."""
    log = RequestLog()
    log.attach(page)
    page.goto("/report")
    assert protection(page) == protection_text
    mark = marker()
    files = report_files(mark, big=600_000)
    before = site.report_ids()
    fill_report(page, mark, files, keep_codename=False)
    submit_report(page)
    page.wait_for_url("**/report/received")
    check_arrived(site, before, mark, files)
    # The server-side path: the form itself went, plaintext and all, to be sealed on arrival.
    # The server-side path: the form itself went, as one multipart post; nothing was uploaded
    # in pieces.  (Chromium does not show file-backed bodies to Playwright: their content is
    # checked by the report opening with everything above.)
    sent = [(i, m, u) for i, (m, u, _b) in enumerate(log.requests) if m != "GET"]
    assert [(m, u.removeprefix(site.url)) for _i, m, u in sent] == [("POST", "/report")]
    assert log.headers[sent[0][0]]["content-type"].startswith("multipart/form-data")


def test_without_javascript_the_server_seals(chromium: Browser, site: Site) -> None:
    context = chromium.new_context(base_url=site.url, java_script_enabled=False)
    try:
        no_js_report(context.new_page(), site)
    finally:
        context.close()


def test_without_webassembly_the_server_seals(playwright: Playwright, site: Site) -> None:
    browser = launch(playwright, NO_WASM)
    try:
        page = browser.new_page(base_url=site.url)
        page.goto("/report")
        page.locator("html[data-blagh=server]").wait_for(state="attached")
        assert page.evaluate("typeof WebAssembly") == "undefined"
        no_wasm = page.locator("#protection").get_attribute("data-no-wasm")
        assert no_wasm and "WebAssembly is turned off" in no_wasm
        no_js_report(page, site, no_wasm)
    finally:
        browser.close()


def test_tampered_library_is_refused_and_the_server_seals(page: Page, site: Site) -> None:
    """Subresource integrity: libsodium.js with one byte changed never runs."""

    def tamper(route: Route) -> None:
        response = route.fetch()
        # Playwright hands back the body decoded: send it as such, not labelled gzip.
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-encoding"}
        route.fulfill(response=response, headers=headers, body=response.body() + b"\n// x\n")

    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "integrity" in m.text else None)
    page.route("**/static/*/vendor/libsodium-wrappers.mjs", tamper)
    page.goto("/report")
    page.locator("html[data-blagh=server]").wait_for(state="attached")
    assert refused, "the browser did not report an integrity failure"
    no_js_report(page, site)


def test_only_pages_that_seal_allow_scripts(page: Page, site: Site) -> None:
    policies = {}
    for path in ("/", "/report", "/login", "/static/style.css"):
        response = page.goto(path)
        assert response is not None
        policies[path] = response.headers["content-security-policy"]
    script = "script-src 'self' 'wasm-unsafe-eval'"
    assert script in policies["/report"] and script in policies["/login"]
    assert "connect-src 'self'" in policies["/report"]
    for path in ("/", "/static/style.css"):
        assert "script-src" not in policies[path] and "default-src 'none'" in policies[path]


# --- phones, Arabic, accessibility ---------------------------------------------------------


@pytest.mark.parametrize("language", ["ar", "en"])
def test_phone_layout(chromium: Browser, site: Site, language: str) -> None:
    context = chromium.new_context(
        base_url=site.url,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        for path in ("/", "/report", "/login"):
            page.goto(f"{path}?lang={language}")
            if path == "/report":
                wait_for_sealing(page)
            direction = page.evaluate("document.documentElement.dir")
            assert direction == ("rtl" if language == "ar" else "ltr")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways on a phone ({overflow}px)"
            name = path.strip("/") or "landing"
            screenshot(page, f"phone-{language}-{name}")
        if language == "ar":
            assert protection_in(page, "/report") != protection_in(page, "/report?lang=en")
    finally:
        context.close()


def protection_in(page: Page, path: str) -> str:
    page.goto(path)
    wait_for_sealing(page)
    return protection(page)


SERIOUS = ("serious", "critical")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in SERIOUS]


def test_accessibility_of_every_page(chromium: Browser, site: Site) -> None:
    """axe-core on every page a reporter can reach, with and without the script's changes."""
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        violations = axe_violations(page)
        if violations:
            found[name] = [f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in violations]

    try:
        page = context.new_page()
        for language in ("ar", "en"):
            page.goto(f"/?lang={language}")
            check(f"landing-{language}")
            page.goto("/report")
            wait_for_sealing(page)
            check(f"report-{language}")
            page.fill("#description", "x")  # (an empty one is the browser's own check)
            page.fill("#phone", "call me maybe")
            submit_report(page)  # no category, letters in the phone: the script marks them
            page.locator("#category-error").wait_for()
            page.locator("#phone-error").wait_for()
            check(f"report-errors-{language}")
            page.goto("/login")
            check(f"login-{language}")
            page.goto("/no-such-page")
            check(f"404-{language}")
        page.goto("/?lang=en")

        # Without the script (blocked): the server's error page, its codename page.
        page.route("**/static/*/js/blagh.mjs", lambda route: route.abort())
        page.goto("/report")
        page.fill("#description", "Fake tickets")
        page.click("#report-form button[type=submit]")
        page.locator("#category-error").wait_for()  # the server's page this time
        assert page.locator("html[data-blagh]").count() == 0
        check("report-server-errors")
        page.check("input[name=category][value=fraud]")
        page.click("#report-form button[type=submit]")
        page.wait_for_url("**/report/codename")
        check("codename")
        shown = page.locator("p.codename").inner_text()
        page.fill("#codename", "wrong")
        page.click("button[type=submit]")
        check("codename-mismatch")
        page.fill("#codename", shown)
        page.click("main button[type=submit]")
        page.wait_for_url("**/followup?saved=1")
        check("followup-server")
        page.goto("/delete")
        check("delete")
        page.click("main button[type=submit]")
        check("deleted")
        page.unroute("**/static/*/js/blagh.mjs")

        # With the script: the codename panel, the follow-up page opened in the page.
        page.goto("/report")
        wait_for_sealing(page)
        page.check("input[name=category][value=fraud]")
        page.fill("#description", "Fake tickets")
        page.check("input[name=keep_codename][value=no]")
        submit_report(page)
        page.wait_for_url("**/report/received")
        check("received")
        page.goto("/report")
        wait_for_sealing(page)
        page.check("input[name=category][value=fraud]")
        page.fill("#description", "Fake tickets")
        submit_report(page)
        page.locator("#js-codename-words").wait_for(state="visible", timeout=60_000)
        check("js-codename")
        page.fill("#js-codename-typed", page.locator("#js-codename-words").inner_text())
        page.click("#js-codename-check button")
        page.wait_for_url("**/followup?saved=1")
        page.locator("section.report h2", has_text="Fraud").wait_for()
        check("followup-js")
        page.goto("/login")
        wait_for_sealing(page)
        page.fill("#codename", "abacus abacus abacus abacus abacus abacus nonword")
        page.click("#login-form button[type=submit]")
        page.locator("#codename-error").wait_for()
        check("login-js-error")
    finally:
        context.close()
    assert found == {}


# --- interoperability: envelopes and codenames, page and Python ------------------------------

INTEROP_SIZES = [0, 1, 511, 65535, 65536, 65537, 300_000, 4 * MIB + 100]

PAGE_SEAL = """async ([data, recipients]) => {
  const s = await import('/static/js/sealing.mjs');
  await s.ready();
  const keys = recipients.map((k) => s.fromBase64(k));
  const bytes = data === '' ? new Uint8Array(0) : s.fromBase64(data);
  return s.toBase64(s.sealBytes(bytes, keys));
}"""

PAGE_OPEN = """async ([envelope, identity]) => {
  const s = await import('/static/js/sealing.mjs');
  await s.ready();
  try {
    const data = s.openBytes(s.fromBase64(envelope), [s.fromBase64(identity)]);
    const digest = await crypto.subtle.digest('SHA-256', data);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
  } catch (error) {
    return error.name;
  }
}"""

PAGE_DERIVE = """async ([typed, salt, words]) => {
  const s = await import('/static/js/sealing.mjs');
  await s.ready();
  const keys = s.deriveSourceKeys(s.checkCodename(typed, new Set(words)), salt);
  return [s.toBase64(keys.publicKey), s.toBase64(keys.secretKey), s.toBase64(keys.loginSecret)];
}"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_envelopes_interoperate_with_python(page: Page, site: Site) -> None:
    page.goto("/report")
    wait_for_sealing(page)
    analyst: AnalystKey = site.analyst
    other = generate_analyst_key()
    recipients = [b64(other.public().encryption), b64(analyst.public().encryption)]
    for size in INTEROP_SIZES:
        data = os.urandom(size)
        # Made in the page, opened in Python.
        envelope = base64.b64decode(page.evaluate(PAGE_SEAL, [b64(data), recipients]))
        assert open_envelope(envelope, [analyst.encryption_secret]) == data
        assert envelope[:10] == b"BLAGHENV\x01\x02"
        # Made in Python, opened in the page; and refused in the page once tampered with.
        sealed = seal(data, [analyst.public().encryption])
        digest = page.evaluate(PAGE_OPEN, [b64(sealed), b64(analyst.encryption_secret)])
        assert digest == hashlib.sha256(data).hexdigest()
        flipped = bytearray(sealed)
        flipped[-5] ^= 1
        opened = page.evaluate(PAGE_OPEN, [b64(bytes(flipped)), b64(analyst.encryption_secret)])
        assert opened == "DecryptionError"
        with pytest.raises(DecryptionError):
            open_envelope(bytes(flipped), [analyst.encryption_secret])


def test_codename_keys_match_python_and_the_spec_vector(page: Page) -> None:
    page.goto("/login")
    wait_for_sealing(page)
    words = list(load_wordlist())
    typed = "ABACUS abdomen\tabide  abiding\nability ablaze ＡＢＬＥ"
    salt = "000102030405060708090a0b0c0d0e0f"
    public, secret, login = page.evaluate(PAGE_DERIVE, [typed, salt, words])
    assert base64.b64decode(public).hex() == (
        "4c1ff7069b69a9ce0d7ed811b38b7c6a67681a39a0dd2e704ed4a78cce713c54"
    )
    assert base64.b64decode(secret).hex() == (
        "f021fba8be1854dbfc366f6b036e1f0c84e46431c56cbf46e69d9f039b26f308"
    )
    assert base64.b64decode(login).hex() == (
        "f471a1188f9fb28781b0d17e571ae89485b8e0aa2a13754bce154fe61c6cbc11"
    )
    # A word outside the list is refused before any derivation.
    refused = page.evaluate(
        """async ([typed, words]) => {
          const s = await import('/static/js/sealing.mjs');
          try { s.checkCodename(typed, new Set(words)); return 'accepted'; }
          catch (error) { return error.reason + ':' + error.words.join(','); }
        }""",
        ["abacus abdomen abide abiding ability ablaze straße", words],
    )
    assert refused == "unknown-words:straße"
    assert json.dumps(words[:1]) == '["abacus"]'


def test_the_browser_draws_from_the_filtered_list_and_accepts_retired_words(page: Page) -> None:
    """The JS path makes codenames in the browser: from the same filtered list as the server
    (docs/keys.md), while a typed codename holding a retired word is still accepted."""
    page.goto("/login")
    wait_for_sealing(page)
    drawn, accepted, made, checked = page.evaluate(
        """async () => {
          const s = await import('/static/js/sealing.mjs');
          const text = await (await fetch('/codename-words.txt')).text();
          const lists = s.parseWordList(text);
          const made = [];
          for (let i = 0; i < 200; i++) made.push(...s.generateCodename(lists.drawn).split(' '));
          const typed = 'Extortion abacus abdomen abide abiding ability ablaze';
          return [lists.drawn, [...lists.accepted], made, s.checkCodename(typed, lists.accepted)];
        }"""
    )
    assert drawn == list(load_wordlist())
    assert set(accepted) == set(load_wordlist()) | set(load_retired_words())
    assert set(made) <= set(drawn) and not set(made) & set(load_retired_words())
    assert checked == "extortion abacus abdomen abide abiding ability ablaze"


def test_photo_cleaning_refuses_damaged_images_and_leaves_other_files(page: Page) -> None:
    """metadata.mjs on its edges: a JPEG or PNG it cannot read throws (the page then asks the
    reporter rather than send what they asked to remove); a file that is neither, whatever its
    name, is returned as it is; a JPEG without EXIF keeps no orientation it never had."""
    page.goto("/report")
    wait_for_sealing(page)
    results = page.evaluate(
        """async () => {
          const m = await import('/static/js/metadata.mjs');
          const attempt = (f) => { try { f(); return 'ok'; } catch (e) { return e.name; } };
          const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x40, 0x45]);
          const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
                                      0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
          const other = new File([new Uint8Array([1, 2, 3])], 'photo.jpg', {type: 'image/jpeg'});
          const minimal = new Uint8Array([0xff, 0xd8, 0xff, 0xfe, 0x00, 0x04, 0x41, 0x42,
                                          0xff, 0xda, 0x00, 0x02, 0x99, 0xff, 0xd9]);
          return [attempt(() => m.stripJpeg(jpeg)), attempt(() => m.stripPng(png)),
                  (await m.withoutMetadata(other)) === other,
                  Array.from(m.stripJpeg(minimal))];
        }"""
    )
    assert results == [
        "MetadataError",
        "MetadataError",
        True,
        [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x99, 0xFF, 0xD9],
    ]


def test_closing_the_tab_before_the_codename_is_typed_back_warns(
    context: BrowserContext, site: Site
) -> None:
    """The last resort (issue 14): closing the tab on the codename panel brings the browser's
    "leave this page?" question; once typed back, nothing asks."""
    page = context.new_page()
    page.goto("/report")
    wait_for_sealing(page)
    page.check("input[name=category][value=fraud]")
    page.fill("#description", "Fake tickets")
    submit_report(page)
    words = page.locator("#js-codename-words")
    words.wait_for(state="visible", timeout=60_000)
    with page.expect_event("dialog") as shown:
        page.close(run_before_unload=True)
    assert shown.value.type == "beforeunload"
    shown.value.dismiss()
    assert not page.is_closed()
    page.fill("#js-codename-typed", words.inner_text())
    page.click("#js-codename-check button")
    page.wait_for_url("**/followup?saved=1")
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.type))
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    assert asked == []
