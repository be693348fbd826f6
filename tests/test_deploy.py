"""The systemd units under deploy/systemd: valid, hardened, and true about W+X memory.

``systemd-analyze verify`` checks each unit as systemd would load it (unknown keys, bad values, a
missing ExecStart binary: the units name /opt/blagh/venv/bin/blagh, replaced here by this venv's
``blagh``), and ``systemd-analyze security --offline=true`` scores its exposure, asserted below a
threshold.  ``MemoryDenyWriteExecute=yes`` is checked for real: ``blagh serve`` runs under the
kernel's own W^X refusal (``PR_SET_MDWE``, inherited by every worker) and takes a report.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn_helpers import Browser, Gunicorn, make_data_dir, submit_report
from media_helpers import gps_jpeg
from onion_helpers import Serve
from onion_helpers import make_data_dir as make_onion_data_dir

from crypto.keys import generate_analyst_key

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BLAGH = "/opt/blagh/venv/bin/blagh"
BLAGH = Path(sys.executable).with_name("blagh")

# The exposure systemd-analyze gives each unit, at most.
THRESHOLDS = {
    "blagh-source.service": 2.5,
    "blagh-source-attach.service": 2.5,
    "blagh-pickup.service": 2.5,
    "blagh-workstation.service": 2.5,
}
HARDENING = (
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "MemoryDenyWriteExecute=yes",
    "ProtectHome=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "SystemCallArchitectures=native",
    "ProtectKernelModules=yes",
)


def _units(tmp_path: Path) -> dict[str, Path]:
    """Each unit with the installed path of ``blagh`` replaced by this venv's, and the source
    unit with the attach drop-in applied (a drop-in's lines are read after the unit's)."""
    out: dict[str, Path] = {}
    for unit in sorted(UNITS.glob("*.service")):
        out[unit.name] = tmp_path / unit.name
    attach = (UNITS / "blagh-source.service.d" / "attach.conf").read_text("utf-8")
    texts = {name: (UNITS / name).read_text("utf-8") for name in out}
    texts["blagh-source-attach.service"] = texts["blagh-source.service"] + attach
    out["blagh-source-attach.service"] = tmp_path / "blagh-source-attach.service"
    for name, path in out.items():
        assert INSTALLED_BLAGH in texts[name]
        path.write_text(texts[name].replace(INSTALLED_BLAGH, str(BLAGH)), "utf-8")
    return out


def test_every_unit_is_checked() -> None:
    assert {u.name for u in UNITS.glob("*.service")} | {"blagh-source-attach.service"} == set(
        THRESHOLDS
    )


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_unit_verifies_and_its_exposure_is_low(name: str, tmp_path: Path) -> None:
    unit = _units(tmp_path)[name]
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", unit], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == verify.stdout == ""  # no warning either (an unknown key is one)
    threshold = THRESHOLDS[name]
    limit = f"--threshold={round(threshold * 10)}"
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", limit, unit],
        capture_output=True,
        text=True,
    )
    assert security.returncode == 0, security.stdout + security.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    assert found, security.stdout
    assert float(found[1]) <= threshold


@pytest.mark.parametrize("name", ["blagh-source.service", "blagh-pickup.service"])
def test_server_units_write_only_to_the_data_folder(name: str) -> None:
    lines = (UNITS / name).read_text("utf-8").splitlines()
    for setting in HARDENING:
        assert setting in lines, setting
    assert [line for line in lines if line.startswith("ReadWritePaths=")] == [
        "ReadWritePaths=/var/lib/blagh/server"
    ]
    assert "User=blagh" in lines
    assert any(line.startswith("RestrictAddressFamilies=AF_UNIX AF_INET") for line in lines)


def test_a_known_bad_unit_fails_verify(tmp_path: Path) -> None:
    """The verify test above would catch a mistake: a misspelt key, a binary that is absent."""
    text = (UNITS / "blagh-pickup.service").read_text("utf-8")
    misspelt = tmp_path / "misspelt.service"
    misspelt.write_text(
        text.replace(INSTALLED_BLAGH, str(BLAGH)).replace("PrivateTmp=", "PrivatTmp="), "utf-8"
    )
    run = subprocess.run(["systemd-analyze", "verify", misspelt], capture_output=True, text=True)
    assert "Unknown key" in run.stderr
    absent = tmp_path / "absent.service"
    absent.write_text(text, "utf-8")  # /opt/blagh/venv/bin/blagh is not on this machine
    run = subprocess.run(["systemd-analyze", "verify", absent], capture_output=True, text=True)
    assert run.returncode != 0 and "not executable" in run.stderr


def test_the_system_user_file_is_valid() -> None:
    run = subprocess.run(
        ["systemd-sysusers", "--dry-run", UNITS / "blagh.sysusers.conf"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "Creating user 'blagh'" in run.stdout + run.stderr


# PR_SET_MDWE / PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3): the kernel refuses any mapping that is, or
# becomes, both writable and executable, for this process and every process it starts.
_MDWE = """
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
assert libc.prctl(66, 0, 0, 0, 0) == 1
os.execv(sys.argv[1], sys.argv[1:])
"""


def _mdwe_available() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(66, 0, 0, 0, 0) >= 0)


def test_mdwe_is_enforced_here() -> None:
    """The check below means something: under PR_SET_MDWE a W+X mapping is refused."""
    assert _mdwe_available(), "this kernel has no PR_SET_MDWE (Linux >= 6.3 needed)"
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)"
    run = subprocess.run(
        [sys.executable, "-c", _MDWE, sys.executable, "-c", probe], capture_output=True, text=True
    )
    assert run.returncode != 0 and "PermissionError" in run.stderr, run.stderr
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _mdwe_wrapper(folder: Path, blagh: Path) -> Path:
    """A ``blagh`` that runs the real one under PR_SET_MDWE."""
    wrapper = folder / "blagh-mdwe"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{_MDWE}' {blagh} \"$@\"\n", "utf-8")
    wrapper.chmod(0o755)
    return wrapper


class _MdweGunicorn(Gunicorn):
    """``blagh serve`` started through the PR_SET_MDWE wrapper."""

    def start(self) -> None:
        import gunicorn_helpers

        original = gunicorn_helpers.BLAGH
        gunicorn_helpers.BLAGH = _mdwe_wrapper(self.cwd, original)
        try:
            super().start()
        finally:
            gunicorn_helpers.BLAGH = original


def test_blagh_serve_takes_a_report_with_memory_deny_write_execute(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data", generate_analyst_key(), workers=1)
    server = _MdweGunicorn(data_dir, tmp_path, workers=1)
    server.start()
    try:
        browser = Browser(server.port)
        for path in ("/?lang=ar", "/report"):
            assert browser.get(path).status == 200
        reply = submit_report(browser, "sealed under W^X", keep_codename="no")
        assert (reply.status, reply.location()) == (303, "/report/received")
        assert server.proc is not None and server.proc.poll() is None
        assert "MemoryError" not in server.log() and "PermissionError" not in server.log()
    finally:
        server.stop()


@pytest.mark.tor
def test_blagh_serve_and_its_own_tor_run_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """tor, started by blagh as blagh-source.service does, under W^X too (network disabled)."""
    import onion_helpers

    analyst = generate_analyst_key().public()
    data_dir = make_onion_data_dir(tmp_path / "data", analyst, mode="offline")
    original = onion_helpers.BLAGH
    onion_helpers.BLAGH = _mdwe_wrapper(tmp_path, original)
    try:
        serve = Serve(data_dir, tmp_path, "--tor", "offline")
    finally:
        onion_helpers.BLAGH = original
    try:
        addresses = serve.wait_started()
        assert len(addresses) == 1, serve.output()
    finally:
        assert serve.stop() == 0, serve.log()


# The workstation's sandbox (bubblewrap, then mat2 and ffmpeg inside it) as its unit runs it: W^X
# memory refused (PR_SET_MDWE), /proc mounted hidepid=invisible (ProtectProc), in a user namespace
# of its own mapping only its user (PrivateUsers).  Needs root, as the suite does.
_WORKSTATION_PROBE = """
import ctypes, os, sys
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(65, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
from journalist_interface import metadata, safeview
path = Path(sys.argv[1])
data = path.read_bytes()
kind = safeview.sniff(data[:4096], path.name)
assert metadata._run_mat2(path, kind, "show")["ok"] is True
assert metadata._run_mat2(path, kind, "clean")["ok"] is True
print(safeview.read_size([data], kind))
"""


def _workstation_probe(tmp_path: Path, proc_setup: str) -> subprocess.CompletedProcess[str]:
    gps_jpeg(tmp_path)
    probe = f"{sys.executable} -c '{_WORKSTATION_PROBE}' {tmp_path / 'gps.jpg'}"
    inner = f"unshare --user --map-current-user --mount env PYTHONPATH={ROOT} {probe}"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{proc_setup} && {inner}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_the_workstation_sandbox_runs_under_its_unit(tmp_path: Path) -> None:
    unit = (UNITS / "blagh-workstation.service").read_text("utf-8").splitlines()
    assert {"ProtectProc=invisible", "PrivateUsers=yes", "MemoryDenyWriteExecute=yes"} <= set(unit)
    run = _workstation_probe(tmp_path, "mount -t proc -o hidepid=invisible proc /proc")
    assert run.returncode == 0, run.stderr
    assert "Size(width=320, height=240" in run.stdout


def test_protect_kernel_tunables_would_break_the_workstation_sandbox(tmp_path: Path) -> None:
    """Why the workstation unit leaves ProtectKernelTunables off: a read-only /proc/sys over
    /proc forbids the fresh /proc bubblewrap mounts."""
    assert "ProtectKernelTunables=yes" not in (UNITS / "blagh-workstation.service").read_text()
    run = _workstation_probe(
        tmp_path, "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys"
    )
    assert run.returncode != 0
    assert "SandboxUnavailable" in run.stderr
