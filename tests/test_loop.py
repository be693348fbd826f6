"""The whole air-gapped loop on loopback, with real servers and the real commands.

A reporter submits a report with two files through ``blagh serve`` (gunicorn, no JavaScript) and
keeps a codename; a transfer station fetches the pickup bundle from ``blagh serve-pickup``
(gunicorn) with ``blagh pickup``, through a connection that breaks half-way the first time; the
analyst imports it with ``blagh workstation import`` (after a wrong passphrase that opens
nothing), answers in the workstation app, makes a reply bundle with ``blagh workstation
replies``; ``blagh deliver`` takes it back; the reporter logs in with the codename and reads the
answer.  Along the way: the reply is only ciphertext on the server, and what the reply bundle
acknowledged never comes back in a later pickup bundle.

Each piece has its own detailed tests (test_source_*, test_pickup, test_import_replies,
test_workstation_*); this one checks that they fit together.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM, Upload
from pickup_helpers import serve_pickup
from test_source_gunicorn import (
    HOST,
    Browser,
    Gunicorn,
    make_data_dir,
    scan_for,
    submit_report,
)
from workstation_helpers import PASSPHRASE, vault_state

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.datadir import DataDir
from crypto.keys import ServerVerifyKey, generate_analyst_key, seal_key_file
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from source_interface.app import open_store
from transfer.client import PARTIAL

CUT_AFTER = 200_000
"""Bytes of the first pickup response (headers included) let through before the cut."""


# ---------------------------------------------------------------------------------------------
# A loopback proxy that breaks the first download half-way
# ---------------------------------------------------------------------------------------------


class CuttingProxy:
    """Relays loopback connections to ``upstream``; on the first one, hangs up on the client
    after ``cut_after`` bytes of the answer (and quietly drains the rest from the server), as
    a tor circuit dropping in the middle of a download would."""

    def __init__(self, upstream: int, cut_after: int) -> None:
        self.upstream = upstream
        self.limits: list[int | None] = [cut_after]
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            limit = self.limits.pop(0) if self.limits else None
            thread = threading.Thread(target=self._relay, args=(client, limit), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _relay(self, client: socket.socket, limit: int | None) -> None:
        with client, socket.create_connection((HOST, self.upstream)) as server:
            ahead = threading.Thread(target=_pipe, args=(client, server), daemon=True)
            ahead.start()
            sent = 0
            while chunk := _recv(server):
                if limit is not None and sent + len(chunk) >= limit:
                    with contextlib.suppress(OSError):
                        client.sendall(chunk[: limit - sent])
                        client.shutdown(socket.SHUT_RDWR)
                    while _recv(server):  # let the server finish its answer
                        pass
                    break
                try:
                    client.sendall(chunk)
                except OSError:
                    break
                sent += len(chunk)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            ahead.join(timeout=10)

    def close(self) -> None:
        self.listener.close()
        self._accepting.join(timeout=10)
        for thread in self.threads:
            thread.join(timeout=10)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(64 * 1024)
    except OSError:
        return b""


def _pipe(source: socket.socket, target: socket.socket) -> None:
    while chunk := _recv(source):
        try:
            target.sendall(chunk)
        except OSError:
            return
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def cutting_proxy(upstream: int, cut_after: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(upstream, cut_after)
    try:
        yield proxy
    finally:
        proxy.close()


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def blagh(*args: object) -> Result:
    """A ``blagh`` command, in this process (the servers are separate processes)."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def bundle_items(path: Path, server_key: bytes) -> dict[str, str]:
    """A pickup bundle's items, id → kind, once its signature and hashes check out."""
    with BundleReader(path, [server_key], "blagh-pickup") as reader:
        return {item["id"]: item["kind"] for item in reader.manifest["items"]}


def csrf(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found is not None, path
    return found.group(1)


# ---------------------------------------------------------------------------------------------
# The set-up: an analyst key, a data folder, both servers
# ---------------------------------------------------------------------------------------------


@dataclass
class Site:
    data_dir: DataDir
    server_key: ServerVerifyKey
    source: Gunicorn
    pickup_port: int
    key_file: Path
    passphrase: Path
    token: Path

    @property
    def pickup_url(self) -> str:
        return f"http://{HOST}:{self.pickup_port}/"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    # The analyst's key file, at argon2id's lowest accepted cost so that every command opening
    # it is quick (`blagh keygen` always uses the full cost), and its public line.
    analyst = generate_analyst_key()
    key_file = tmp_path / "analyst.key"
    key_file.write_bytes(seal_key_file(analyst, PASSPHRASE, opslimit=1, memlimit=8 << 20))
    passphrase = private_file(tmp_path / "passphrase", PASSPHRASE + "\n")
    shown = ok(blagh("key", "show", "--key-file", key_file, "--passphrase-file", passphrase))
    assert analyst.public().to_line() in shown

    # `blagh init` with that line; a transfer station's token.
    data_dir = make_data_dir(tmp_path / "data", analyst, workers=1)
    token = tmp_path / "station-1.token"
    ok(blagh("pickup-token", "add", "--data-dir", data_dir.path, "station-1", "--out", token))

    (tmp_path / "source").mkdir()
    (tmp_path / "pickup").mkdir()
    source = Gunicorn(data_dir, tmp_path / "source", workers=1)
    try:
        source.start()
        with serve_pickup(data_dir, tmp_path / "pickup") as port:
            yield Site(
                data_dir,
                data_dir.read_server_signing_key().public(),
                source,
                port,
                key_file,
                passphrase,
                token,
            )
    finally:
        source.stop()


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def test_the_whole_loop(site: Site, tmp_path: Path) -> None:
    prefix = "mk" + secrets.token_hex(6)

    def marker(label: str) -> str:
        return f"{prefix}_{label}_{secrets.token_hex(4)}"

    # 1. The reporter, without JavaScript: a report with two files, a codename kept and typed
    #    back.
    description = marker("description")
    files = [
        Upload(marker("photo") + ".jpg", marker("photo").encode() * 20_000, "image/jpeg"),
        Upload(marker("note") + ".txt", marker("note").encode() * 10_000, "text/plain"),
    ]
    reporter = Browser(site.source.port)
    sent = submit_report(
        reporter, description, files, links="https://shop.example/pay", keep_codename="yes"
    )
    assert (sent.status, sent.location()) == (303, "/report/codename")
    page = reporter.get("/report/codename").text
    shown, form = CODENAME.search(page), FORM_TOKEN.search(page)
    assert shown and form
    codename = shown.group(1)
    typed = reporter.post(
        "/report/codename", [("form_token", form.group(1)), ("codename", codename)]
    )
    assert (typed.status, typed.location()) == (303, "/followup?saved=1")
    (report_id,) = MESSAGE_FORM.findall(reporter.get("/followup").text)

    # 2. The transfer station: `blagh pickup` over plain loopback HTTP.  The first attempt's
    #    connection breaks half-way; the same command again resumes where it stopped.
    usb = tmp_path / "usb"
    usb.mkdir()
    with cutting_proxy(site.pickup_port, CUT_AFTER) as proxy:
        pickup = (
            "pickup",
            "--url",
            f"http://{HOST}:{proxy.port}/",
            "--token",
            site.token,
            "--out",
            usb,
            "--server-key",
            site.server_key.to_line(),
        )
        broken = blagh(*pickup)
        assert broken.exit_code == 1, broken.output
        line = broken.stderr.splitlines()[-1]  # after the progress bar's label
        assert line.startswith("blagh: error: the download was interrupted after ")
        assert line.endswith("run the same command again to resume it")
        received = (usb / PARTIAL).stat().st_size
        assert 0 < received < CUT_AFTER
        assert not list(usb.glob("pickup-*.bundle"))
        resumed = ok(blagh(*pickup))
    (bundle,) = usb.glob("pickup-*.bundle")
    assert resumed == (
        f"Downloaded {bundle}: 3 items, {bundle.stat().st_size} bytes, resumed at byte "
        f"{received}; verified.\n"
    )
    picked_up = bundle_items(bundle, site.server_key.verify)
    assert sorted(picked_up.values()) == ["fields", "file", "file"]

    # 3. The workstation: a vault pinned to the server's key; a wrong passphrase opens nothing
    #    and says so in one line; the right one imports the bundle.
    vault = tmp_path / "vault"
    ok(
        blagh(
            "workstation",
            "init",
            "--vault",
            vault,
            "--key-file",
            site.key_file,
            "--server-key",
            site.server_key.to_line(),
            "--passphrase-file",
            site.passphrase,
        )
    )
    vault_state(vault)  # the first opening makes the vault's folders
    before = vault_state(vault)
    wrong = private_file(tmp_path / "wrong-passphrase", "not the passphrase\n")
    refused = blagh("workstation", "import", "--vault", vault, "--passphrase-file", wrong, bundle)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "blagh: error: wrong passphrase: nothing was opened. Type the passphrase of the analyst "
        "key file this vault was made with"
    ]
    assert vault_state(vault) == before
    imported = ok(
        blagh(
            "workstation", "import", "--vault", vault, "--passphrase-file", site.passphrase, bundle
        )
    )
    assert imported == f"Imported {bundle}: 3 new item(s) of 3, 1 new report(s).\n"

    # 4. The analyst, in the workstation app: the report whole, its files, a reply.
    reply_text = f"We have your report and the two files. Reference {marker('reply')}."
    app = create_app(WorkstationConfig(vault=vault))
    try:
        client = app.test_client()
        unlocked = client.post("/login", data={"passphrase": PASSPHRASE})
        assert unlocked.status_code == 303
        inbox = client.get("/?lang=en").get_data(as_text=True)
        assert f'href="/reports/{report_id}"' in inbox
        report = client.get(f"/reports/{report_id}?lang=en").get_data(as_text=True)
        assert description in report and "https://shop.example/pay" in report
        downloads = re.findall(rf'href="/reports/{report_id}/files/([0-9a-f]+)"', report)
        assert len(downloads) == 2
        got = {client.get(f"/reports/{report_id}/files/{item}").get_data() for item in downloads}
        assert got == {upload.content for upload in files}
        for upload in files:
            assert upload.filename in report
        answered = client.post(
            f"/reports/{report_id}/reply",
            data={"csrf": csrf(client, f"/reports/{report_id}"), "text": reply_text},
        )
        assert answered.status_code == 303
        assert client.post("/logout", data={"csrf": csrf(client, "/")}).status_code == 303
    finally:
        app.extensions["workstation"].sessions.close()

    # 5. The reply bundle, carried back and delivered to the pickup API.
    replies = usb / "replies.bundle"
    made = ok(
        blagh(
            "workstation",
            "replies",
            "--vault",
            vault,
            "--out",
            replies,
            "--passphrase-file",
            site.passphrase,
        )
    )
    assert made.startswith(f"Wrote {replies}: 1 reply(ies), 3 acknowledgement(s), 0 deletion")
    delivered = ok(blagh("deliver", replies, "--url", site.pickup_url, "--token", site.token))
    assert delivered == (
        f"Delivered {replies}: 1 reply stored, 3 items acknowledged, 0 reports deleted.\n"
    )

    # 6. The reporter logs in with the codename and reads the answer; and writes back.
    visitor = Browser(site.source.port)
    form_token = visitor.token("/login")
    signed_in = visitor.post("/login", [("form_token", form_token), ("codename", codename)])
    assert (signed_in.status, signed_in.location()) == (303, "/followup")
    home = visitor.get("/followup")
    assert home.status == 200 and reply_text in home.text
    thanks = marker("thanks")
    form = FORM_TOKEN.search(home.text)
    assert form
    wrote = visitor.post(
        f"/followup/{report_id}/message", [("form_token", form.group(1)), ("message", thanks)]
    )
    assert wrote.status == 303

    # 7. On the server the reply is an envelope and nothing else; what the reply bundle
    #    acknowledged is marked delivered and is in no later bundle, which brings only what is
    #    new (the reporter's message, which reaches the vault).
    with contextlib.closing(open_store(site.data_dir)) as store, store.index.transaction() as db:
        kinds = dict(db.execute("SELECT id, kind FROM items").fetchall())
        delivered_ids = {
            row[0] for row in db.execute("SELECT id FROM items WHERE delivered_day IS NOT NULL")
        }
    assert delivered_ids == set(picked_up)
    assert sorted(kinds.values()) == ["fields", "file", "file", "message", "reply"]
    again = ok(blagh("pickup", "--url", site.pickup_url, "--token", site.token, "--out", usb))
    (later,) = set(usb.glob("pickup-*.bundle")) - {bundle}
    assert f"Downloaded {later}: 1 item," in again
    news = bundle_items(later, site.server_key.verify)
    assert list(news.values()) == ["message"] and not set(news) & set(picked_up)
    imported = ok(
        blagh(
            "workstation", "import", "--vault", vault, "--passphrase-file", site.passphrase, later
        )
    )
    assert "1 new item(s) of 1, 0 new report(s)" in imported

    # No plaintext on any disk: the server's folder, both servers' logs, temp and home folders,
    # the transfer station's media, the vault (its database is SQLCipher, its files envelopes).
    # A control marker shows the scan would see one.
    control = tmp_path / "control"
    control.write_text(marker("control"))
    assert scan_for(prefix, [tmp_path]) == {control: {control.read_text()}}
