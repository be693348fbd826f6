"""Known-content matching: fingerprints in the sandbox, hash lists, matches, hidden previews.

Every image is made here with ffmpeg (testsrc, mandelbrot, a flat colour), re-encoded, resized
and cropped a little; every list is written here.  The sandbox is the real one (bubblewrap)."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from media_helpers import picture
from workstation_helpers import (
    PASSPHRASE,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    open_vault,
    workstation_app,
)

from blagh.cli import cli
from crypto.keys import ServerSigningKey
from journalist_interface import audit, cases, connections, fingerprints, matching, pdq
from journalist_interface.importer import import_bundle
from journalist_interface.vault import Vault

SERVER = ServerSigningKey.generate()


def ffmpeg(*args: str | Path) -> None:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *[str(a) for a in args]]
    subprocess.run(command, check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The original, its altered copies, unrelated images, a flat one and a video of it."""
    folder = tmp_path_factory.mktemp("media")
    out: dict[str, bytes] = {}
    out["original"] = picture(folder / "original.png", "640x480", "testsrc")
    source = folder / "original.png"
    ffmpeg("-i", source, "-q:v", "12", folder / "reencoded.jpg")  # lossy re-encode
    ffmpeg("-i", source, "-vf", "scale=400:300", folder / "resized.png")
    ffmpeg("-i", source, "-vf", "crop=632:472:4:4", "-q:v", "5", folder / "cropped.jpg")
    for name in ("reencoded.jpg", "resized.png", "cropped.jpg"):
        out[name.split(".")[0]] = (folder / name).read_bytes()
    out["mandelbrot"] = picture(folder / "mandelbrot.png", "640x480", "mandelbrot")
    out["rgbtest"] = picture(folder / "rgbtest.png", "640x480", "rgbtestsrc")
    out["smpte"] = picture(folder / "smpte.jpg", "640x480", "smptebars")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=320x240", "-frames:v", "1", folder / "flat.png")
    out["flat"] = (folder / "flat.png").read_bytes()
    # A 5-second video showing the original picture (as a sextortion clip reuses one).
    ffmpeg("-loop", "1", "-framerate", "10", "-i", source, "-t", "5", "-pix_fmt", "yuv420p",
           folder / "clip.mp4")  # fmt: skip
    out["video"] = (folder / "clip.mp4").read_bytes()
    return out


def reference_pdq(data: bytes, folder: Path) -> pdq.PdqHash:
    """PDQ of a trusted test image at full size (the way a list's maker hashes it)."""
    path = folder / f"{secrets.token_hex(4)}.img"
    path.write_bytes(data)
    size = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(",")  # fmt: skip
    width, height = int(size[0]), int(size[1])
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return pdq.hash_rgb(raw, width, height)


# --- the PDQ index ----------------------------------------------------------------------------


def test_the_index_finds_exactly_the_hashes_within_the_distance() -> None:
    rng = np.random.default_rng(7)
    hexes = [rng.bytes(32).hex() for _ in range(2000)]
    query = hexes[0]
    # Near copies at known distances, some in the second half only (the prefilter's edge).
    for flips in (1, 15, 31, 32, 60):
        bits = list(int(query, 16).to_bytes(32, "big"))
        for position in rng.choice(256, size=flips, replace=False):
            bits[position // 8] ^= 1 << (position % 8)
        hexes.append(bytes(bits).hex())
    index = pdq.PdqIndex(hexes)
    found = index.near(query, 31)
    expected = sorted(
        ((row, pdq.distance(query, h)) for row, h in enumerate(hexes)
         if pdq.distance(query, h) <= 31),
        key=lambda pair: (pair[1], pair[0]),
    )  # fmt: skip
    assert found == expected
    assert [d for _r, d in found] == [0, 1, 15, 31]
    assert list(index.distances(query)) == [pdq.distance(query, h) for h in hexes]


# --- the list format --------------------------------------------------------------------------


def test_the_list_format() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    md5 = hashlib.md5(b"x").hexdigest()  # noqa: S324
    text = (
        f"# a comment\n\n{sha}\tseries A\tSextortion\nMD5:{md5.upper()}\n"
        f"pdq:{'f' * 64}\tframe 3\n{'0' * 64}\n"
    )
    entries = matching.parse_list(text.encode())
    assert entries == [
        matching.Entry("sha256", sha, "series A", "sextortion"),
        matching.Entry("md5", md5),
        matching.Entry("pdq", "f" * 64, "frame 3"),
        matching.Entry("sha256", "0" * 64),
    ]
    assert matching.parse_list(b"0" * 64, bare_64="pdq") == [matching.Entry("pdq", "0" * 64)]
    for bad in (b"xyz\n", b"abc:" + b"0" * 64, b"0" * 40, b"# nothing\n", b"\xff\xfe"):
        with pytest.raises(matching.HashListError):
            matching.parse_list(bad)


# --- fingerprints in the sandbox --------------------------------------------------------------


def one_report_vault(tmp_path: Path, files: list[tuple[bytes, str]]) -> Path:
    analyst = make_analyst(tmp_path)
    pickup = Pickup([analyst.key])
    pickup.report(pickup.source(), files=[(d, n, "image/png") for d, n in files])
    return imported_vault(tmp_path, analyst, SERVER, pickup)


def test_fingerprints_near_for_altered_copies_far_for_others(
    tmp_path: Path, media: dict[str, bytes]
) -> None:
    names = ["original", "reencoded", "resized", "cropped", "mandelbrot", "rgbtest", "smpte",
             "flat", "video"]  # fmt: skip
    path = one_report_vault(tmp_path, [(media[n], f"{n}.bin") for n in names])
    with open_vault(path) as vault:
        (summary,) = vault.inbox()
        report = vault.report(summary.id)
        assert report is not None
        attachments = {a.name.split(".")[0]: a for a in report.files}
        found = {n: fingerprints.fingerprint(vault, attachments[n]) for n in names}
    for name in names:
        assert found[name].sha256 == hashlib.sha256(media[name]).hexdigest()
        assert found[name].md5 == hashlib.md5(media[name]).hexdigest()  # noqa: S324
    original = found["original"].pdq[0]
    assert original.quality >= 50
    # The sandbox's hash of the decoded frame agrees with a full-size reference hash.
    assert original == reference_pdq(media["original"], tmp_path)
    for near in ("reencoded", "resized", "cropped"):
        assert pdq.distance(original.hex, found[near].pdq[0].hex) <= 31, near
    for far in ("mandelbrot", "rgbtest", "smpte"):
        assert pdq.distance(original.hex, found[far].pdq[0].hex) > 31, far
    assert found["flat"].pdq[0].quality < 50
    video = found["video"]
    assert video.family == "video" and video.decoded
    assert len(video.pdq) == 3  # 5 s at one frame every 2 s
    assert len(found["original"].pdq) == 1


# --- matching in a vault ----------------------------------------------------------------------


@pytest.fixture
def wave(tmp_path: Path, media: dict[str, bytes]) -> tuple[Path, dict[str, str]]:
    """A vault with five reports: the original image, two altered copies in two others, an
    unrelated image, and the flat one; fingerprinted and checked (no list yet)."""
    analyst = make_analyst(tmp_path)
    pickup = Pickup([analyst.key])
    reports = {}
    for name in ("original", "reencoded", "cropped", "mandelbrot", "flat"):
        reports[name] = pickup.report(
            pickup.source(),
            category="other",
            links=[f"https://example.org/{name}"],  # no link in common
            files=[(media[name], f"{name}.img", "image/png")],
        )
    path = imported_vault(tmp_path, analyst, SERVER, pickup)
    with open_vault(path) as vault:
        assert matching.after_import(vault) == []
    return path, reports


def write_list(tmp_path: Path, media: dict[str, bytes]) -> Path:
    original = reference_pdq(media["original"], tmp_path)
    flat = reference_pdq(media["flat"], tmp_path)
    lines = [
        f"sha256:{hashlib.sha256(media['original']).hexdigest()}\tseries A\tsextortion",
        f"pdq:{original.hex}\tseries A, picture 1\tsextortion",
        f"pdq:{flat.hex}\ta flat grey picture\tother",
        f"md5:{hashlib.md5(b'something else').hexdigest()}\tunrelated",  # noqa: S324
    ]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_exact_and_near_matches_flag_the_reports(
    tmp_path: Path, media: dict[str, bytes], wave: tuple[Path, dict[str, str]]
) -> None:
    path, reports = wave
    data = write_list(tmp_path, media).read_bytes()
    with open_vault(path) as vault:
        info, found = matching.import_list(vault, "hotline-A", data)
        assert (info.name, info.version, info.entries, info.signed_by) == ("hotline-A", 1, 4, None)
        by_report: dict[str, set[tuple[str, int]]] = {}
        for match in found:
            by_report.setdefault(match.report_id, set()).add((match.kind, match.distance))
        assert set(by_report) == {reports["original"], reports["reencoded"], reports["cropped"]}
        assert ("sha256", 0) in by_report[reports["original"]]
        assert all(kind == "pdq" and d <= 31 for kind, d in by_report[reports["cropped"]])
        # The flat image is on the list, but its hash is too weak to match.
        assert matching.matches_of_report(vault, reports["flat"]) == []
        assert matching.matches_of_report(vault, reports["mandelbrot"]) == []
        shown = matching.matches_of_report(vault, reports["reencoded"])[0]
        assert (shown.list_name, shown.label, shown.category) == (
            "hotline-A",
            "series A, picture 1",
            "sextortion",
        )
        priorities = {name: _priority(vault, rid) for name, rid in reports.items()}
        assert priorities == {"original": 2, "reencoded": 2, "cropped": 2, "mandelbrot": 1,
                              "flat": 1}  # fmt: skip
        events = [(e.event, e.fields) for e in audit.entries(vault)]
        assert ("hashlist_import", {"list": "hotline-A", "version": 1, "sha256": 1, "md5": 1,
                "pdq": 2, "signed_by": None, "file_sha256": hashlib.sha256(data).hexdigest()}) \
            in events  # fmt: skip
        logged = {(f["report"], f["list"]) for e, f in events if e == "match"}
        assert logged == {(reports[n], "hotline-A") for n in ("original", "reencoded", "cropped")}
        # Checking again finds nothing new and logs nothing more.
        assert matching.check(vault, None) == []
        assert sum(1 for e in audit.entries(vault) if e.event == "match") == len(found)


def _priority(vault: Vault, report_id: str) -> int:
    found = cases.case(vault, report_id)
    assert found is not None
    return found.priority


def test_thresholds_are_settings(
    tmp_path: Path, media: dict[str, bytes], wave: tuple[Path, dict[str, str]]
) -> None:
    path, reports = wave
    data = write_list(tmp_path, media).read_bytes()
    with open_vault(path) as vault:
        strict = matching.Thresholds(pdq_distance=0, pdq_quality=50)
        _info, found = matching.import_list(vault, "strict", data, thresholds=strict)
        assert {m.report_id for m in found} == {reports["original"]}  # the exact SHA-256 only
        lenient = matching.Thresholds(pdq_distance=31, pdq_quality=0)
        found = matching.check(vault, None, lenient)
        assert reports["flat"] in {m.report_id for m in found}


def test_near_duplicates_across_reports_are_one_connections_cluster(
    wave: tuple[Path, dict[str, str]],
) -> None:
    path, reports = wave
    with open_vault(path) as vault:
        clusters, _count = connections.clusters(vault)
        images = [c for c in clusters if c.kind == "image"]
        assert len(images) == 1
        members = {linked.id for linked in images[0].reports}
        assert members == {reports["original"], reports["reencoded"], reports["cropped"]}
        mine = connections.of_report(vault, reports["cropped"])
        assert {c.kind for c in mine} == {"image"}
        assert connections.of_report(vault, reports["mandelbrot"]) == []


def test_versions_and_removal(
    tmp_path: Path, media: dict[str, bytes], wave: tuple[Path, dict[str, str]]
) -> None:
    path, _reports = wave
    list_path = write_list(tmp_path, media)
    with open_vault(path) as vault:
        matching.import_list(vault, "hotline-A", list_path.read_bytes())
        info, _found = matching.import_list(vault, "hotline-A", b"md5:" + b"0" * 32 + b"\n")
        assert info.version == 2
        versions = [(i.version, i.entries, i.removed is None) for i in matching.lists(vault)]
        assert versions == [(1, 4, False), (2, 1, True)]
        with vault.transaction() as db:
            assert db.execute("SELECT count(*) FROM hashlist_entries").fetchone()[0] == 1
        assert matching.remove_list(vault, "hotline-A") == 1
        with vault.transaction() as db:
            assert db.execute("SELECT count(*) FROM hashlist_entries").fetchone()[0] == 0
        assert all(i.removed for i in matching.lists(vault))
        with pytest.raises(matching.HashListError):
            matching.remove_list(vault, "hotline-A")
        assert any(e.event == "hashlist_remove" for e in audit.entries(vault))
        # Matches already found stay on their reports.
        with vault.transaction() as db:
            assert db.execute("SELECT count(*) FROM matches").fetchone()[0] > 0


# --- previews stay hidden ---------------------------------------------------------------------


@pytest.fixture
def flagged_app(
    tmp_path: Path, media: dict[str, bytes], wave: tuple[Path, dict[str, str]]
) -> Iterator[tuple[Flask, dict[str, str]]]:
    path, reports = wave
    with open_vault(path) as vault:
        matching.import_list(vault, "hotline-A", write_list(tmp_path, media).read_bytes())
    for app in workstation_app(path):
        yield app, reports


def file_url(vault: Vault, report_id: str) -> str:
    report = vault.report(report_id)
    assert report is not None
    return f"/reports/{report_id}/files/{report.files[0].id}"


def test_a_matched_image_is_never_previewed_unless_asked(
    flagged_app: tuple[Flask, dict[str, str]],
) -> None:
    app, reports = flagged_app
    client: FlaskClient = logged_in(app)
    previews = app.extensions["previews"]
    own = app_vault(app)
    matched = file_url(own, reports["reencoded"])
    unrelated = file_url(own, reports["mandelbrot"])
    blob = matched_blob(own, reports["reencoded"])
    page = client.get(f"/reports/{reports['reencoded']}").get_data(as_text=True)
    assert "hotline-A" in page and "series A, picture 1" in page and "sextortion" in page
    assert f'src="{matched}/preview' not in page
    details = client.get(f"{matched}/details").get_data(as_text=True)
    assert "<img" not in details and "unhide" in details
    for mode in ("blurred", "revealed"):
        answer = client.get(f"{matched}/preview?mode={mode}")
        assert answer.status_code == 403 and answer.mimetype != "image/png"
    assert client.post(f"{matched}/reveal", data=_csrf(client)).status_code == 403
    assert not any(key[0] == blob for key in previews._cache)  # never made, not even blurred
    # An unrelated image is previewed as usual.
    assert client.get(f"{unrelated}/preview").mimetype == "image/png"
    # Asked for: audited, then blurred like any image.
    answer = client.post(f"{matched}/unhide", data=_csrf(client))
    assert answer.status_code == 303
    assert client.get(f"{matched}/preview").mimetype == "image/png"
    unhidden = [e.fields for e in audit.entries(own) if e.event == "match_unhide"]
    assert unhidden == [{"report": reports["reencoded"], "item": matched.rsplit("/", 1)[1]}]


def app_vault(app: Flask) -> Vault:
    """The vault the logged-in app holds open (a second opening would be refused: locked)."""
    sessions = app.extensions["workstation"].sessions
    vault = sessions._vault
    assert vault is not None
    return vault  # type: ignore[no-any-return]


def matched_blob(vault: Vault, report_id: str) -> str:
    report = vault.report(report_id)
    assert report is not None
    return report.files[0].blob


def _csrf(client: FlaskClient) -> dict[str, str]:
    page = client.get("/").get_data(as_text=True)
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return {"csrf": token}


# --- the command line -------------------------------------------------------------------------


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="blagh")


def test_cli_signed_import_list_and_remove(
    tmp_path: Path, media: dict[str, bytes], wave: tuple[Path, dict[str, str]]
) -> None:
    path, reports = wave
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    list_path = write_list(tmp_path, media)
    signer = ServerSigningKey.generate()
    key = tmp_path / "unit.pub"
    key.write_text(signer.public().verify.hex() + "\n")
    signature = tmp_path / "list.sig"
    signature.write_bytes(signer.sign(list_path.read_bytes()))
    common = ("--vault", path, "--passphrase-file", secret)
    # A signature by another key is refused, and nothing is imported.
    wrong = tmp_path / "wrong.sig"
    wrong.write_text(ServerSigningKey.generate().sign(list_path.read_bytes()).hex())
    result = run("workstation", "hashlist", "import", *common, "--signature", wrong, "--key", key,
                 "hotline-A", list_path)  # fmt: skip
    assert result.exit_code != 0 and "does not verify" in result.output
    result = run("workstation", "hashlist", "import", *common, "--signature", signature,
                 "hotline-A", list_path)  # fmt: skip
    assert result.exit_code != 0 and "--key" in result.output
    with open_vault(path) as vault:
        assert matching.lists(vault) == []
    result = run("workstation", "hashlist", "import", *common, "--signature", signature, "--key",
                 key, "hotline-A", list_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "version 1: 4 hash(es), signed by" in result.output
    assert "4 new match(es), on 3 of the files" in result.output  # one by SHA-256 and PDQ
    listed = run("workstation", "hashlist", "list", *common)
    assert listed.exit_code == 0 and "hotline-A\tv1" in listed.output and "active" in listed.output
    assert run("workstation", "hashlist", "remove", *common, "hotline-A").exit_code == 0
    assert "removed" in run("workstation", "hashlist", "list", *common).output
    shown = run("workstation", "audit", "show", *common).output
    events = [json.loads(line)["event"] for line in shown.splitlines()]
    assert {"hashlist_import", "match", "hashlist_remove"} <= set(events)
    assert reports  # the wave's reports were checked above


def test_cli_import_checks_new_attachments(tmp_path: Path, media: dict[str, bytes]) -> None:
    analyst = make_analyst(tmp_path)
    first = Pickup([analyst.key])
    first.report(first.source(), files=[(media["mandelbrot"], "m.png", "image/png")])
    path = imported_vault(tmp_path, analyst, SERVER, first)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    common = ("--vault", path, "--passphrase-file", secret)
    list_path = write_list(tmp_path, media)
    assert run("workstation", "hashlist", "import", *common, "A", list_path).exit_code == 0
    second = Pickup([analyst.key])
    report = second.report(second.source(), files=[(media["resized"], "r.png", "image/png")])
    bundle = second.write(tmp_path / "second", SERVER)
    result = run("workstation", "import", *common, bundle)
    assert result.exit_code == 0, result.output
    assert f"Known content: report {report}" in result.output and "list A" in result.output


def test_cli_accepts_a_list_signed_with_openssl(tmp_path: Path) -> None:
    """An administrator's Ed25519 key and signature made by openssl (PEM key, raw signature)."""
    analyst = make_analyst(tmp_path)
    path = imported_vault(tmp_path, analyst, SERVER, Pickup([analyst.key]))
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    listed = tmp_path / "list.txt"
    listed.write_text(f"md5:{'0' * 32}\tsomething\n")
    private, public, signature = tmp_path / "k.pem", tmp_path / "pub.pem", tmp_path / "list.sig"

    def openssl(*args: object) -> None:
        subprocess.run(["openssl", *[str(a) for a in args]], check=True, capture_output=True)

    openssl("genpkey", "-algorithm", "ed25519", "-out", private)
    openssl("pkey", "-in", private, "-pubout", "-out", public)
    openssl("pkeyutl", "-sign", "-inkey", private, "-rawin", "-in", listed, "-out", signature)
    common = ("--vault", path, "--passphrase-file", secret)
    result = run("workstation", "hashlist", "import", *common, "--signature", signature,
                 "--key", public, "unit", listed)  # fmt: skip
    assert result.exit_code == 0, result.output
    listed.write_text(f"md5:{'1' * 32}\tsomething else\n")  # changed after signing
    result = run("workstation", "hashlist", "import", *common, "--signature", signature,
                 "--key", public, "unit", listed)  # fmt: skip
    assert result.exit_code != 0 and "does not verify" in result.output
    with open_vault(path) as vault:
        assert [(i.name, i.version) for i in matching.lists(vault)] == [("unit", 1)]


def test_a_wave_arriving_over_several_imports_stays_one_cluster(
    tmp_path: Path, media: dict[str, bytes]
) -> None:
    analyst = make_analyst(tmp_path)
    first = Pickup([analyst.key])
    reports = [
        first.report(first.source(), links=[f"https://example.org/{n}"],
                     files=[(media[n], f"{n}.img", "image/png")])
        for n in ("original", "mandelbrot")
    ]  # fmt: skip
    path = imported_vault(tmp_path, analyst, SERVER, first)
    with open_vault(path) as vault:
        matching.after_import(vault)
        assert connections.clusters(vault)[0] == []
    for round_, names in enumerate((("reencoded", "resized"), ("cropped", "video"))):
        later = Pickup([analyst.key])
        reports += [
            later.report(later.source(), links=[f"https://example.org/{n}"],
                         files=[(media[n], f"{n}.bin", "application/octet-stream")])
            for n in names
        ]  # fmt: skip
        with open_vault(path) as vault:
            import_bundle(vault, later.write(tmp_path / f"later-{round_}", SERVER))
            matching.after_import(vault)
    with open_vault(path) as vault:
        clusters, count = connections.clusters(vault)
    assert count == 1
    (cluster,) = clusters
    assert cluster.kind == "image"
    # Every report of the wave (the video's first frame is the picture), not the mandelbrot.
    assert {linked.id for linked in cluster.reports} == set(reports) - {reports[1]}


def test_the_app_s_import_page_checks_the_new_files(
    tmp_path: Path, media: dict[str, bytes]
) -> None:
    analyst = make_analyst(tmp_path)
    path = imported_vault(tmp_path, analyst, SERVER, Pickup([analyst.key]))
    with open_vault(path) as vault:
        matching.import_list(vault, "hotline-A", write_list(tmp_path, media).read_bytes())
    pickup = Pickup([analyst.key])
    report = pickup.report(pickup.source(), files=[(media["resized"], "r.png", "image/png")])
    bundle = pickup.write(tmp_path / "pickup-2", SERVER).read_bytes()
    for app in workstation_app(path):
        client = logged_in(app)
        answer = client.post(
            "/import?lang=en",
            data={**_csrf(client), "bundle": (io.BytesIO(bundle), "pickup.bundle")},
            content_type="multipart/form-data",
        )
        assert answer.status_code == 200
        assert "Files on a list of known content: 1." in answer.get_data(as_text=True)
        assert [m.list_name for m in matching.matches_of_report(app_vault(app), report)] == [
            "hotline-A"
        ]
