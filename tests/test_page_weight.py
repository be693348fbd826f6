"""What a reporter downloads, measured in Debian's Chromium against ``blagh serve``.

Issue 12's goals: the report page with JavaScript at most 250 KB on a first visit and 30 KB on a
repeat visit (it was 602 KB every time: nothing cached, nothing compressed), and every page
without JavaScript at most 20 KB.  Bytes are those over the connection (tests/page_weight.py):
headers and compressed bodies, nothing for what the browser's cache gave.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_helpers import Site, launch, missing_requirements, running_site
from page_weight import weigh
from playwright.sync_api import Browser, sync_playwright

KB = 1000
LANGUAGES = ("ar", "fr", "en", "es")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    problem = missing_requirements()
    if problem:
        pytest.fail(problem)
    with running_site("blagh-weight-") as site:
        yield site


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_report_page_with_javascript_is_light_first_and_cached_after(
    chromium: Browser, site: Site, language: str
) -> None:
    visits = weigh(chromium, site.url, f"/report?lang={language}", javascript=True)
    first, repeat = visits.first, visits.repeat
    loaded = first.from_network()
    assert any(url.endswith("/vendor/libsodium-sumo.mjs") for url in loaded), loaded
    assert first.total <= 250 * KB, first.sizes
    # Only the page itself (never cached, never compressed) comes again.
    again = repeat.from_network()
    assert [url.split("/")[-1] for url in again] == [f"report?lang={language}"], again
    assert repeat.total <= 30 * KB, repeat.sizes


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("path", ["/", "/report", "/login"])
def test_pages_without_javascript_stay_under_20_kb(
    chromium: Browser, site: Site, language: str, path: str
) -> None:
    visits = weigh(chromium, site.url, f"{path}?lang={language}", javascript=False)
    for visit in (visits.first, visits.repeat):
        assert not any(url.endswith(".mjs") for url in visit.sizes), visit.sizes
        assert visit.total <= 20 * KB, visit.sizes
    # The style sheet is the one static file, cached after the first visit.
    assert any(url.endswith(".css") for url in visits.first.from_network())
    assert not any(url.endswith(".css") for url in visits.repeat.from_network())
