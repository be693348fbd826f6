"""Metadata with mat2, in the sandbox: a real JPEG carrying EXIF GPS, device and author is shown
as such, and its clean copy is free of them; mat2 failing is an error, never a pass."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from media_helpers import GPS_TAGS, exif, gps_jpeg
from workstation_helpers import (
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from crypto.keys import ServerSigningKey
from crypto.manifest import sha256_hex
from journalist_interface import audit, metadata, sandbox
from journalist_interface.vault import Attachment, Vault

SERVER = ServerSigningKey.generate()


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return gps_jpeg(tmp_path_factory.mktemp("media"))


@pytest.fixture
def pickup(analyst: Analyst, photo: bytes) -> Pickup:
    bundle = Pickup([analyst.key])
    bundle.report(
        bundle.source(),
        files=[
            (photo, "IMG_0042.jpeg", "image/jpeg"),
            (b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50, "broken.jpg", "image/jpeg"),
            (b"\x7fELF\x02\x01\x01" + bytes(100), "tool.bin", "application/octet-stream"),
        ],
    )
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def vault(vault_path: Path) -> Iterator[Vault]:
    with open_vault(vault_path) as opened:
        yield opened


def named(vault: Vault, pickup: Pickup, name: str) -> Attachment:
    (found,) = [a for a in vault.attachments(str(pickup.reports[0]["id"])) if a.name == name]
    return found


def test_mat2_shows_gps_device_and_author(vault: Vault, pickup: Pickup) -> None:
    findings = metadata.inspect(vault, named(vault, pickup, "IMG_0042.jpeg"))
    assert findings.kind.mime == "image/jpeg"
    grouped = {c: {f.name: f.value for f in fields} for c, fields in findings.by_category().items()}
    assert "GPSLatitude" in grouped["location"]
    assert "48 deg 51'" in grouped["location"]["GPSLatitude"]
    assert grouped["device"]["Make"] == "Acme"
    assert grouped["device"]["Model"] == "Phone 9"
    assert grouped["author"]["Artist"] == "Jane Reporter"
    assert findings.sensitive == ("location", "device", "author")
    assert not findings.clean


def test_the_clean_copy_is_free_of_them(vault: Vault, pickup: Pickup, tmp_path: Path) -> None:
    original = named(vault, pickup, "IMG_0042.jpeg")
    copy = metadata.clean_copy(vault, original)
    assert copy.name == "IMG_0042.cleaned.jpg"
    assert copy.data.startswith(b"\xff\xd8\xff")
    before = exif(tmp_path, b"".join(vault.attachment_chunks(original)))
    after = exif(tmp_path, copy.data)
    assert all(tag in before for tag in ("GPSLatitude", "Make", "Model", "Artist"))
    leaked = [tag for tag in after if tag.startswith("GPS") or tag in GPS_TAGS]
    assert leaked == []
    assert b"Acme" not in copy.data and b"Jane Reporter" not in copy.data
    assert after["ImageWidth"] == 320  # still the picture


def test_mat2_failing_is_an_error(vault: Vault, pickup: Pickup) -> None:
    broken = named(vault, pickup, "broken.jpg")
    with pytest.raises(metadata.MetadataError):
        metadata.inspect(vault, broken)
    with pytest.raises(metadata.MetadataError):
        metadata.clean_copy(vault, broken)
    with pytest.raises(metadata.Unsupported):
        metadata.clean_copy(vault, named(vault, pickup, "tool.bin"))


def test_metadata_left_in_the_copy_is_an_error(
    vault: Vault, pickup: Pickup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mat2 says it cleaned, but reading the copy back still finds something: no copy."""

    def lying_mat2(command: list[str], workdir: Path, **_kwargs: object) -> sandbox.Finished:
        (workdir / "file.cleaned.jpg").write_bytes(b"\xff\xd8\xff")
        answer = {"ok": True, "mime": "image/jpeg", "output": "/work/file.cleaned.jpg"}
        answer["left"] = {"GPSLatitude": "48"}
        return sandbox.Finished(0, json.dumps(answer).encode(), b"")

    monkeypatch.setattr(sandbox, "run", lying_mat2)
    with pytest.raises(metadata.MetadataError, match="could not remove all"):
        metadata.clean_copy(vault, named(vault, pickup, "IMG_0042.jpeg"))

    def crashing(command: list[str], workdir: Path, **_kwargs: object) -> sandbox.Finished:
        return sandbox.Finished(139, b"", b"Segmentation fault")

    monkeypatch.setattr(sandbox, "run", crashing)
    with pytest.raises(metadata.MetadataError):
        metadata.inspect(vault, named(vault, pickup, "IMG_0042.jpeg"))


def test_categories() -> None:
    assert metadata.category_of("GPSPosition") == "location"
    assert metadata.category_of("Make") == "device"
    assert metadata.category_of("SerialNumber") == "device"
    assert metadata.category_of("meta:initial-creator") == "author"
    assert metadata.category_of("ModifyDate") == "time"
    assert metadata.category_of("Software") == "software"
    assert metadata.category_of("ExifByteOrder") == "other"


# --- in the app --------------------------------------------------------------------------------


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def test_the_file_page_shows_metadata_and_gives_a_clean_copy(
    client: FlaskClient, app: Flask, pickup: Pickup, vault_path: Path, tmp_path: Path
) -> None:
    report = str(pickup.reports[0]["id"])
    with_ids = {
        item["id"] for item in pickup.items if item["report"] == report and item["kind"] == "file"
    }
    pages = [f"/reports/{report}/files/{item}/details" for item in sorted(with_ids)]
    bodies = {page: client.get(page).get_data(as_text=True) for page in pages}
    (photo_page,) = [page for page, body in bodies.items() if "IMG_0042.jpeg" in body]
    body = bodies[photo_page]
    assert "GPSLatitude" in body and "Jane Reporter" in body and "Acme" in body
    assert "may identify a person or a place" in body
    base = photo_page.removesuffix("/details")
    assert f'href="{base}/clean"' in body

    clean = client.get(base + "/clean")
    assert clean.status_code == 200
    assert clean.headers["Content-Type"] == "application/octet-stream"
    assert clean.headers["Content-Disposition"].startswith(
        'attachment; filename="IMG_0042.cleaned.jpg"'
    )
    tags = exif(tmp_path, clean.get_data())
    assert not [tag for tag in tags if tag.startswith("GPS") or tag in ("Make", "Artist")]

    (broken_page,) = [page for page, body in bodies.items() if "broken.jpg" in body]
    assert "mat2 could not read this file" in bodies[broken_page]
    assert "/clean" not in re.sub(r"<p>.*?</p>", "", bodies[broken_page].split("Download")[-1])
    refused = client.get(broken_page.removesuffix("/details") + "/clean")
    assert refused.status_code == 303 and "done=unclean" in refused.headers["Location"]
    assert "No clean copy could be made" in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    (binary_page,) = [page for page, body in bodies.items() if "tool.bin" in body]
    assert "mat2 cannot read this kind of file" in bodies[binary_page]

    app.extensions["workstation"].sessions.close()
    with open_vault(vault_path) as vault:
        cleaned = audit.entries(vault, events=["clean_copy"])
        assert len(cleaned) == 1
        assert cleaned[0].fields["sha256"] == sha256_hex(clean.get_data())
        assert len(audit.entries(vault, report=report, events=["view_file"])) == 4  # 3 + 1 again


# --- video: mat2's technical leftovers -----------------------------------------------------------


def mp4(folder: Path, name: str, *metadata_args: str) -> bytes:
    """A one-second H.264/AAC MP4 made by ffmpeg, with ``-metadata`` options when given."""
    path = folder / name
    sources = ["-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=5"]
    sources += ["-f", "lavfi", "-i", "sine=duration=1"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *sources, *codecs]
    subprocess.run([*command, *metadata_args, str(path)], check=True)
    return path.read_bytes()


PHONE = (
    "-metadata", "location=+48.8566+002.3522/", "-metadata", "make=Acme",
    "-metadata", "model=Phone 9", "-metadata", "creation_time=2025-03-01T10:00:00Z",
    "-metadata", "author=Jane Reporter", "-movflags", "use_metadata_tags",
)  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("videos")
    return {"plain.mp4": mp4(folder, "plain.mp4"), "phone.mp4": mp4(folder, "phone.mp4", *PHONE)}


def test_an_ordinary_mp4_gets_a_clean_copy(
    tmp_path: Path, analyst: Analyst, videos: dict[str, bytes]
) -> None:
    """mat2 leaves an MP4's technical fields (HandlerType, CompressorID...): they do not keep a
    copy from being clean; the GPS position, make, model, author and dates are gone from it."""
    bundle = Pickup([analyst.key])
    bundle.report(
        bundle.source(), files=[(data, name, "video/mp4") for name, data in videos.items()]
    )
    path = imported_vault(tmp_path, analyst, SERVER, bundle)
    with open_vault(path) as vault:
        phone = named_in(vault, bundle, "phone.mp4")
        found = {f.name: f.value for f in metadata.inspect(vault, phone).fields}
        assert "GPSLatitude" in found and found["Make"] == "Acme" and "CreateDate" in found
        for name in videos:
            copy = metadata.clean_copy(vault, named_in(vault, bundle, name))
            assert copy.mime == "video/mp4" and copy.name.endswith(".cleaned.mp4")
            tags = exif(tmp_path, copy.data, ".mp4")
            assert not [t for t in tags if t.startswith("GPS") or t in IDENTIFYING], tags
            dates = [str(v) for t, v in tags.items() if t.endswith("Date") and "File" not in t]
            assert dates and set(dates) == {"0000:00:00 00:00:00"}  # mat2 zeroes them
            assert "HandlerType" in tags or "CompressorID" in tags  # what mat2 leaves


IDENTIFYING = ("Make", "Model", "Author", "Artist", "Location", "Encoder", "CompressorName")


def named_in(vault: Vault, bundle: Pickup, name: str) -> Attachment:
    (found,) = [a for a in vault.attachments(str(bundle.reports[0]["id"])) if a.name == name]
    return found


def test_identifying_leftovers_are_still_refused() -> None:
    technical = {
        "HandlerType": "Metadata",
        "CompressorID": "avc1",
        "CompatibleBrands": ["isom", "iso2", "avc1", "mp41"],
        "MajorBrand": "MP4 Base Media v1 [IS0 14496-12:2003]",
        "PixelAspectRatio": "1:1",
        "TrackID": 1,
    }
    assert metadata.identifying_leftovers(technical, "video/mp4") == []
    for name, value in [
        ("GPSLatitude", "48 deg 51' 23.76\" N"),
        ("Make", "Acme"),
        ("Model", "Phone 9"),
        ("OwnerName", "Jane"),
        ("Author", "Jane Reporter"),
        ("CreateDate", "2025:03:01 10:00:00"),
        ("CompressorName", "Lavc59.37.100 libx264"),
        ("Encoder", "Lavf59.27.100"),
    ]:
        assert metadata.identifying_leftovers({**technical, name: value}, "video/mp4") == [name]
    # a technical field's name with a value that is no technical value, or in another type
    assert metadata.identifying_leftovers({"HandlerDescription": "x" * 65}, "video/mp4") != []
    assert metadata.identifying_leftovers({"HandlerType": "Metadata"}, "image/jpeg") != []
    assert metadata.identifying_leftovers({"a.xml": {"HandlerType": "x"}}, "video/mp4") != []


def test_no_clean_copy_is_a_page_not_a_download(client: FlaskClient, pickup: Pickup) -> None:
    """The clean copy's link has no ``download`` attribute: when mat2 cannot clean the file, the
    browser shows the error page instead of saving it as ``details.html``."""
    report = str(pickup.reports[0]["id"])
    pages = [
        f"/reports/{report}/files/{item['id']}/details"
        for item in pickup.items
        if item["report"] == report and item["kind"] == "file"
    ]
    links = [
        link
        for page in pages
        for link in re.findall(r"<a [^>]*/clean\"[^>]*>", client.get(page).get_data(as_text=True))
    ]
    assert links and not [link for link in links if "download" in link]
