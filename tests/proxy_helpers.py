"""Debian's nginx in front of ``blagh serve``, configured by docs/clearnet.nginx.conf itself.

A plain module beside tests/browser_helpers.py.  The test makes its own CA and a server
certificate with the ``openssl`` command (Debian's), then starts nginx as an ordinary process on
loopback with the shipped configuration, changed only where a test must: paths into a folder of
its own, free ports, the test certificate.  Every temporary folder nginx could write a request
body or an answer to is made unwritable, so a configuration that buffered to disk would fail the
upload instead of leaving plaintext behind unnoticed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from gunicorn_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "clearnet.nginx.conf"
NGINX = Path("/usr/sbin/nginx")
HOST = "127.0.0.1"
NAME = "report.test"
"""The site's name in the test certificate; both browsers are told it is 127.0.0.1."""
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
START_SECONDS = 30.0


def missing_nginx() -> str | None:
    """Why the proxy tests cannot run here, or None; they fail (not skip) on it."""
    if not NGINX.exists():
        return "nginx is missing: `apt-get install nginx` (make test does it)."
    if shutil.which("openssl") is None or shutil.which("certutil") is None:
        return "openssl or certutil is missing: `apt-get install openssl libnss3-tools`."
    return None


def _openssl(*args: str | Path, cwd: Path) -> bytes:
    done = subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)
    return done.stdout


class CertificateAuthority:
    """A CA made for one test run, and a server certificate it signed for :data:`NAME`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = folder / "ca.pem"
        self.certificate = folder / "server.pem"
        self.key = folder / "server.key"
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        _openssl(
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", self.ca, "-days", "2",
            "-subj", "/CN=Blagh test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
        _openssl(
            "req", "-new", *ec, "-keyout", self.key, "-out", "server.csr", "-subj", f"/CN={NAME}",
            cwd=folder,
        )  # fmt: skip
        (folder / "server.ext").write_text(
            f"subjectAltName = DNS:{NAME}\nbasicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
            "utf-8",
        )
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", self.ca, "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", self.certificate,
            cwd=folder,
        )  # fmt: skip

    def server_spki_sha256(self) -> str:
        """What Chromium's ``--ignore-certificate-errors-spki-list`` takes: the base64 SHA-256
        of the server key's SubjectPublicKeyInfo (that one key is accepted, nothing else)."""
        pem = _openssl("x509", "-in", self.certificate, "-pubkey", "-noout", cwd=self.folder)
        der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=pem,
            check=True,
            capture_output=True,
        ).stdout
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def trust_in_nss(self, nss_folder: Path) -> None:
        """The CA as a trusted TLS issuer in an NSS database (a Firefox profile's)."""
        db = f"sql:{nss_folder}"
        subprocess.run(
            ["certutil", "-N", "-d", db, "--empty-password"], check=True, capture_output=True
        )
        subprocess.run(
            ["certutil", "-A", "-d", db, "-n", "Blagh test CA", "-t", "C,,", "-i", self.ca],
            check=True,
            capture_output=True,
        )


def _replace(text: str, old: str, new: str, count: int = 1) -> str:
    """``old`` replaced by ``new``, which must occur ``count`` times: a change to the example
    that these edits no longer fit fails here, not later as a puzzling nginx error."""
    found = text.count(old)
    assert found == count, f"{old!r} occurs {found} times in {EXAMPLE.name}, not {count}"
    return text.replace(old, new)


class Nginx:
    """nginx with docs/clearnet.nginx.conf, as a child process (``daemon off``).

    Run as root (a container, CI), it runs as ``nobody`` instead, so that the unwritable
    temporary folders really are: root writes anywhere.  Everything it needs is in its own
    folder (a fresh one outside pytest's, which ``nobody`` could not enter)."""

    def __init__(self, ca: CertificateAuthority, upstream_port: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="blagh-nginx-"))
        self.port = free_port()
        self.http_port = free_port()
        self.error_log = self.folder / "error.log"
        self.temp = self.folder / "temp"
        shutil.copy(ca.certificate, self.folder / "server.pem")
        shutil.copy(ca.key, self.folder / "server.key")
        self.config = self.folder / "nginx.conf"
        self.config.write_text(self._config(upstream_port), "utf-8")
        self.temp.mkdir()
        for name in TEMP_FOLDERS:
            (self.temp / name).mkdir(mode=0o500)
            (self.temp / name).chmod(0o500)
        self._as_nobody = os.geteuid() == 0
        if self._as_nobody:
            nobody = pwd.getpwnam("nobody")
            for path in [self.folder, *self.folder.rglob("*")]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{NAME}:{self.port}"

    def _config(self, upstream_port: int) -> str:
        text = EXAMPLE.read_text("utf-8")
        text = _replace(text, "user www-data;\n", "")
        text = _replace(text, "worker_processes auto;", "worker_processes 1;\ndaemon off;")
        text = _replace(text, "pid /run/nginx.pid;", f"pid {self.folder}/nginx.pid;")
        text = _replace(text, "/var/log/nginx/error.log", str(self.error_log))
        text, count = re.subn(r"(?m)^ *listen \[::\]:.*\n", "", text)  # loopback IPv4 only
        assert count == 2, count
        text = _replace(text, "listen 80 ", f"listen {HOST}:{self.http_port} ")
        text = _replace(text, "listen 443 ", f"listen {HOST}:{self.port} ")
        text = _replace(text, "report.example.org;", f"{NAME};", count=2)
        live = "/etc/letsencrypt/live/report.example.org/"
        text = _replace(text, live + "fullchain.pem", str(self.folder / "server.pem"))
        text = _replace(text, live + "privkey.pem", str(self.folder / "server.key"))
        text = _replace(text, "http://127.0.0.1:8082", f"http://{HOST}:{upstream_port}")
        temp_paths = "".join(f"    {name}_temp_path {self.temp / name};\n" for name in TEMP_FOLDERS)
        return _replace(text, "    access_log off;\n", "    access_log off;\n" + temp_paths)

    def start(self) -> None:
        command = [str(NGINX), "-p", str(self.folder), "-e", str(self.error_log), "-c"]
        command.append(str(self.config))
        check = subprocess.run([*command, "-t"], capture_output=True, **self._user())
        assert check.returncode == 0, check.stderr.decode()
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._user(),
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx not listening in {START_SECONDS} s:\n{self.log()}")
            time.sleep(0.05)

    def _user(self) -> dict[str, str]:
        return {"user": "nobody", "group": "nogroup"} if self._as_nobody else {}

    def _listening(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.error_log.read_text("utf-8", "replace") if self.error_log.exists() else ""

    def temp_files(self) -> list[Path]:
        """Whatever nginx left in its temporary folders (there must be nothing)."""
        return [path for path in self.temp.rglob("*") if path.parent != self.temp]

    def stop(self) -> None:
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

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
