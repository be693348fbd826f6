"""A report as a reporter types it, and the checks of what arrived: one scenario for every
browser (tests/test_browser.py drives Chromium, tests/test_browser_engines.py both Chromium
and Firefox ESR), written against :class:`browser_helpers.Tab`.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from browser_helpers import Site, Tab

from crypto import codename
from crypto.envelope import open_envelope

MIB = 1024 * 1024

SERVER_SEALS = "This site encrypts everything you send as it arrives, before storing it."
BROWSER_SEALS = (
    "Your browser encrypts everything before sending it: this site never receives your report "
    "or your files unencrypted."
)


def marker() -> str:
    """A word that appears in everything the reporter types and in every file."""
    return "PLAIN" + secrets.token_hex(6).upper()


def file_bytes(mark: str, size: int) -> bytes:
    """Random bytes with the marker every 64 KiB, so any piece of the file would show it."""
    data = bytearray(os.urandom(size))
    for at in range(0, size - len(mark), 65536):
        data[at : at + len(mark)] = mark.encode()
    return bytes(data)


def report_files(mark: str, big: int = 3 * MIB + 12345) -> list[dict[str, Any]]:
    return [
        {"name": f"{mark}-photo.jpg", "mimeType": "image/jpeg", "buffer": file_bytes(mark, 70_000)},
        {"name": f"{mark}-video.mp4", "mimeType": "video/mp4", "buffer": file_bytes(mark, big)},
    ]


def expected_fields(mark: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields document the workstation should read, whichever path the report took."""
    return {
        "v": 1,
        "kind": "report",
        "category": "harassment",
        "danger": True,
        "description": f"{mark} writes to me every night. تهديد",
        "links": [f"https://example.org/{mark}", f"@{mark}_account"],
        "platform": f"{mark}Gram",
        "seen_on": "2026-01-15",
        "identity": {"name": f"{mark} Name", "phone": "+33 1 23 45 67", "email": f"{mark}@x.org"},
        "attachments": [f["name"] for f in files],
    }


def fill_day(tab: Tab, day: str, month: str, year: str) -> None:
    """The day the content was seen, in its three small fields."""
    tab.fill("#seen_day", day)
    tab.select("#seen_month", month)
    tab.fill("#seen_year", year)


def fill_report(tab: Tab, mark: str, files: list[dict[str, Any]], keep_codename: bool) -> None:
    tab.check("input[name=category][value=harassment]")
    tab.check("input[name=danger]")
    tab.fill("#description", f"{mark} writes to me every night. تهديد")
    tab.fill("#links", f"https://example.org/{mark}\n\n  @{mark}_account  ")
    tab.fill("#platform", f"{mark}Gram")
    fill_day(tab, "15", "1", "2026")
    tab.fill("#name", f"{mark} Name")
    tab.fill("#phone", "+33 1 23 45 67")
    tab.fill("#email", f"{mark}@x.org")
    if files:
        tab.set_files("#files", files)
    tab.check(f"input[name=keep_codename][value={'yes' if keep_codename else 'no'}]")


def submit_report(tab: Tab) -> None:
    tab.click("#report-form button[type=submit]")


def wait_for_sealing(tab: Tab) -> None:
    """Until the script has taken over the page (libsodium.js loaded and checked)."""
    tab.wait_attached("html[data-blagh=sealing]")


def check_arrived(site: Site, before: set[str], mark: str, files: list[dict[str, Any]]) -> Any:
    """The one new report opens with the analyst's key, with every field and file intact."""
    opened = site.open_report(site.new_report(before))
    assert opened.fields == expected_fields(mark, files)
    assert opened.files == {f["name"]: (f["mimeType"], f["buffer"]) for f in files}
    return opened


def type_back_in_the_page(tab: Tab) -> str:
    """The JavaScript path's codename panel: read the codename, type it wrong, then right."""
    tab.wait_visible("#js-codename-words", timeout=90)
    shown = tab.text("#js-codename-words")
    assert len(shown.split()) == codename.WORD_COUNT
    tab.fill("#js-codename-typed", "wrong " + shown)
    tab.click("#js-codename-check button")
    tab.wait_visible("#js-codename-error")
    assert "word" in tab.text("#js-codename-error")
    tab.fill("#js-codename-typed", shown.upper())
    tab.click("#js-codename-check button")
    tab.wait_for_url("**/followup?saved=1")
    return shown


def check_source_keys(site: Site, opened: Any, shown: str) -> None:
    """The source made in the page is the one the codename derives in Python, and its key
    opens the report's fields."""
    keys = codename.derive(shown, site.data_dir.read_instance_salt())
    with site.store() as store:
        source = store.index.source(opened.report.source_id)
        assert source is not None and source.public_key == keys.public_key
        verifier = codename.login_verifier(keys.login_secret, site.data_dir.read_login_hash_key())
        assert store.index.source_by_verifier(verifier) == source
        fields = next(i for i in opened.report.items if i.kind == "fields")
        open_envelope(store.read_blob(fields.blob), [keys.secret_key])
