"""The reporter's main scenarios in both engines: Chromium (Playwright) and Firefox ESR, Tor
Browser's engine (Marionette), each with JavaScript off and on, against ``blagh serve``.

A scenario is written once against :class:`browser_helpers.Tab`; the ``tab`` fixture gives it
one engine at a time.  Firefox is started only by the tests that ask for it, once per module
and JavaScript setting (a start takes a few seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    ChromiumTab,
    Site,
    Tab,
    launch,
    missing_requirements,
    running_site,
)
from firefox_helpers import Firefox, missing_firefox
from media_helpers import (
    PNG_TEXT_CHUNKS,
    exif,
    jpeg_segments,
    oriented_gps_jpeg,
    pixels,
    png_chunks,
    png_with_text,
)
from playwright.sync_api import Browser, Playwright, sync_playwright
from report_scenarios import (
    BROWSER_SEALS,
    MIB,
    SERVER_SEALS,
    check_arrived,
    check_source_keys,
    fill_day,
    fill_report,
    marker,
    report_files,
    submit_report,
    type_back_in_the_page,
    wait_for_sealing,
)
from tor_like_relay import BufferingRelay

ENGINES = ["chromium", "firefox"]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    problem = missing_requirements() or missing_firefox()
    if problem:
        pytest.fail(problem)
    with running_site("blagh-engines-") as site:
        yield site


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as driver:
        playwright: Playwright = driver
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def firefoxes() -> Iterator[dict[bool, Firefox]]:
    """Firefox with JavaScript on (True) and off (False), each started when first asked for."""
    started: dict[bool, Firefox] = {}
    yield started
    for browser in started.values():
        browser.close()


TabMaker = Callable[..., Tab]


@pytest.fixture
def open_tab(site: Site, chromium: Browser, firefoxes: dict[bool, Firefox]) -> Iterator[TabMaker]:
    """``open_tab(engine, javascript)``: a fresh tab, with no cookie, in that engine (on the
    site's own address, or ``url``)."""
    contexts = []

    def make(engine: str, javascript: bool, url: str = "") -> Tab:
        if engine == "chromium":
            context = chromium.new_context(base_url=url or site.url, java_script_enabled=javascript)
            contexts.append(context)
            return ChromiumTab(context.new_page(), javascript)
        if javascript not in firefoxes:
            firefoxes[javascript] = Firefox(javascript).start()
        browser = firefoxes[javascript]
        browser.clear_cookies()
        return browser.tab(url or site.url)

    yield make
    for context in contexts:
        context.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_report_without_javascript(open_tab: TabMaker, site: Site, engine: str) -> None:
    """JavaScript off (Tor Browser's Safest): the form posts, the server seals on arrival."""
    tab = open_tab(engine, False)
    assert not tab.javascript
    tab.goto("/report")
    assert tab.text("#protection") == SERVER_SEALS
    assert tab.count("html[data-blagh]") == 0
    mark = marker()
    files = report_files(mark, big=600_000)
    before = site.report_ids()
    fill_report(tab, mark, files, keep_codename=False)
    submit_report(tab)
    tab.wait_for_url("**/report/received")
    check_arrived(site, before, mark, files)


@pytest.mark.parametrize("engine", ENGINES)
def test_report_sealed_in_the_page(open_tab: TabMaker, site: Site, engine: str) -> None:
    """JavaScript on: the page seals, makes the codename, has it typed back, opens the report."""
    tab = open_tab(engine, True)
    tab.goto("/report")
    wait_for_sealing(tab)
    assert tab.text("#protection") == BROWSER_SEALS
    mark = marker()
    files = report_files(mark, big=1_500_000)
    before = site.report_ids()
    fill_report(tab, mark, files, keep_codename=True)
    submit_report(tab)
    shown = type_back_in_the_page(tab)
    tab.wait_visible("section.report p.danger")
    assert "Online harassment or threats" in tab.text("section.report h2")
    opened = check_arrived(site, before, mark, files)
    check_source_keys(site, opened, shown)


@pytest.fixture
def relay(site: Site) -> Iterator[BufferingRelay]:
    """The site behind a relay that buffers like a Tor circuit, at 4 MB/s."""
    relay = BufferingRelay(site.server.port, rate=4 * MIB)
    yield relay
    relay.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_send_clicked_again_stores_one_report(
    open_tab: TabMaker, site: Site, relay: BufferingRelay, engine: str
) -> None:
    """Issue 14: JavaScript off, a large file, Send clicked again while it went: 9 reports
    became 11.  The second click comes once the first upload has left the browser (over Tor,
    into the circuit): the browser drops the first request, but the server gets it whole and
    stores it, then gets the second.  One report; the reporter lands where the first led."""
    tab = open_tab(engine, False, relay.url)
    tab.goto("/report")
    assert tab.text("#send-hint").startswith("Press the button once.")
    mark = marker()
    files = report_files(mark, big=8 * MIB)
    before = site.report_ids()
    fill_report(tab, mark, files, keep_codename=False)
    tab.press("#report-form button[type=submit]")
    relay.wait_for_requests("POST /report", 1)
    tab.press("#report-form button[type=submit]")
    tab.wait_for_url("**/report/received", timeout=120)
    relay.wait_for_requests("POST /report", 2)
    relay.wait_until_settled()
    check_arrived(site, before, mark, files)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_kept_file_can_be_removed(open_tab: TabMaker, site: Site, engine: str) -> None:
    """Issue 14: JavaScript off, a form error, and the wrong (identifying) photo stays kept.
    Its "remove" box takes it out: the report arrives without it."""
    tab = open_tab(engine, False)
    tab.goto("/report")
    mark = marker()
    files = report_files(mark, big=200_000)
    tab.fill("#description", f"{mark} writes to me every night. تهديد")
    tab.set_files("#files", files)
    tab.check("input[name=keep_codename][value=no]")
    submit_report(tab)
    tab.wait_visible("#category-error")
    assert tab.count("input[name=remove_file]") == 2
    tab.check("input[name=remove_file][value='0']")
    tab.check("input[name=category][value=harassment]")
    before = site.report_ids()
    submit_report(tab)
    tab.wait_for_url("**/report/received")
    opened = site.open_report(site.new_report(before))
    assert opened.fields["attachments"] == [files[1]["name"]]
    assert opened.files == {files[1]["name"]: (files[1]["mimeType"], files[1]["buffer"])}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_refused_codename_keeps_what_was_typed_and_back_still_works(
    open_tab: TabMaker, site: Site, engine: str
) -> None:
    """Issue 14, JavaScript off: a failed login emptied the seven-word field, and Back after a
    codename typed back wrong showed "Document Expired" (a page that answered a POST).  Both
    are redirected after their POST now, and the page after it keeps what was typed."""
    tab = open_tab(engine, False)
    tab.goto("/report")
    tab.check("input[name=category][value=fraud]")
    tab.fill("#description", "Fake tickets")
    submit_report(tab)
    tab.wait_for_url("**/report/codename")
    shown = tab.text("p.codename")
    wrong = " ".join(reversed(shown.split()))
    tab.fill("#codename", wrong)
    tab.click("main button[type=submit]")
    tab.wait_visible("#codename-error")
    assert "Check word" in tab.text("#codename-error")
    assert tab.value("#codename") == wrong
    assert tab.url.endswith("/report/codename")
    tab.fill("#codename", shown)
    tab.click("main button[type=submit]")
    tab.wait_for_url("**/followup?saved=1")
    tab.back()  # to the codename page, which now sends the source on: no "Document Expired"
    tab.wait_attached("main#main", timeout=10)

    tab.goto("/login")
    tab.fill("#codename", wrong)
    tab.click("#login-form button[type=submit]")
    tab.wait_visible("#codename-error")
    assert "No report matches this codename" in tab.text("#codename-error")
    assert tab.value("#codename") == wrong
    tab.goto("/")
    tab.back()
    tab.wait_attached("#login-form", timeout=10)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_codename_survives_a_language_switch_and_links_ask_first(
    open_tab: TabMaker, site: Site, engine: str
) -> None:
    """Issue 14, JavaScript on: the codename lives only in the page until it is typed back,
    and a click on a language link (or the site's name) on its panel left the page, losing it
    while the report was stored.  The language link keeps it; the site's name asks first."""
    tab = open_tab(engine, True)
    tab.goto("/report")
    wait_for_sealing(tab)
    tab.check("input[name=category][value=fraud]")
    tab.fill("#description", "Fake tickets")
    submit_report(tab)
    tab.wait_visible("#js-codename-words", timeout=90)
    shown = tab.text("#js-codename-words")

    tab.click("nav.languages a[hreflang=fr]")
    tab.wait_for_url("**/report?lang=fr")
    tab.wait_visible("#js-codename-words", timeout=90)
    assert tab.text("#js-codename-words") == shown
    assert tab.text("#js-codename h1") == "Votre signalement a bien été reçu"

    tab.click("a.site-name")
    tab.wait_visible("#js-codename-leave")
    assert tab.url.endswith("/report?lang=fr")
    tab.click("#js-codename-leave button[data-stay]")
    assert not tab.is_visible("#js-codename-leave")

    tab.fill("#js-codename-typed", shown)
    tab.click("#js-codename-check button")
    tab.wait_for_url("**/followup?saved=1")
    tab.goto("/report")  # typed back: a new form, not the codename again
    wait_for_sealing(tab)
    assert tab.is_visible("#report-form") and not tab.is_visible("#js-codename")


@pytest.mark.parametrize("javascript", [False, True], ids=["no-js", "js"])
@pytest.mark.parametrize("engine", ENGINES)
def test_the_day_is_asked_in_the_pages_language(
    open_tab: TabMaker, engine: str, javascript: bool
) -> None:
    """Issue 14: a date field showed mm/dd/yyyy on an Arabic page (the browser's en-US).  Day,
    month and year now have their own fields, named in Arabic; a day that does not exist gets
    the same Arabic message from the page's script as from the server."""
    tab = open_tab(engine, javascript)
    tab.goto("/report?lang=ar")
    if javascript:
        wait_for_sealing(tab)
    assert tab.count("input[type=date]") == 0
    assert tab.text("label:has(#seen_day)") == "اليوم"
    tab.check("input[name=category][value=fraud]")
    tab.fill("#description", "احتيال")
    tab.check("input[name=keep_codename][value=no]")
    fill_day(tab, "30", "2", "2025")
    submit_report(tab)
    tab.wait_visible("#seen_on-error")
    assert tab.text("#seen_on-error") == "هذا التاريخ غير موجود: تحقّق من اليوم والشهر."


def photo_files(folder: Path) -> list[dict[str, Any]]:
    return [
        {"name": "IMG_0001.jpg", "mimeType": "image/jpeg", "buffer": oriented_gps_jpeg(folder)},
        {"name": "Screenshot.png", "mimeType": "image/png", "buffer": png_with_text(folder)},
    ]


def send_photos(tab: Tab, site: Site, files: list[dict[str, Any]], strip: bool) -> Any:
    tab.goto("/report")
    wait_for_sealing(tab)
    assert tab.is_visible("#strip-metadata")
    assert tab.count("#strip-metadata:checked") == 1
    assert not tab.is_visible("[data-metadata-no-js]")
    tab.check("input[name=category][value=sextortion]")
    tab.fill("#description", "He sends me my own photos and asks for money.")
    tab.set_files("#files", files)
    tab.check("input[name=keep_codename][value=no]")
    if not strip:
        tab.click("#strip-metadata")
        assert tab.count("#strip-metadata:checked") == 0
    before = site.report_ids()
    submit_report(tab)
    tab.wait_for_url("**/report/received")
    return site.open_report(site.new_report(before))


@pytest.mark.parametrize("engine", ENGINES)
def test_photos_lose_location_and_device_data_in_the_page(
    open_tab: TabMaker, site: Site, engine: str, tmp_path: Path
) -> None:
    """Issue 14: phone photos carry GPS and device data that analysts then see. With the box
    ticked (the default) the page removes it before sealing: the analyst's copy has none, the
    picture is the same, and the orientation is kept."""
    files = photo_files(tmp_path)
    jpeg, png = files[0]["buffer"], files[1]["buffer"]
    assert "GPSLatitude" in exif(tmp_path, jpeg) and "Model" in exif(tmp_path, jpeg)
    opened = send_photos(open_tab(engine, True), site, files, strip=True)
    clean_jpeg = opened.files["IMG_0001.jpg"][1]
    clean_png = opened.files["Screenshot.png"][1]

    tags = exif(tmp_path, clean_jpeg)
    for tag in ("GPSLatitude", "GPSLongitude", "GPSPosition", "Make", "Model", "Artist"):
        assert tag not in tags, tag
    assert tags["Orientation"] == "Rotate 90 CW"
    segments, scan = jpeg_segments(clean_jpeg)
    original_segments, original_scan = jpeg_segments(jpeg)
    assert scan == original_scan  # the image data, byte for byte
    assert [s for s in segments if not 0xE0 <= s[0] <= 0xEF] == [
        s for s in original_segments if not 0xE0 <= s[0] <= 0xEF and s[0] != 0xFE
    ]
    exif_segments = [payload for marker, payload in segments if marker == 0xE1]
    assert len(exif_segments) == 1 and len(exif_segments[0]) == 32  # orientation alone
    assert b"Acme" not in clean_jpeg and b"Jane" not in clean_jpeg
    assert pixels(tmp_path, clean_jpeg, ".jpg") == pixels(tmp_path, jpeg, ".jpg")

    chunks = png_chunks(clean_png)
    assert not {kind for kind, _ in chunks} & set(PNG_TEXT_CHUNKS)
    assert chunks == [c for c in png_chunks(png) if c[0] not in PNG_TEXT_CHUNKS]
    assert pixels(tmp_path, clean_png, ".png") == pixels(tmp_path, png, ".png")


@pytest.mark.parametrize("engine", ENGINES)
def test_unticked_the_original_photos_are_sent(
    open_tab: TabMaker, site: Site, engine: str, tmp_path: Path
) -> None:
    files = photo_files(tmp_path)
    opened = send_photos(open_tab(engine, True), site, files, strip=False)
    assert opened.files == {f["name"]: (f["mimeType"], f["buffer"]) for f in files}


@pytest.mark.parametrize("engine", ENGINES)
def test_without_javascript_the_form_says_analysts_see_photo_data(
    open_tab: TabMaker, engine: str
) -> None:
    tab = open_tab(engine, False)
    tab.goto("/report")
    assert "the analysts will see it" in tab.text("[data-metadata-no-js]")
    assert not tab.is_visible("#strip-metadata")
