"""Previews of hostile images: sizes read from headers in the sandbox, a pixel budget, a memory
cap for the decoder, one decode at a time, and pages that say why there is no preview.

Every image is made here: ffmpeg draws the ordinary ones, and PNG bombs (1 MiB of file, 1 or
2 GiB decoded) are written with zlib in milliseconds (media_helpers.png_bomb).
"""

from __future__ import annotations

import http.client
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gunicorn_helpers import free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from media_helpers import damaged_png, picture, png_bomb, png_size
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import imagesize, sandbox
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from journalist_interface.imagesize import Size
from journalist_interface.safeview import (
    Previews,
    Undecodable,
    decoder_memory,
    read_size,
    sniff,
)

SERVER = ServerSigningKey.generate()
BOMB = png_bomb(16_000, 16_000)  # 1 MiB; 1 GiB decoded
DEEP_BOMB = png_bomb(16_000, 16_000, depth=16)  # 2 MiB; 2 GiB decoded
GARBAGE_JPEG = b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return picture(tmp_path_factory.mktemp("media") / "photo.png", "1280x960")


def vault_with(tmp_path: Path, analyst: Analyst, files: list[tuple[bytes, str]]) -> Path:
    """A vault holding one report with ``files`` (bytes, name)."""
    pickup = Pickup([analyst.key])
    pickup.report(pickup.source(), files=[(data, name, "image/png") for data, name in files])
    return imported_vault(tmp_path, analyst, SERVER, pickup)


def file_urls(page: str) -> dict[str, str]:
    """File name -> the base URL of its pages, from a report's page."""
    row = r"<tr><td><bdi>([^<]+)</bdi>(?:(?!</tr>).)*?href=\"(/reports/\w+/files/\w+)/details"
    found = re.findall(row, page, re.DOTALL)
    return dict(found)


def report_url(client: FlaskClient) -> str:
    found = re.search(r'href="(/reports/\w+)"', client.get("/").get_data(as_text=True))
    assert found is not None
    return found.group(1)


@pytest.fixture
def bombs_vault(tmp_path: Path, analyst: Analyst, photo: bytes) -> Path:
    files = [(BOMB, "bomb.png"), (DEEP_BOMB, "deep.png"), (photo, "photo.png")]
    files += [(damaged_png(), "damaged.png"), (GARBAGE_JPEG, "garbage.jpg")]
    return vault_with(tmp_path, analyst, files)


@pytest.fixture
def app(bombs_vault: Path) -> Iterator[Flask]:
    yield from workstation_app(bombs_vault)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


# --- sizes from headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".jpg", []),
        (".png", []),
        (".png", ["-pix_fmt", "rgba64be"]),
        (".gif", []),
        (".webp", []),
        (".webp", ["-lossless", "1"]),
        (".bmp", []),
        (".tiff", []),
        (".tiff", ["-pix_fmt", "rgb48le"]),
    ],
)
def test_the_size_is_read_from_the_header_in_the_sandbox(
    tmp_path: Path, suffix: str, options: list[str]
) -> None:
    path = tmp_path / f"image{suffix}"
    source = ["-f", "lavfi", "-i", "testsrc=size=321x243", "-frames:v", "1", *options]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *source, str(path)], check=True
    )  # fmt: skip
    data = path.read_bytes()
    deep = any("48" in o or "64" in o for o in options)
    assert read_size([data], sniff(data)) == Size(321, 243, deep)


def test_a_bomb_s_size_is_read_without_decoding_it() -> None:
    started = time.monotonic()
    assert read_size([DEEP_BOMB], sniff(DEEP_BOMB)) == Size(16_000, 16_000, True)
    assert time.monotonic() - started < 5  # decoding it takes 2 GiB and 20 s or more


def test_an_unreadable_header_is_undecodable() -> None:
    for data in (GARBAGE_JPEG, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a\x01"):
        with pytest.raises(Undecodable):
            read_size([data], sniff(data))


HEADS = [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\xff\xd8\xff\xc0\x00\x11\x08",
    b"GIF89a\x10\x00\x10\x00\x80\x00\x00",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
    b"II*\x00\x08\x00\x00\x00",
    b"MM\x00*\x00\x00\x00\x08",
]


@settings(max_examples=400, deadline=1000)
@given(st.sampled_from(HEADS), st.binary(max_size=300))
def test_any_header_gives_a_size_or_a_refusal(head: bytes, tail: bytes) -> None:
    """Whatever follows a format's magic, the size reader answers quickly with a size or one
    of the errors its program turns into ``{"error": …}``: never a loop, never another crash."""
    kind = sniff(head + tail).mime.partition("/")[2]
    try:
        found = imagesize.size_of(BytesIO(head + tail), kind)
    except (imagesize.Unreadable, OSError, ValueError, OverflowError, struct.error):
        return
    assert found.width > 0 and found.height > 0


# --- what the analyst sees ---------------------------------------------------------------------


def test_a_png_bomb_is_too_large_to_preview_at_once(client: FlaskClient) -> None:
    report = report_url(client)
    urls = file_urls(client.get(report).get_data(as_text=True))
    for name in ("bomb.png", "deep.png"):
        started = time.monotonic()
        page = client.get(urls[name] + "/details")
        preview = client.get(urls[name] + "/preview")
        assert time.monotonic() - started < 10  # decoding would take 1 or 2 GiB and 10 to 20 s
        body = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "This image is too large to preview: 16000 × 16000 pixels" in body
        assert "up to 40 megapixels" in body
        assert "Reveal the image" not in body and 'class="preview"' not in body
        assert "mat2 was not run on this image" in body  # mat2 would decode it whole
        assert "clean copy" not in body.split("Download")[-1]
        assert preview.status_code == 422
        assert preview.headers["Content-Type"].startswith("text/plain")
        assert "too large to preview" in preview.get_data(as_text=True)
    listing = client.get(report).get_data(as_text=True)
    assert listing.count("Too large to preview") == 2
    assert listing.count('class="thumb"') == 3  # the photo and the two damaged files still try


def test_a_damaged_image_says_it_could_not_be_decoded(client: FlaskClient) -> None:
    report = report_url(client)
    urls = file_urls(client.get(report).get_data(as_text=True))
    for name in ("damaged.png", "garbage.jpg"):
        body = client.get(urls[name] + "/details").get_data(as_text=True)
        assert "This image could not be decoded: it may be damaged or hostile." in body
        assert "Reveal the image" not in body and 'class="preview"' not in body
        preview = client.get(urls[name] + "/preview")
        assert preview.status_code == 404
        assert "could not be decoded" in preview.get_data(as_text=True)
    photo = client.get(urls["photo.png"] + "/details").get_data(as_text=True)
    assert "Reveal the image" in photo and 'class="preview"' in photo
    assert "could not be decoded" not in photo
    listing = client.get(report).get_data(as_text=True)
    assert listing.count("Could not be decoded") == 2


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("fr", ["Trop grande pour un aperçu", "Impossible à décoder"]),
        ("ar", ["أكبر من أن تُعاين", "تعذّر فك ترميزها"]),
    ],
)
def test_why_there_is_no_preview_in_french_and_arabic(
    client: FlaskClient, language: str, words: list[str]
) -> None:
    report = report_url(client)
    urls = file_urls(client.get(report).get_data(as_text=True))
    for name in ("bomb.png", "damaged.png"):
        client.get(urls[name] + "/details")
    listing = client.get(f"{report}?lang={language}").get_data(as_text=True)
    for word in words:
        assert word in listing, word


# --- one decode at a time ----------------------------------------------------------------------


def test_one_decode_at_a_time_and_busy_past_the_queue(app: Flask, client: FlaskClient) -> None:
    urls = file_urls(client.get(report_url(client)).get_data(as_text=True))
    photo = urls["photo.png"] + "/preview"
    previews = Previews(40_000_000, queue=0, wait=0.2)
    app.extensions["previews"] = previews
    with previews.turn():  # a decode in progress, and no room to wait behind it
        started = time.monotonic()
        busy = client.get(photo)
        assert busy.status_code == 503
        assert time.monotonic() - started < 2  # told at once, not after a wait
        assert busy.headers["Retry-After"] == "5"
        assert "Previews are busy" in busy.get_data(as_text=True)
        # A bomb is refused from its header whether or not the decoder is free.
        assert client.get(urls["bomb.png"] + "/preview").status_code == 422
    made = client.get(photo)
    assert made.status_code == 200
    assert png_size(made.get_data()) == (640, 480)
    with previews.turn():
        assert client.get(photo).get_data() == made.get_data()  # from memory: no turn needed

    waiting = Previews(40_000_000, queue=1, wait=0.2)
    app.extensions["previews"] = waiting
    with waiting.turn():
        started = time.monotonic()
        assert client.get(photo).status_code == 503  # waited its turn, briefly, in vain
        assert time.monotonic() - started >= 0.2
        page = client.get(urls["photo.png"] + "/details").get_data(as_text=True)
        assert "Previews are busy: another image is being decoded." in page
        assert "Reveal the image" in page
    assert client.get(photo).status_code == 200


def test_the_pixel_budget_is_a_setting(bombs_vault: Path) -> None:
    with pytest.raises(ValueError, match="preview_megapixels"):
        WorkstationConfig(vault=bombs_vault, preview_megapixels=0)
    app = create_app(WorkstationConfig(vault=bombs_vault, preview_megapixels=1))
    try:
        client = logged_in(app)
        urls = file_urls(client.get(report_url(client)).get_data(as_text=True))
        body = client.get(urls["photo.png"] + "/details").get_data(as_text=True)
        assert "too large to preview: 1280 × 960 pixels" in body
        assert "up to 1 megapixels" in body
    finally:
        app.extensions["workstation"].sessions.close()


def test_the_decoder_runs_under_a_memory_cap() -> None:
    grab = "import sys; b = bytearray(300 * 1024 * 1024); sys.stdout.write('allocated')"
    with sandbox.workspace([b""], ".txt") as path:
        roomy = sandbox.run(["/usr/bin/python3", "-I", "-S", "-c", grab], path.parent)
        capped = sandbox.run(
            ["/usr/bin/python3", "-I", "-S", "-c", grab], path.parent, memory=128 * 1024 * 1024
        )
    assert roomy.stdout == b"allocated"
    assert capped.status != 0 and b"MemoryError" in capped.stderr
    assert decoder_memory(40_000_000) < 800 * 1024 * 1024  # against 4 GiB before


# --- under waitress ----------------------------------------------------------------------------


class PeakMemory(threading.Thread):
    """The largest resident memory (VmHWM) that any process under ``root`` reached: the server
    itself and every parser it runs in the sandbox, sampled every 20 ms until :meth:`stop`.

    (The kernel's own account, ``RUSAGE_CHILDREN``, cannot be used: bubblewrap's monitor exits
    without reaping the sandbox's first process, so what ran inside is never added to it.)
    """

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.02):
            self.sample()

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.sample()
        return self.peak

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        for pid in parents:
            ancestor = pid
            while ancestor != self.root and ancestor in parents:
                ancestor = parents[ancestor]
            if ancestor != self.root:
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found is not None:
                self.peak = max(self.peak, int(found.group(1)) * 1024)


class Browser:
    """Requests to the app over real connections, each on its own, with the session cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(
        self, method: str, path: str, body: str = "", timeout: float = 60
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Cookie": self.cookie} if self.cookie else {}
            if body:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def log_in(self) -> None:
        status, headers, _ = self.request("POST", "/login", f"passphrase={PASSPHRASE}")
        assert status == 303
        self.cookie = headers["Set-Cookie"].split(";")[0]


def test_the_inbox_answers_while_a_report_s_bombs_are_previewed(
    tmp_path: Path, analyst: Analyst
) -> None:
    """Six PNG bombs and three large images on one report, every preview asked at once (as a
    browser does): the bombs are refused from their headers, the large images are decoded one
    at a time, the inbox answers meanwhile, and nothing under the server ever holds more
    memory than the decoder's cap."""
    large = png_bomb(5_000, 4_000, depth=16)  # 20 megapixels at 16 bits: just within budget
    files = [(BOMB, f"bomb-{n}.png") for n in range(6)]
    files += [(large + bytes([n]), f"large-{n}.png") for n in range(3)]
    vault = vault_with(tmp_path, analyst, files)
    port = free_port()
    server = subprocess.Popen(
        [Path(sys.executable).parent / "blagh", "workstation", "serve", "--vault", vault,
         "--port", str(port), "--preview-megapixels", "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    memory = PeakMemory(server.pid)
    memory.start()
    try:
        browser = Browser(port)
        wait_until_listening(browser, server)
        browser.log_in()
        status, _, inbox = browser.request("GET", "/")
        report = re.search(rb'href="(/reports/\w+)"', inbox)
        assert status == 200 and report is not None
        started = time.monotonic()
        status, _, page = browser.request("GET", report.group(1).decode(), timeout=10)
        assert status == 200 and time.monotonic() - started < 5  # no preview made for it
        urls = file_urls(page.decode())
        assert len(urls) == 9

        answers: dict[str, tuple[int, float]] = {}

        def fetch(name: str) -> None:
            status, _, _ = browser.request("GET", urls[name] + "/preview")
            answers[name] = (status, time.monotonic())

        threads = [threading.Thread(target=fetch, args=(name,)) for name in urls]
        for thread in threads:
            thread.start()
        asked = time.monotonic()
        status, _, _ = browser.request("GET", "/", timeout=10)
        answered = time.monotonic()
        for thread in threads:
            thread.join(timeout=120)
        assert status == 200
        assert answered - asked < 5
        assert len(answers) == 9
        assert {answers[f"bomb-{n}.png"][0] for n in range(6)} == {422}
        made = [answers[f"large-{n}.png"] for n in range(3)]
        assert {status for status, _ in made} <= {200, 503}  # made in turn, or "busy, retry"
        assert any(status == 200 for status, _ in made)
        assert answered < max(done for _, done in made)  # while images were still being decoded
    finally:
        try:
            peak = memory.stop()
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert 50 * 1024 * 1024 < peak < decoder_memory(40_000_000)


def wait_until_listening(browser: Browser, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            browser.request("GET", "/login", timeout=5)
            return
        except OSError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
