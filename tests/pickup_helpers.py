"""Shared set-up for the pickup API and reply-bundle tests: a server store, reports, replies.

A plain module, not a conftest.  Everything is real: a data folder made like ``blagh init``
makes it, the SQLCipher store, envelopes sealed with the crypto package.  Reports are put in
the store directly (no codename derivation, no HTTP), as the source interface would store
them.  Reply bundles are made here the way docs/bundles.md says, with
:func:`blagh.bundles.write_bundle` signed by an :class:`AnalystKey`, without the workstation's
code: these tests depend on the format, not on journalist_interface.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blagh.bundles import ItemSource, write_bundle
from blagh.config import Config, load_config
from blagh.datadir import DataDir
from blagh.payloads import attachment_header, encode_document
from crypto.envelope import generate_keypair, seal
from crypto.keys import AnalystKey, ServerSigningKey, generate_analyst_key
from crypto.manifest import sha256_hex
from source_interface.app import open_store
from source_interface.store import BlobRef, Report, Store

DAY = "2025-03-14"
BLAGH = Path(sys.executable).with_name("blagh")
HOST = "127.0.0.1"


@dataclass
class Server:
    """A data folder, its config (pickup on) and store, and the analyst of its config."""

    data_dir: DataDir
    config: Config
    store: Store
    analyst: AnalystKey
    signing_key: ServerSigningKey

    def counts(self) -> dict[str, Any]:
        """Rows per table and the exact set of blobs: to show nothing changed."""
        found: dict[str, Any] = {
            table: self.rows(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608
            for table in ("sources", "reports", "items", "applied_bundles", "pickup_tokens")
        }
        found["delivered"] = self.rows(
            "SELECT count(*) FROM items WHERE delivered_day IS NOT NULL"
        )[0][0]
        found["blobs"] = frozenset(self.store.blobs.names())
        found["tmp"] = frozenset(p.name for p in self.store.blobs.temp_dir.iterdir())
        return found

    def rows(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on the real index: SQLCipher, or PostgreSQL (``?`` marks become
        ``%s``)."""
        if self.config.store.backend == "postgresql":
            import psycopg

            with psycopg.connect(self.config.store.dsn) as pg:
                found = pg.execute(sql.replace("?", "%s"), tuple(parameters)).fetchall()
            return [tuple(row) for row in found]
        with self.store.index.transaction() as db:
            return db.execute(sql, tuple(parameters)).fetchall()

    def close(self) -> None:
        self.store.close()


def make_server(
    tmp_path: Path,
    *,
    analysts: Iterable[AnalystKey] = (),
    store: dict[str, str] | None = None,
    **retention: Any,
) -> Server:
    path = tmp_path / "data"
    analyst = generate_analyst_key()
    keys = [analyst, *analysts]
    directory = DataDir(path)
    directory.create([key.public() for key in keys])
    if store:  # the commands (blagh export-bundle, ...) read the data folder's config.toml
        text = directory.config_file.read_text("utf-8")
        text = text.replace('backend = "sqlcipher"', f'backend = "{store["backend"]}"', 1)
        text = text.replace('dsn = ""', f'dsn = "{store["dsn"]}"', 1)
        directory.config_file.write_text(text, "utf-8")
    config = load_config(
        {
            "instance": {"data_dir": str(path)},
            "recipients": {"analysts": [key.public().to_line() for key in keys]},
            "pickup": {"enabled": True},
            "retention": retention,
            "store": store or {},
        }
    )
    return Server(
        directory,
        config,
        open_store(directory, config.store),
        analyst,
        directory.read_server_signing_key(),
    )


def enable_pickup(directory: DataDir, **retention: int) -> None:
    """Turn [pickup] on (and set [retention]) in a data folder's config.toml."""
    text = directory.config_file.read_text("utf-8")
    pickup, _, rest = text.partition("[pickup]")
    text = pickup + "[pickup]" + rest.replace("\nenabled = false\n", "\nenabled = true\n", 1)
    for key, value in retention.items():
        text = text.replace(f"\n{key} = 7\n", f"\n{key} = {value}\n")
    directory.config_file.write_text(text, "utf-8")


@dataclass
class Reporter:
    """A source in the store, with its X25519 secret key when it kept a codename."""

    source_id: str
    secret_key: bytes | None
    public_key: bytes | None
    reports: list[Report] = field(default_factory=list)


def _blob(store: Store, data: bytes) -> BlobRef:
    pending = store.new_blob()
    pending.write(data)
    return pending.commit()


def add_report(
    server: Server,
    text: str = "fake tickets",
    *,
    files: int = 1,
    codename: bool = True,
    reporter: Reporter | None = None,
) -> Reporter:
    """A report as the source interface stores it: sealed fields (to the source too when it
    kept a codename) and ``files`` attachments sealed to the analysts."""
    analysts = [key.encryption for key in server.config.recipients.analysts]
    if reporter is None:
        secret, public = generate_keypair() if codename else (None, None)
        source = server.store.create_source(secrets.token_bytes(32) if codename else None, public)
        reporter = Reporter(source.id, secret, public)
    recipients = analysts + ([reporter.public_key] if reporter.public_key else [])
    fields = encode_document(
        "report",
        {
            "category": "fraud",
            "danger": False,
            "description": text,
            "links": [],
            "platform": "",
            "seen_on": None,
            "identity": None,
            "attachments": [],
        },
    )
    items = [("fields", _blob(server.store, seal(fields, recipients)))]
    for number in range(files):
        plain = attachment_header(f"shot{number}.png", "image/png") + b"\x89PNG" + bytes(number)
        items.append(("file", _blob(server.store, seal(plain, analysts))))
    report = server.store.add_report(reporter.source_id, items)
    reporter.reports.append(report)
    return reporter


# --- reply bundles -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    report_id: str
    source_public_key: bytes
    text: str = "Thank you, we are looking into it."
    id: str = field(default_factory=lambda: secrets.token_hex(16))


def seal_reply(reply: Reply, analysts: Iterable[bytes]) -> bytes:
    return seal(
        encode_document("reply", {"text": reply.text}), [reply.source_public_key, *analysts]
    )


def reply_bundle(
    out: Path,
    signer: AnalystKey,
    replies: Iterable[Reply] = (),
    *,
    acknowledged: Iterable[str] = (),
    delete_reports: Iterable[str] = (),
    analysts: Iterable[bytes] | None = None,
    bundle_id: str | None = None,
    envelopes: dict[str, bytes] | None = None,
    edit_manifest: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write a reply bundle as the workstation would: each reply sealed to its reporter and
    the analysts, signed by ``signer``.  ``envelopes`` replaces a reply's envelope by id;
    ``edit_manifest`` changes the manifest before it is signed."""
    seal_to = list(analysts) if analysts is not None else [signer.public().encryption]
    items: list[tuple[Reply, bytes]] = []
    for reply in replies:
        envelope = (envelopes or {}).get(reply.id) or seal_reply(reply, seal_to)
        items.append((reply, envelope))
    manifest: dict[str, Any] = {
        "format": "blagh-replies",
        "version": 1,
        "bundle": bundle_id or secrets.token_hex(16),
        "day": DAY,
        "acknowledged": list(acknowledged),
        "delete_reports": list(delete_reports),
        "items": [
            {"id": r.id, "report": r.report_id, "size": len(e), "sha256": sha256_hex(e)}
            for r, e in items
        ],
    }
    if edit_manifest is not None:
        edit_manifest(manifest)
    with out.open("wb") as file:
        write_bundle(
            file,
            manifest,
            signer.sign,
            signer.public().verify,
            [
                ItemSource(r.id, len(e), sha256_hex(e), lambda e=e: io.BytesIO(e))  # type: ignore[misc]
                for r, e in items
            ],
        )
    return out


Member = tuple[tarfile.TarInfo, bytes | None]


def members(path: Path) -> list[Member]:
    with tarfile.open(path, "r:") as tar:
        found = []
        for info in tar.getmembers():
            file = tar.extractfile(info) if info.isreg() else None
            found.append((info, file.read() if file else None))
        return found


def write_members(path: Path, entries: list[Member]) -> Path:
    """A tar archive of exactly these members, in this order (for hostile bundles)."""
    with (
        path.open("wb") as file,
        tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def all_item_ids(server: Server) -> list[str]:
    return [item_id for (item_id,) in server.rows("SELECT id FROM items WHERE kind != 'reply'")]


# --- a real gunicorn ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_pickup(
    data_dir: DataDir, work: Path, *, limits: Callable[[], None] | None = None
) -> Iterator[int]:
    """``blagh serve-pickup`` on a free loopback port (pickup turned on in the config), its
    output in ``work/gunicorn.log``; yields the port once it accepts connections.  ``limits``
    runs in the child before gunicorn starts (resource limits, inherited by the workers)."""
    enable_pickup(data_dir)
    port = free_port()
    log = work / "gunicorn.log"
    env = dict(os.environ, HOME=str(work))
    env.pop("XDG_RUNTIME_DIR", None)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [BLAGH, "serve-pickup", "--data-dir", data_dir.path, "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=limits,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
