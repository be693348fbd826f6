"""Debian's Firefox ESR (Tor Browser's engine) driven through Marionette, its own remote protocol.

A plain module, not a conftest, beside tests/browser_helpers.py (Chromium through Playwright).
No geckodriver: it would have to be downloaded, and nothing may be at run time.  Firefox is
started here with ``-marionette -headless``, a fresh profile in a temporary folder and the
Marionette port chosen free, and ``marionette_driver`` (Mozilla's client, from PyPI) speaks to
it.  JavaScript off, as Tor Browser's Safest level has it: ``javascript.enabled=false`` in the
profile's ``user.js``.

:class:`FirefoxTab` and :class:`browser_helpers.ChromiumTab` offer the same few actions, so a
scenario written once against :class:`browser_helpers.Tab` runs in both browsers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gunicorn_helpers import free_port
from marionette_driver.errors import MarionetteException, NoSuchElementException
from marionette_driver.marionette import Marionette

FIREFOX = Path("/usr/bin/firefox-esr")
START_SECONDS = 60.0
WAIT_SECONDS = 60.0

PREFS: dict[str, object] = {
    # Nothing of its own on the network (the tests run with loopback only anyway).
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.policy.dataSubmissionEnabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.proxy.type": 0,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    # What Tor Browser reports whatever the page's language (issue 14: date fields).
    "intl.accept_languages": "en-US, en",
    "intl.locale.requested": "en-US",
}


def missing_firefox() -> str | None:
    """Why the Firefox tests cannot run here, or None; they fail (not skip) on it."""
    if not FIREFOX.exists():
        return "Firefox ESR is missing: `apt-get install firefox-esr` (make test does it)."
    return None


def _user_js(prefs: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f'user_pref("{name}", {value(v)});\n' for name, v in prefs.items())


class Firefox:
    """One headless Firefox ESR with its own profile; :meth:`tab` drives its one window."""

    def __init__(self, javascript: bool = True, prefs: dict[str, object] | None = None) -> None:
        self.javascript = javascript
        self.folder = Path(tempfile.mkdtemp(prefix="blagh-firefox-"))
        self.profile = self.folder / "profile"
        self.profile.mkdir()
        self.downloads = self.folder / "files"
        self.downloads.mkdir()
        self.port = free_port()
        settings = dict(PREFS, **(prefs or {}))
        settings["marionette.port"] = self.port
        settings["javascript.enabled"] = javascript
        (self.profile / "user.js").write_text(_user_js(settings), "utf-8")
        self.log_path = self.folder / "firefox.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Marionette | None = None

    def start(self) -> Firefox:
        env = dict(os.environ, MOZ_HEADLESS="1", HOME=str(self.folder), TMPDIR=str(self.folder))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [FIREFOX, "-marionette", "-headless", "-no-remote", "-profile", self.profile],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        client = Marionette(host="127.0.0.1", port=self.port, socket_timeout=120)
        try:
            client.raise_for_port(timeout=START_SECONDS)
            client.start_session()
        except Exception as error:
            self.close()
            raise RuntimeError(f"Firefox did not start: {error}\n{self.log()}") from None
        self.client = client
        return self

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def tab(self, base_url: str) -> FirefoxTab:
        assert self.client is not None
        return FirefoxTab(self.client, base_url, self.downloads, self.javascript)

    def clear_cookies(self) -> None:
        assert self.client is not None
        self.client.delete_all_cookies()

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.delete_session()
            self.client = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def firefox(javascript: bool = True, prefs: dict[str, object] | None = None) -> Iterator[Firefox]:
    browser = Firefox(javascript, prefs).start()
    try:
        yield browser
    finally:
        browser.close()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds.

    Marionette has no event to wait on for most of what a test waits for (a URL, an element
    shown by a script): polling a condition with a deadline is what its own ``Wait`` does.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except (NoSuchElementException, MarionetteException):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class FirefoxTab:
    """The actions a scenario needs, in Firefox: CSS selectors, paths relative to the site."""

    name = "firefox"

    def __init__(
        self, client: Marionette, base_url: str, files_folder: Path, javascript: bool
    ) -> None:
        self.client = client
        self._javascript = javascript
        self.base_url = base_url.rstrip("/")
        self.files_folder = files_folder

    @property
    def javascript(self) -> bool:
        return self._javascript

    def goto(self, path: str) -> None:
        self.client.navigate(self.base_url + path)

    @property
    def url(self) -> str:
        return str(self.client.get_url())

    def _element(self, css: str) -> Any:
        return self.client.find_element("css selector", css)

    def fill(self, css: str, text: str) -> None:
        element = self._element(css)
        element.clear()
        if text:
            element.send_keys(text)

    def check(self, css: str) -> None:
        element = self._element(css)
        if not element.is_selected():
            element.click()

    def select(self, css: str, value: str) -> None:
        self._element(f'{css} option[value="{value}"]').click()

    def click(self, css: str) -> None:
        self._element(css).click()

    def press(self, css: str) -> None:
        """A mouse click that waits for nothing it starts (a form still sending, say)."""
        element = self._element(css)
        self.client.execute_script(
            "arguments[0].scrollIntoView({block: 'center'})", script_args=[element], sandbox=None
        )
        mouse = self.client.actions.sequence("pointer", "mouse", {"pointerType": "mouse"})
        mouse.click(element).perform()
        self.client.actions.release()

    def set_files(self, css: str, files: Sequence[dict[str, Any]]) -> None:
        """Playwright's file descriptions (name, mimeType, buffer), written to disk and
        chosen; Firefox takes each file's type from its name, as for a reporter's files."""
        paths = []
        for description in files:
            folder = Path(tempfile.mkdtemp(dir=self.files_folder))
            path = folder / description["name"]
            path.write_bytes(description["buffer"])
            paths.append(str(path))
        element = self._element(css)
        for path in paths:
            element.send_keys(path)

    def wait_for_url(self, pattern: str, timeout: float = WAIT_SECONDS) -> None:
        wait_until(lambda: fnmatch.fnmatch(self.url, pattern), f"the URL {pattern}", timeout)

    def wait_visible(self, css: str, timeout: float = WAIT_SECONDS) -> None:
        wait_until(lambda: self._element(css).is_displayed(), f"{css} shown", timeout)

    def wait_attached(self, css: str, timeout: float = WAIT_SECONDS) -> None:
        wait_until(lambda: self._element(css), f"{css} in the page", timeout)

    def count(self, css: str) -> int:
        return len(self.client.find_elements("css selector", css))

    def text(self, css: str) -> str:
        return str(self._element(css).text).strip()

    def value(self, css: str) -> str:
        return str(self._element(css).get_property("value"))

    def attribute(self, css: str, name: str) -> str | None:
        found = self._element(css).get_attribute(name)
        return None if found is None else str(found)

    def is_visible(self, css: str) -> bool:
        elements = self.client.find_elements("css selector", css)
        return bool(elements) and bool(elements[0].is_displayed())

    def back(self) -> None:
        self.client.go_back()
