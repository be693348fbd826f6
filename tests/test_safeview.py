"""Safe viewing: files are what their bytes say; images blurred and grey until revealed, one at a
time; nothing else rendered; every parser in a sandbox with no network and one file in sight."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from media_helpers import gps_jpeg, picture, png_colour_type, png_size
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from journalist_interface import audit, sandbox
from journalist_interface.safeview import sniff

SERVER = ServerSigningKey.generate()
HOSTILE = b"<html><script>alert(document.cookie)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "jpeg": gps_jpeg(folder),
        "png": picture(folder / "big.png", "1280x960", "smptebars"),
    }


@pytest.fixture
def pickup(analyst: Analyst, media: dict[str, bytes]) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    bundle.report(
        source,
        files=[
            (media["jpeg"], "photo.jpg", "image/jpeg"),
            (HOSTILE, "x.html", "text/html"),
            (media["png"], "screenshot.html", "text/html"),  # an image, whatever it claims
            (b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50, "broken.jpg", "image/jpeg"),
            (SVG, "x.svg", "image/svg+xml"),
        ],
    )
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def files_of(client: FlaskClient, app: Flask, pickup: Pickup) -> dict[str, str]:
    """File name -> the base URL of its pages."""
    report = str(pickup.reports[0]["id"])
    vault = app.extensions["workstation"].sessions.current(
        client.get_cookie("blagh_analyst").value  # type: ignore[union-attr]
    )[1]
    return {
        found.name: f"/reports/{report}/files/{found.id}" for found in vault.attachments(report)
    }


def csrf(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found is not None
    return found.group(1)


# --- what a file is ----------------------------------------------------------------------------


def test_the_kind_comes_from_the_bytes_not_the_name(media: dict[str, bytes]) -> None:
    assert sniff(media["jpeg"], "x.html").mime == "image/jpeg"
    assert sniff(media["png"], "notes.txt").previewable
    assert sniff(HOSTILE, "photo.jpg").mime == "application/octet-stream"
    assert not sniff(HOSTILE, "x.html").previewable
    assert sniff(HOSTILE, "x.html").family == "text"
    assert sniff(b"%PDF-1.7\n", "a.jpg").family == "document"
    assert sniff(b"\0\0\0\x18ftypmp42", "a.png").family == "video"
    assert sniff(b"PK\x03\x04rest", "report.docx").suffix == ".docx"
    assert sniff(b"PK\x03\x04rest", "report.exe").mime == "application/zip"
    assert sniff(b"<svg/>", "x.svg").family == "document"
    assert not sniff(b"<svg/>", "x.svg").previewable


# --- the sandbox -------------------------------------------------------------------------------


def test_the_sandbox_sees_one_file_and_no_network(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"key")
    with sandbox.workspace([b"hello"], ".txt") as path:
        assert path.parent.stat().st_mode & 0o777 == 0o700
        script = (
            "id -u; ls -A /work; cat /work/file.txt; echo; ls /root 2>&1 | head -1; "
            f"cat {secret} 2>&1; ls /etc; tail -n +3 /proc/net/dev | cut -d: -f1; "
            "echo changed > /work/file.txt && echo ok"
        )
        done = sandbox.run(["/bin/sh", "-c", script], path.parent)
    out = done.stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "65534"  # nobody
    assert lines[1] == "file.txt"  # the one file, nothing else
    assert lines[2] == "hello"
    assert "No such file" in lines[3]  # no home folder
    assert "No such file" in lines[4]  # nothing else of ours
    assert "ld.so.cache" in out and "passwd" not in out and "hosts" not in out
    interfaces = [line.strip() for line in lines[-2:-1]]
    assert interfaces == ["lo"]  # a fresh network namespace: loopback only, and down
    assert lines[-1] == "ok"
    assert not path.parent.exists()  # wiped afterwards


def test_no_sandbox_no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_available", False)
    monkeypatch.setattr(sandbox.shutil, "which", lambda *_args, **_kwargs: None)
    with sandbox.workspace([b"x"], ".txt") as path, pytest.raises(sandbox.SandboxUnavailable):
        sandbox.run(["/usr/bin/true"], path.parent)


def test_a_sandbox_that_cannot_start_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_available", False)
    real = sandbox.bwrap_arguments
    monkeypatch.setattr(
        sandbox, "bwrap_arguments", lambda folder: [*real(folder)[:1], "--no-such-option"]
    )
    with pytest.raises(sandbox.SandboxUnavailable, match="cannot create its sandbox"):
        sandbox.check_available()


# --- previews ----------------------------------------------------------------------------------


def test_images_are_blurred_and_grey_by_default(
    client: FlaskClient, app: Flask, pickup: Pickup
) -> None:
    urls = files_of(client, app, pickup)
    page = client.get(urls["photo.jpg"] + "/details")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert f'src="{urls["photo.jpg"]}/preview"' in body
    assert "mode=revealed" not in body
    preview = client.get(urls["photo.jpg"] + "/preview")
    assert preview.status_code == 200
    assert preview.headers["Content-Type"] == "image/png"
    assert preview.headers["Content-Disposition"] == "inline"
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
    assert preview.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    png = preview.get_data()
    assert png_colour_type(png) == 0  # greyscale
    assert b"eXIf" not in png and b"Acme" not in png  # a fresh image: no EXIF carried over
    big = client.get(urls["screenshot.html"] + "/preview").get_data()
    assert png_colour_type(big) == 0
    assert max(png_size(big)) == 640  # scaled down to a preview


def test_an_image_is_revealed_on_request_one_at_a_time(
    client: FlaskClient, app: Flask, pickup: Pickup, vault_path: Path
) -> None:
    urls = files_of(client, app, pickup)
    photo, shot = urls["photo.jpg"], urls["screenshot.html"]
    assert client.get(photo + "/preview?mode=revealed").status_code == 403
    token = csrf(client, photo + "/details")
    assert client.post(photo + "/reveal").status_code == 400  # no token: refused
    response = client.post(photo + "/reveal", data={"csrf": token})
    assert response.status_code == 303
    body = client.get(photo + "/details").get_data(as_text=True)
    assert f'src="{photo}/preview?mode=revealed"' in body
    revealed = client.get(photo + "/preview?mode=revealed")
    assert revealed.status_code == 200
    assert png_colour_type(revealed.get_data()) == 2  # in colour
    assert png_size(revealed.get_data()) == (320, 240)
    assert revealed.get_data() != client.get(photo + "/preview").get_data()

    client.post(shot + "/reveal", data={"csrf": token})
    assert client.get(shot + "/preview?mode=revealed").status_code == 200
    assert client.get(photo + "/preview?mode=revealed").status_code == 403  # blurred again
    client.post(shot + "/blur", data={"csrf": token})
    assert client.get(shot + "/preview?mode=revealed").status_code == 403

    other = app.test_client()  # another session has revealed nothing
    assert other.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
    assert other.get(photo + "/preview?mode=revealed").status_code == 403

    app.extensions["workstation"].sessions.close()
    with open_vault(vault_path) as vault:
        reveals = [e.fields for e in audit.entries(vault, events=["view_file"])]
        assert [f["mode"] for f in reveals].count("revealed") == 2
        assert audit.verify(vault).ok


def test_html_and_svg_are_never_served_as_such(
    client: FlaskClient, app: Flask, pickup: Pickup
) -> None:
    urls = files_of(client, app, pickup)
    for name in ("x.html", "x.svg"):
        base = urls[name]
        page = client.get(base + "/details").get_data(as_text=True)
        assert "<script>" not in page
        assert "/preview" not in page
        assert client.get(base + "/preview").status_code == 404
        token = csrf(client, base + "/details")
        assert client.post(base + "/reveal", data={"csrf": token}).status_code == 404
        download = client.get(base)
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "application/octet-stream"
        assert download.headers["Content-Disposition"].startswith("attachment;")
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in download.headers["Content-Security-Policy"]
        for path in (base, base + "/details", base + "/preview", base + "/clean"):
            response = client.get(path)
            content_type = response.headers.get("Content-Type", "")
            assert "svg" not in content_type
            if response.status_code == 200 and path != base + "/details":
                assert not content_type.startswith("text/html"), path


def test_a_broken_image_is_not_shown_and_breaks_nothing(
    client: FlaskClient, app: Flask, pickup: Pickup
) -> None:
    base = files_of(client, app, pickup)["broken.jpg"]
    assert client.get(base + "/preview").status_code == 404
    page = client.get(base + "/details")
    assert page.status_code == 200
    assert "mat2 could not read this file" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("language", "direction", "words"),
    [
        ("en", "ltr", ["Reveal the image", "Metadata", "GPSLatitude"]),
        ("fr", "ltr", ["Révéler l’image", "Métadonnées", "Position"]),
        ("ar", "rtl", ["كشف الصورة", "البيانات الوصفية", "الموقع"]),
    ],
)
def test_the_file_page_in_three_languages(
    client: FlaskClient,
    app: Flask,
    pickup: Pickup,
    language: str,
    direction: str,
    words: list[str],
) -> None:
    base = files_of(client, app, pickup)["photo.jpg"]
    page = client.get(f"{base}/details?lang={language}").get_data(as_text=True)
    assert f'lang="{language}" dir="{direction}"' in page
    for word in words:
        assert word.replace("'", "&#39;") in page or word in page, word
