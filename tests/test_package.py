"""The installable package: a wheel built by ``python -m build`` serves pages from a fresh venv.

The wheel is built from this checkout, installed with ``pip --no-index --no-deps`` into a venv
made outside it, and ``blagh serve --tor off`` runs from that venv with its working folder
outside the checkout, so a template, static file or catalog left out of the wheel shows here
(a checkout's tests would find them in the source tree).  The tests run offline: the venv reaches
its dependencies through a .pth line naming this venv's site-packages, a plain path entry, so
the editable install's finder there (another .pth, which Python runs only for site folders) is
never loaded; the test checks that ``blagh`` is imported from the installed wheel.

The extras (pyproject.toml) are checked too: each role's modules import with every package of
the other roles blocked, so the server never needs what only the workstation uses.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from crypto.keys import AnalystPublicKey, generate_analyst_key, seal_key_file

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_SECONDS = 30.0
PIP = ["--no-index", "--no-deps", "--no-cache-dir", "--quiet"]

# What each role runs (docs/admin/install.md), as modules to import.  The server's and the
# workstation's whole packages; the transfer station only the pickup client and the command.
ROLE_MODULES = {
    "server": ["source_interface", "onion", "blagh"],
    "workstation": ["journalist_interface"],
    "transfer": ["transfer.client", "blagh.pickup_tokens"],
}
ROLE_COMMANDS = {
    "server": [["serve", "--help"], ["init", "--help"], ["export-bundle", "--help"]],
    "workstation": [["workstation", "serve", "--help"], ["workstation", "import", "--help"]],
    "transfer": [["pickup", "--help"], ["deliver", "--help"]],
}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower()


def _import_name(distribution: str) -> str:
    return {"pynacl": "nacl"}.get(distribution, distribution.replace("-", "_"))


def _role_packages() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    return base, {role: {_requirement_name(r) for r in extras[role]} for role in ROLE_MODULES}


VENDOR = Path("source_interface/static/vendor")


def _copy_of_the_checkout(dest: Path, *, vendor: bool) -> Path:
    """The files git would commit (tracked, or new and not ignored), and the libsodium.js files
    `make install` copies when ``vendor``: what a release is built from, and nothing the
    checkout's own builds or `make catalogs` left there (a build in the checkout would also
    leave its egg-info there)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    names = [Path(name.decode()) for name in listed if name]
    if vendor:
        names += [p.relative_to(ROOT) for p in (ROOT / VENDOR).glob("*.mjs")]
    for relative in names:
        if (ROOT / relative).is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            (dest / relative).write_bytes((ROOT / relative).read_bytes())
    return dest


_BLOCKER = """
import importlib, pkgutil, sys
blocked = set(sys.argv[1].split(",")) - {""}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in this role's extra")
sys.meta_path.insert(0, Block())
for name in sys.argv[2].split(","):
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
if len(sys.argv) > 3:
    from blagh.cli import main
    sys.argv = ["blagh", *sys.argv[3:]]
    main()
"""


@pytest.mark.parametrize("role", sorted(ROLE_MODULES))
def test_each_role_imports_with_only_its_extra(role: str) -> None:
    base, extras = _role_packages()
    others = set().union(*(deps for name, deps in extras.items() if name != role))
    blocked = {_import_name(name) for name in others - extras[role] - base}
    if role == "server":
        assert {"waitress", "pyotp"} <= blocked  # the workstation's own, never on the server
    if role == "workstation":
        assert {"gunicorn", "gevent", "stem"} <= blocked  # the server's own
    if role == "transfer":
        assert {"flask", "gunicorn", "sqlcipher3", "stem", "waitress"} <= blocked
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for command in ROLE_COMMANDS[role]:
        argv = [",".join(sorted(blocked)), ",".join(ROLE_MODULES[role]), *command]
        run = subprocess.run(
            [sys.executable, "-c", _BLOCKER, *argv], capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stderr
        assert "Usage: blagh" in run.stdout


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path

    @property
    def blagh(self) -> Path:
        return self.venv / "bin" / "blagh"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return dict(env, HOME=str(self.work), TMPDIR=str(self.work))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("package")
    assert not work.resolve().is_relative_to(ROOT)
    dist = work / "dist"
    source = _copy_of_the_checkout(work / "source", vendor=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source],
        check=True,
        capture_output=True,
        cwd=work,
    )
    (wheel,) = dist.glob("blagh-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(
        subprocess.run(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", *PIP, wheel],
        check=True,
        capture_output=True,
        env=Installed(wheel, venv, work).env(),  # no PYTHONPATH: the checkout is not installed
        cwd=work,
    )
    # After the install: pip would take the editable install's metadata there for this one.
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "dev-venv-dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    return Installed(wheel, venv, work)


def test_the_wheel_carries_what_the_apps_read_at_run_time(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for package in ("source_interface", "journalist_interface"):
        templates = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.html")}
        assert templates and templates <= names
        for po in (ROOT / package / "translations").glob("*/LC_MESSAGES/messages.po"):
            assert po.with_suffix(".mo").relative_to(ROOT).as_posix() in names
    static = ROOT / "source_interface" / "static"
    files = {p.relative_to(ROOT).as_posix() for p in static.rglob("*") if p.is_file()}
    files = {f for f in files if not Path(f).name.startswith(".")}
    assert "source_interface/static/vendor/libsodium-wrappers.mjs" in files
    assert files <= names
    assert "blagh/config.template.toml" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith("tests/") for name in names)


def test_the_sdist_carries_the_units_and_the_administrators_guide(installed: Installed) -> None:
    (sdist,) = installed.wheel.parent.glob("blagh-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "deploy").rglob("*") if p.is_file()}
    shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "admin").glob("*.md")}
    assert shipped <= names
    assert {"LICENSE", "CHANGELOG.md", "SECURITY.md", "constraints.txt"} <= names
    assert not any(name.startswith("tests/") for name in names)


def test_the_server_extra_leaves_out_the_workstation(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(metadata).decode("utf-8").splitlines()
    requires: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("Requires-Dist: "):
            requirement = line.removeprefix("Requires-Dist: ")
            extra = re.search(r'extra == "(\w+)"', requirement)
            requires.setdefault(extra[1] if extra else "", set()).add(
                _requirement_name(requirement)
            )
    assert requires[""] == {"click", "pynacl"}
    assert {"gunicorn", "gevent", "stem", "sqlcipher3", "flask"} <= requires["server"]
    assert not {"waitress", "pyotp"} & requires["server"]
    assert not {"gunicorn", "gevent", "stem", "xkcdpass"} & requires["workstation"]


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def served(installed: Installed, analyst_public_key: AnalystPublicKey) -> Iterator[int]:
    port = _free_port()
    data = installed.work / f"data-{port}"  # a folder per server: tests sharing `installed`
    cwd = installed.work / "cwd"
    cwd.mkdir(exist_ok=True)
    line = analyst_public_key.to_line()
    subprocess.run(
        [installed.blagh, "init", "--data-dir", data, "--analyst-key-line", line],
        check=True,
        capture_output=True,
        env=installed.env(),
        cwd=cwd,
    )
    config = data / "config.toml"
    text, count = re.subn(r"(?m)^workers = \d+$", "workers = 1", config.read_text("utf-8"))
    assert count == 1
    config.write_text(text, "utf-8")
    log = installed.work / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [installed.blagh, "serve", "--data-dir", data, "--port", str(port), "--tor", "off"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=installed.env(),
            cwd=cwd,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"blagh serve exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if _get(port, "/")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"blagh serve not ready in {START_SECONDS} s:\n{log.read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_installed_wheel_serves_every_language_and_its_static_files(
    installed: Installed, served: int
) -> None:
    where = subprocess.run(
        [
            installed.venv / "bin" / "python",
            "-c",
            "import blagh, source_interface as s; print(blagh.__file__); print(s.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=installed.env(),
        cwd=installed.work,
    ).stdout.split()
    assert all(Path(p).is_relative_to(installed.venv) for p in where), where

    title = "Report online crime"
    for language in ("en", "fr", "ar"):
        expected = title
        if language != "en":
            po = ROOT / "source_interface" / "translations" / language / "LC_MESSAGES"
            with (po / "messages.po").open("rb") as source:
                expected = read_po(source)[title].string
            assert expected and expected != title
        status, body = _get(served, f"/?lang={language}")
        page = body.decode("utf-8")
        assert status == 200
        direction = "rtl" if language == "ar" else "ltr"
        assert f'<html lang="{language}" dir="{direction}">' in page
        assert html.escape(expected) in page

    version_url = re.search(r'href="(/static/[^/"]+/)style\.css"', page)
    assert version_url, page
    installed_static = Path(where[1]).parent / "static"
    for name in ("style.css", "vendor/libsodium-wrappers.mjs", "js/blagh.mjs"):
        status, body = _get(served, version_url[1] + name)
        assert status == 200, name
        assert (
            body
            == (installed_static / name).read_bytes()
            == (ROOT / "source_interface" / "static" / name).read_bytes()
        )


def test_the_installed_wheel_backs_up_the_running_server_and_restores_it(
    installed: Installed, served: int
) -> None:
    """The administrator's path of docs/admin/backup.md, from the installed package only: a
    backup of the live data folder, sealed to a backup key, restored into a new folder."""
    assert _get(served, "/")[0] == 200
    key = generate_analyst_key()
    key_file, passphrase_file = installed.work / "backup.key", installed.work / "backup.pass"
    passphrase = "a long backup passphrase for the package test"  # noqa: S105
    key_file.write_bytes(seal_key_file(key, passphrase, opslimit=1, memlimit=8 * 1024 * 1024))
    passphrase_file.write_text(passphrase + "\n", "utf-8")
    out = installed.work / "server.backup"
    restored = installed.work / "restored"

    def blagh(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [installed.blagh, *map(str, args)],
            capture_output=True,
            text=True,
            env=installed.env(),
            cwd=installed.work,
        )

    made = blagh(
        "backup", "--data-dir", installed.work / f"data-{served}", "--out", out,
        "--to-key", key.public().to_line(), "--include-keys",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    back = blagh(
        "restore", "--from", out, "--data-dir", restored,
        "--key-file", key_file, "--passphrase-file", passphrase_file,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert (restored / "store" / "index.db").is_file()
    original = installed.work / f"data-{served}"
    assert (restored / "db.key").read_bytes() == (original / "db.key").read_bytes()


def test_the_build_refuses_without_libsodium_js(tmp_path: Path) -> None:
    """A checkout where `make install` has not copied libsodium.js builds no wheel: one without
    it would serve a reporters' page whose script is missing."""
    source = _copy_of_the_checkout(tmp_path / "source", vendor=False)
    assert not (source / VENDOR).exists()
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", tmp_path, source],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode != 0
    assert "libsodium-sumo.mjs, libsodium-wrappers.mjs missing; run `make install`" in (
        build.stdout + build.stderr
    )
    assert not list(tmp_path.glob("*.whl"))


def test_the_makefile_installs_each_role_only_its_debian_packages() -> None:
    database = subprocess.run(
        ["make", "--no-print-directory", "-pn", "help"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    packages = {
        name: set(value.split())
        for name, value in re.findall(r"(?m)^APT_([A-Z]+) := (.*)$", database)
    }
    desktop = {"chromium", "firefox-esr", "nodejs", "npm", "gnupg"}
    sandbox = {"mat2", "bubblewrap", "ffmpeg", "libimage-exiftool-perl"}
    assert "tor" in packages["SERVER"] and not (desktop | sandbox) & packages["SERVER"]
    assert packages["TRANSFER"] == {"tor"}
    assert sandbox <= packages["WORKSTATION"] and not {"tor", "nginx"} & packages["WORKSTATION"]
    assert not desktop & packages["WORKSTATION"]
    assert packages["PACKAGES"] == set().union(
        *(packages[role] for role in ("SERVER", "TRANSFER", "WORKSTATION", "DEV"))
    )
    for role in ("server", "transfer", "workstation"):
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", f"{role}-packages"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert dry[0] == "scripts/ensure-system-packages.sh"
        assert set(dry[1:]) == packages[role.upper()]
