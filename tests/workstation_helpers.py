"""Shared set-up for the workstation's tests: an analyst, a vault, and pickup bundles.

A plain module, not a conftest.  Bundles are made here the way docs/bundles.md says, with
:func:`blagh.bundles.write_bundle` signed by a :class:`ServerSigningKey`, so these tests depend
on the format and not on the server's code.  Key files are sealed with argon2id at its lowest
accepted cost: the vault opens them for real, quickly.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import sqlite3
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from blagh.bundles import ItemSource, write_bundle
from blagh.payloads import attachment_header, encode_document
from crypto.envelope import generate_keypair, seal
from crypto.keys import AnalystKey, ServerSigningKey, generate_analyst_key, seal_key_file
from crypto.manifest import sign_manifest
from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig
from journalist_interface.importer import import_bundle
from journalist_interface.vault import Vault, create_vault

PASSPHRASE = "correct horse battery staple"  # noqa: S105 (a test passphrase)
DAY = "2025-03-14"

File = tuple[bytes, str, str]
"""An attachment: its bytes, name and declared content type."""


@dataclass
class Analyst:
    key: AnalystKey
    key_file: Path


def make_analyst(directory: Path, name: str = "analyst") -> Analyst:
    key = generate_analyst_key()
    path = directory / f"{name}.key"
    path.write_bytes(seal_key_file(key, PASSPHRASE, opslimit=1, memlimit=8 * 1024 * 1024))
    return Analyst(key, path)


def make_vault(directory: Path, analyst: Analyst, server: ServerSigningKey) -> Path:
    path = directory / "vault"
    create_vault(path, analyst.key_file, server.public(), PASSPHRASE)
    return path


def open_vault(path: Path) -> Vault:
    return Vault.open(path, PASSPHRASE)


@dataclass
class Source:
    id: str
    secret_key: bytes | None
    public_key: bytes | None


@dataclass
class Pickup:
    """The server's side of a pickup bundle: sources, reports and sealed items."""

    analysts: Sequence[AnalystKey]
    sources: list[Source] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    envelopes: dict[str, bytes] = field(default_factory=dict)

    def source(self, *, codename: bool = True) -> Source:
        secret, public = generate_keypair() if codename else (None, None)
        source = Source(secrets.token_hex(16), secret, public)
        self.sources.append(source)
        return source

    def report(
        self,
        source: Source,
        *,
        category: str = "fraud",
        danger: bool = False,
        description: str = "A fake shop took my money.",
        links: Sequence[str] = ("https://shop.example/pay",),
        identity: dict[str, str] | None = None,
        files: Sequence[File] = (),
        day: str = DAY,
        **extra: Any,
    ) -> str:
        report_id = secrets.token_hex(16)
        self.reports.append({"id": report_id, "source": source.id, "day": day})
        document = {
            "category": category,
            "danger": danger,
            "description": description,
            "links": list(links),
            "platform": "Instagram",
            "seen_on": "2025-03-10",
            "identity": identity,
            "attachments": [name for _data, name, _type in files],
            **extra,
        }
        recipients = self._analyst_keys() + ([source.public_key] if source.public_key else [])
        self.add_item(report_id, "fields", seal(encode_document("report", document), recipients))
        for data, name, content_type in files:
            self.add_file(report_id, data, name, content_type)
        return report_id

    def message(self, report_id: str, source: Source, text: str, files: Sequence[File] = ()) -> str:
        recipients = self._analyst_keys() + ([source.public_key] if source.public_key else [])
        document = encode_document(
            "message", {"text": text, "attachments": [name for _d, name, _t in files]}
        )
        item = self.add_item(report_id, "message", seal(document, recipients))
        for data, name, content_type in files:
            self.add_file(report_id, data, name, content_type)
        return item

    def add_file(self, report_id: str, data: bytes, name: str, content_type: str) -> str:
        plaintext = attachment_header(name, content_type) + data
        return self.add_item(report_id, "file", seal(plaintext, self._analyst_keys()))

    def add_item(self, report_id: str, kind: str, envelope: bytes, day: str = DAY) -> str:
        item_id = secrets.token_hex(16)
        seq = 1 + sum(1 for item in self.items if item["report"] == report_id)
        self.items.append(
            {
                "id": item_id,
                "report": report_id,
                "kind": kind,
                "size": len(envelope),
                "sha256": hashlib.sha256(envelope).hexdigest(),
                "day": day,
                "seq": seq,
            }
        )
        self.envelopes[item_id] = envelope
        return item_id

    def _analyst_keys(self) -> list[bytes]:
        return [analyst.public().encryption for analyst in self.analysts]

    def manifest(self, bundle_id: str | None = None, day: str = DAY) -> dict[str, Any]:
        return {
            "format": "blagh-pickup",
            "version": 1,
            "bundle": bundle_id or secrets.token_hex(16),
            "day": day,
            "analysts": [analyst.public().to_line() for analyst in self.analysts],
            "sources": [
                {"id": s.id, "public_key": s.public_key.hex() if s.public_key else None}
                for s in self.sources
            ],
            "reports": list(self.reports),
            "items": list(self.items),
        }

    def write(
        self,
        path: Path,
        server: ServerSigningKey,
        manifest: dict[str, Any] | None = None,
    ) -> Path:
        manifest = manifest or self.manifest()
        sources = [
            ItemSource(
                i["id"], i["size"], i["sha256"], lambda i=i: io.BytesIO(self.envelopes[i["id"]])
            )
            for i in manifest["items"]
        ]
        with path.open("xb") as out:
            write_bundle(out, manifest, server.sign, server.public().verify, sources)
        return path

    def write_raw(
        self,
        path: Path,
        server: ServerSigningKey,
        members: Sequence[tuple[str, bytes]],
        manifest: dict[str, Any] | None = None,
        signed: bytes | None = None,
    ) -> Path:
        """A bundle whose members are exactly ``members``, after a correctly signed manifest."""
        if signed is None:
            signed = sign_manifest(manifest or self.manifest(), server.sign, server.public().verify)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in [("manifest.signed", signed), *members]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def members(self) -> list[tuple[str, bytes]]:
        return [(f"items/{item_id}", data) for item_id, data in self.envelopes.items()]


def imported_vault(
    directory: Path, analyst: Analyst, server: ServerSigningKey, pickup: Pickup
) -> Path:
    """A new vault in ``directory`` holding ``pickup``, written as a bundle signed by ``server``."""
    path = make_vault(directory, analyst, server)
    with open_vault(path) as vault:
        import_bundle(vault, pickup.write(directory / "pickup", server))
    return path


def workstation_app(vault_path: Path) -> Iterator[Flask]:
    """The review app on ``vault_path``, its sessions closed afterwards: a fixture's
    ``yield from``."""
    app = create_app(WorkstationConfig(vault=vault_path))
    yield app
    app.extensions["workstation"].sessions.close()


def logged_in(app: Flask) -> FlaskClient:
    """A test client of ``app`` logged in with the analyst's passphrase."""
    client = app.test_client()
    assert client.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
    return client


def vault_state(path: Path) -> tuple[object, ...]:
    """Everything a vault holds, to compare before and after: its files, then every table
    (but the audit log, which records the logins around what is compared).

    The files are listed before the vault is opened, since opening sweeps away leftovers.
    """
    files = sorted(
        (str(p.relative_to(path)), p.read_bytes() if p.is_file() else b"")
        for p in path.rglob("*")
        if not p.name.startswith("vault.db")
    )
    vault = open_vault(path)
    try:
        with vault.transaction() as db:
            tables = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            contents = {
                table: sorted(map(repr, db.execute(f"SELECT * FROM {table}")))  # noqa: S608
                for table in sorted(tables)
                if table != "audit"  # logging in and out is recorded: that is not the vault's data
            }
            contents["settings"] = [row for row in contents["settings"] if "audit_head" not in row]
    finally:
        vault.close()
    return files, contents


def sqlite_is_encrypted(path: Path) -> bool:
    """Plain SQLite cannot read a SQLCipher file."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        return True
    finally:
        connection.close()
    return False
