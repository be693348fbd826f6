"""Evidence export: a signed zip verified offline; one byte changed and verification fails."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from media_helpers import exif, gps_jpeg
from workstation_helpers import PASSPHRASE, Analyst, Pickup, make_analyst, make_vault, open_vault

from blagh.cli import cli
from crypto.keys import ServerSigningKey, generate_analyst_key
from crypto.manifest import sha256_hex, sign_manifest, verify_manifest
from journalist_interface import audit
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from journalist_interface.evidence import (
    EvidenceError,
    evidence_name,
    export_case,
    safe_name,
    verify,
)
from journalist_interface.importer import import_bundle
from journalist_interface.safeview import UNKNOWN, FileKind
from journalist_interface.vault import Vault

SERVER = ServerSigningKey.generate()
HOSTILE = b"<html><script>alert(document.cookie)</script></html>"


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return gps_jpeg(tmp_path_factory.mktemp("media"))


@pytest.fixture
def pickup(analyst: Analyst, photo: bytes) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    report = bundle.report(
        source,
        description="They sent <script>alert(1)</script> & threats",
        identity={"name": "Samira", "phone": "+213 555", "email": "s@example.org"},
        files=[(photo, "../../IMG 0042.jpg", "image/jpeg"), (HOSTILE, "x.html", "text/html")],
    )
    bundle.message(report, source, "Here is more.")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path) as vault:
        result = import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
        audit.record_import(vault, result.bundle, result.new_items, result.new_reports)
    return path


@pytest.fixture
def vault(vault_path: Path) -> Iterator[Vault]:
    with open_vault(vault_path) as opened:
        yield opened


@pytest.fixture
def exported(vault: Vault, pickup: Pickup, tmp_path: Path) -> Path:
    report = str(pickup.reports[0]["id"])
    audit.log(vault, "view", report=report)
    out = tmp_path / "evidence.zip"
    made = export_case(vault, report, out, analyst="alice")
    assert made.files == 2
    return out


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(path: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the zip with members replaced (bytes), removed (None) or added."""
    original = members(path)
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in {**original, **change}.items():
            if data is not None:
                archive.writestr(name, data)
    return out


def test_the_export_holds_everything_and_verifies(
    exported: Path, vault: Vault, pickup: Pickup, photo: bytes, analyst: Analyst, tmp_path: Path
) -> None:
    report = str(pickup.reports[0]["id"])
    checked = verify(exported)
    assert checked.signer == analyst.key.public()
    manifest = checked.manifest
    assert manifest["format"] == "blagh-evidence"
    assert manifest["report"] == report
    assert manifest["exported_by"] == "alice"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["exported_at"])
    content = members(exported)
    names = set(content)
    assert {"README.txt", "report.html", "report.json", "custody.jsonl"} <= names
    assert "files/01-IMG_0042.jpg" in names  # no folder climbing out of the zip
    assert content["files/01-IMG_0042.jpg"] == photo
    assert content["files/02-x.html.bin"] == HOSTILE
    envelopes = sorted(name for name in names if name.startswith("envelopes/"))
    assert len(envelopes) == 2
    files = vault.attachments(report)
    assert content[envelopes[0]] == vault.blobs.open(files[0].blob).read()
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == names - {"manifest.signed"}
    for name, entry in listed.items():
        assert entry["sha256"] == sha256_hex(content[name]), name
    assert listed["files/01-IMG_0042.jpg"]["detected_type"] == "image/jpeg"

    cleaned = [name for name in names if name.startswith("cleaned/01-")]
    assert cleaned == ["cleaned/01-IMG_0042.cleaned.jpg"]
    tags = exif(tmp_path, content[cleaned[0]])
    assert not [tag for tag in tags if tag.startswith("GPS") or tag in ("Make", "Artist")]

    page = content["report.html"].decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page
    assert "Samira" in page and "Here is more." in page
    data = json.loads(content["report.json"])
    assert data["files"][0]["sha256"] == sha256_hex(photo)
    assert data["conversation"][0]["text"] == "Here is more."

    custody = [json.loads(line) for line in content["custody.jsonl"].decode().splitlines()]
    assert [entry["event"] for entry in custody] == ["import", "view"]
    assert custody[0]["fields"]["reports"] == [report]
    exports = audit.entries(vault, report=report, events=["export"])
    assert len(exports) == 1
    assert exports[0].fields["sha256"] == sha256_hex(exported.read_bytes())
    assert exports[0].fields["export"] == manifest["export"]
    assert audit.verify(vault).ok


def test_one_byte_changed_fails_verification(exported: Path, photo: bytes) -> None:
    data = bytearray(exported.read_bytes())
    at = bytes(data).find(photo) + len(photo) // 2
    data[at] ^= 0x01
    exported.write_bytes(bytes(data))
    with pytest.raises(EvidenceError, match="IMG_0042"):
        verify(exported)


def test_a_changed_file_fails_verification(exported: Path, tmp_path: Path) -> None:
    changed = rewrite(exported, tmp_path / "changed.zip", {"files/02-x.html.bin": HOSTILE + b" "})
    with pytest.raises(EvidenceError, match="does not match its SHA-256"):
        verify(changed)
    report = members(exported)["report.html"].replace(b"Samira", b"Samirb")
    changed = rewrite(exported, tmp_path / "report.zip", {"report.html": report})
    with pytest.raises(EvidenceError, match=r"report\.html does not match"):
        verify(changed)


def test_added_removed_or_escaping_members_fail(exported: Path, tmp_path: Path) -> None:
    added = rewrite(exported, tmp_path / "added.zip", {"files/03-extra.txt": b"x"})
    with pytest.raises(EvidenceError, match="does not list"):
        verify(added)
    removed = rewrite(exported, tmp_path / "removed.zip", {"custody.jsonl": None})
    with pytest.raises(EvidenceError, match="missing"):
        verify(removed)
    escaping = rewrite(exported, tmp_path / "escaping.zip", {"../evil.sh": b"x"})
    with pytest.raises(EvidenceError, match="unsafe name"):
        verify(escaping)


def test_a_changed_manifest_fails_verification(exported: Path, tmp_path: Path) -> None:
    signed = members(exported)["manifest.signed"].replace(b'"alice"', b'"bobby"')
    changed = rewrite(exported, tmp_path / "manifest.zip", {"manifest.signed": signed})
    with pytest.raises(EvidenceError, match="signature is not valid"):
        verify(changed)
    with pytest.raises(EvidenceError, match="not a readable zip"):
        verify(Path(__file__))


def test_verify_evidence_command(exported: Path, analyst: Analyst) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["verify-evidence", str(exported)])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    assert analyst.key.public().fingerprint() in result.output
    line = analyst.key.public().to_line()
    result = runner.invoke(cli, ["verify-evidence", str(exported), "--analyst-key", line])
    assert result.exit_code == 0, result.output
    other = generate_analyst_key().public().to_line()
    result = runner.invoke(cli, ["verify-evidence", str(exported), "--analyst-key", other])
    assert result.exit_code == 1
    assert "blagh: error: the archive is signed by another key" in result.output
    data = bytearray(exported.read_bytes())
    data[len(data) // 3] ^= 0xFF
    exported.write_bytes(bytes(data))
    result = runner.invoke(cli, ["verify-evidence", str(exported)])
    assert result.exit_code == 1
    assert result.output.startswith("blagh: error:")


def test_export_command(vault_path: Path, pickup: Pickup, tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    out = tmp_path / "case.zip"
    args = ["workstation", "export", "--vault", str(vault_path), "--passphrase-file"]
    args += [str(passphrase), "--report", str(pickup.reports[0]["id"]), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--no-clean"])
    assert result.exit_code == 0, result.output
    assert verify(out).manifest["exported_by"] == "analyst"
    assert not [name for name in members(out) if name.startswith("cleaned/")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "already exists" in result.output


def test_export_from_the_app(vault_path: Path, pickup: Pickup) -> None:
    app = create_app(WorkstationConfig(vault=vault_path))
    try:
        client: FlaskClient = app.test_client()
        assert client.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
        report = str(pickup.reports[0]["id"])
        page = client.get(f"/reports/{report}/files/{pickup.items[1]['id']}/details")
        token = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
        assert token is not None
        assert client.post(f"/reports/{report}/export").status_code == 400  # no token
        response = client.post(f"/reports/{report}/export", data={"csrf": token.group(1)})
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/zip"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in response.headers["Content-Security-Policy"]
        body = response.get_data()
        response.close()
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert "manifest.signed" in archive.namelist()
        assert not list(Path("/dev/shm").glob("blagh-export-*"))
        missing = client.post(f"/reports/{'0' * 32}/export", data={"csrf": token.group(1)})
        assert missing.status_code == 404
    finally:
        app.extensions["workstation"].sessions.close()
    with open_vault(vault_path) as vault:
        assert len(audit.entries(vault, events=["export"])) == 1


def test_safe_names() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\x\\photo (1).jpg") == "photo_1_.jpg"
    assert safe_name("...") == "attachment"
    assert safe_name("صورة.jpg") == "jpg"
    long = safe_name("a" * 300 + ".jpeg")
    assert len(long) <= 80 and long.endswith(".jpeg")


def test_a_path_listed_twice_fails_verification(
    exported: Path, analyst: Analyst, tmp_path: Path
) -> None:
    """Signed by the right key, but listing one member twice (with two hashes): refused."""
    signed = members(exported)["manifest.signed"]
    manifest = verify_manifest(signed, [analyst.key.public().verify]).manifest
    twice = dict(manifest["files"][1], sha256="0" * 64, size=1)
    manifest["files"].append(twice)
    resigned = sign_manifest(manifest, analyst.key.sign, analyst.key.public().verify)
    changed = rewrite(exported, tmp_path / "twice.zip", {"manifest.signed": resigned})
    with pytest.raises(EvidenceError, match="lists a file twice"):
        verify(changed)


def test_active_files_lose_their_extension(analyst: Analyst, photo: bytes, tmp_path: Path) -> None:
    """HTML and SVG run their scripts when double-clicked: in the zip they end in .bin,
    originals and cleaned copies alike; the reporter's name stays in the manifest."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    bundle = Pickup([analyst.key])
    report = bundle.report(
        bundle.source(),
        files=[
            (HOSTILE, "x.html", "text/html"),
            (svg, "y.svg", "image/svg+xml"),
            (HOSTILE, "z.jpg", "image/jpeg"),  # claims to be a picture, is HTML
            (photo, "photo.JPEG", "image/jpeg"),
            (b"just words\n", "notes.txt", "text/plain"),
        ],
    )
    path = make_vault(tmp_path, analyst, SERVER)
    with open_vault(path) as vault:
        import_bundle(vault, bundle.write(tmp_path / "pickup", SERVER))
        out = tmp_path / "case.zip"
        export_case(vault, report, out)
    content = members(out)
    originals = sorted(name for name in content if name.startswith("files/"))
    assert originals == [
        "files/01-x.html.bin",
        "files/02-y.svg.bin",
        "files/03-z.jpg.bin",
        "files/04-photo.JPEG",
        "files/05-notes.txt",
    ]
    assert content["files/01-x.html.bin"] == HOSTILE
    active = {".html", ".htm", ".xhtml", ".svg", ".svgz", ".xml"}
    reporters = [name for name in content if name.startswith(("files/", "cleaned/"))]
    assert any(name.startswith("cleaned/") for name in reporters)
    assert not [name for name in reporters if PurePosixPath(name).suffix.lower() in active]
    listed = {entry["path"]: entry for entry in verify(out).manifest["files"]}
    assert listed["files/01-x.html.bin"]["name"] == "x.html"
    assert listed["files/02-y.svg.bin"]["name"] == "y.svg"


@pytest.mark.parametrize(
    ("name", "kind", "stored"),
    [
        ("x.html", FileKind("text/html", ".html", "text"), "x.html.bin"),
        ("y.SVG", FileKind("image/svg+xml", ".svg", "document"), "y.SVG.bin"),
        ("a.pdf", FileKind("application/pdf", ".pdf", "document"), "a.pdf.bin"),
        ("run.exe", UNKNOWN, "run.exe.bin"),
        ("x.html.", FileKind("text/html", ".html", "text"), "x.html.bin"),
        ("IMG_1.jpeg", FileKind("image/jpeg", ".jpg", "image"), "IMG_1.jpeg"),
        ("صورة.jpg", FileKind("image/jpeg", ".jpg", "image"), "jpg.jpg"),
        ("photo.html", FileKind("image/png", ".png", "image"), "photo.html.png"),
    ],
)
def test_evidence_names(name: str, kind: FileKind, stored: str) -> None:
    assert evidence_name(name, kind) == stored
