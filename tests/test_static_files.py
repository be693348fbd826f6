"""Static files: versioned URLs, cached for a year, gzip when asked; pages neither.

Through the real app (``create_app`` over a data folder made like ``blagh init``) and Flask's
client.  What a real browser downloads on a first and a repeat visit is measured in
tests/test_page_weight.py.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_helpers import Site, make_site

from source_interface.security import HEADERS, STATIC_CACHE_CONTROL
from source_interface.static_files import STATIC, StaticFiles

GZIP = {"Accept-Encoding": "gzip, deflate, br"}
CACHED = "public, max-age=31536000, immutable"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = make_site(tmp_path)
    yield site
    site.close()


def static_urls(body: str) -> list[str]:
    """Every static file a page names: the style sheet, the script, the modules it preloads."""
    return sorted(set(re.findall(r'(/static/[^"&]+?)(?:"|&#34;|&quot;)', body)))


def test_pages_name_static_files_under_the_folders_version(site: Site) -> None:
    version = site.app.extensions["blagh_static"].version
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    body = site.client().get("/report").get_data(as_text=True)
    urls = static_urls(body)
    expected = [
        "js/blagh.mjs",
        "js/metadata.mjs",
        "js/sealing.mjs",
        "js/uploads.mjs",
        "style.css",
        "vendor/libsodium-sumo.mjs",
        "vendor/libsodium-wrappers.mjs",
    ]
    assert urls == [f"/static/{version}/{name}" for name in expected]


def test_the_version_follows_the_files(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.mjs").write_text("export const a = 1;\n")
    (tmp_path / ".stamp").write_text("")
    first = StaticFiles.load(tmp_path)
    assert list(first.files) == ["js/a.mjs"], "dot files are not served"
    assert StaticFiles.load(tmp_path).version == first.version
    (tmp_path / "js" / "a.mjs").write_text("export const a = 2;\n")
    assert StaticFiles.load(tmp_path).version != first.version


@pytest.mark.parametrize("name", ["style.css", "js/blagh.mjs", "vendor/libsodium-sumo.mjs"])
def test_static_files_are_cached_and_gzipped_when_the_browser_takes_it(
    site: Site, name: str
) -> None:
    url = f"/static/{site.app.extensions['blagh_static'].version}/{name}"
    plain = site.client().get(url)
    packed = site.client().get(url, headers=GZIP)
    on_disk = (STATIC / name).read_bytes()
    for response in (plain, packed):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == CACHED == STATIC_CACHE_CONTROL
        assert response.headers["Vary"] == "Accept-Encoding"
        for header, value in HEADERS.items():
            if header != "Cache-Control":
                assert response.headers[header] == value, header
    assert "Content-Encoding" not in plain.headers
    assert plain.data == on_disk
    assert packed.headers["Content-Encoding"] == "gzip"
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(on_disk) // 2
    assert gzip.decompress(packed.data) == on_disk
    javascript = name.endswith(".mjs")
    assert packed.content_type.startswith("text/javascript" if javascript else "text/css")


def test_gzip_refused_by_its_quality_is_not_sent(site: Site) -> None:
    url = f"/static/{site.app.extensions['blagh_static'].version}/style.css"
    response = site.client().get(url, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in response.headers
    assert response.data == (STATIC / "style.css").read_bytes()


@pytest.mark.parametrize("path", ["/", "/report", "/login", "/nowhere"])
def test_pages_are_never_cached_nor_compressed(site: Site, path: str) -> None:
    """BREACH: a page holds the form token (and, later, a codename) beside text a visitor can
    choose; compressed, its size would leak them.  And a cached page tells of the visit."""
    response = site.client().get(path, headers=GZIP)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Encoding" not in response.headers
    assert response.get_data(as_text=True).lstrip().lower().startswith("<!doctype html>")


def test_unversioned_and_outdated_urls_redirect_uncached(site: Site) -> None:
    version = site.app.extensions["blagh_static"].version
    current = f"/static/{version}/js/sealing.mjs"
    for old in ("/static/js/sealing.mjs", "/static/0123456789abcdef/js/sealing.mjs"):
        response = site.client().get(old, headers=GZIP)
        assert response.status_code == 302, old
        assert response.headers["Location"] == current
        assert response.headers["Cache-Control"] == "no-store"
        assert "Content-Encoding" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.css",
        "/static/{version}/nothing.css",
        "/static/0123456789abcdef/nothing.css",
        "/static/{version}/vendor/.copied",
        "/static/{version}/../app.py",
        "/static/{version}/%2e%2e/app.py",
    ],
)
def test_what_is_not_a_static_file_is_not_found_nor_cached(site: Site, path: str) -> None:
    version = site.app.extensions["blagh_static"].version
    response = site.client().get(path.format(version=version), headers=GZIP)
    assert response.status_code == 404
    assert response.headers["Cache-Control"] == "no-store"
