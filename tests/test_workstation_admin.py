"""Workstation administration (issue 13): `blagh workstation analyst add|remove|reset-totp`
for an admin, each in the audit log; the TOTP enrolment QR code inline in the account page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import segno
from click.testing import CliRunner, Result
from flask import Flask
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    logged_in,
    make_analyst,
    make_vault,
    workstation_app,
)

from blagh.cli import cli
from crypto.keys import ServerSigningKey
from journalist_interface import accounts, audit
from journalist_interface.errors import WorkstationError
from journalist_interface.security import CONTENT_SECURITY_POLICY
from journalist_interface.vault import Vault

SERVER = ServerSigningKey.generate()


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="blagh")


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"), "admin")


@pytest.fixture(scope="module")
def bob(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"), "bob")


@pytest.fixture
def vault_path(tmp_path: Path, admin: Analyst) -> Path:
    return make_vault(tmp_path, admin, SERVER)


@pytest.fixture
def passphrase(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    return path


def add_bob(vault_path: Path, passphrase: Path, bob: Analyst) -> Result:
    return run("workstation", "analyst", "add", "--vault", vault_path,
               "--passphrase-file", passphrase, "--name", "bob", "--key-file", bob.key_file,
               "--new-passphrase-file", passphrase)  # fmt: skip


def test_add_reset_totp_and_remove_are_audited(
    vault_path: Path, passphrase: Path, bob: Analyst
) -> None:
    added = add_bob(vault_path, passphrase, bob)
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith(
        f"Added the analyst bob (key fingerprint {bob.key.public().fingerprint()})."
    )
    # bob logs in with his own key, and turns a login code on.
    with Vault.open(vault_path, PASSPHRASE, "bob") as as_bob:
        secret = accounts.totp_begin(as_bob, "bob")
        accounts.totp_confirm(as_bob, "bob", pyotp.TOTP(secret).at(time.time()))
        assert accounts.account(as_bob, "bob").totp  # type: ignore[union-attr]
    # He loses his phone: an admin turns the code off.
    reset = run("workstation", "analyst", "reset-totp", "--vault", vault_path,
                "--passphrase-file", passphrase, "bob")  # fmt: skip
    assert reset.exit_code == 0, reset.output
    assert reset.stdout.startswith("Turned off the login code of bob.")
    removed = run("workstation", "analyst", "remove", "--vault", vault_path,
                  "--passphrase-file", passphrase, "bob")  # fmt: skip
    assert removed.exit_code == 0, removed.output
    with pytest.raises(WorkstationError):
        Vault.open(vault_path, PASSPHRASE, "bob").close()
    with Vault.open(vault_path, PASSPHRASE) as vault:
        assert not accounts.account(vault, "bob").active  # type: ignore[union-attr]
        logged = [
            (e.analyst, e.fields["action"], e.fields["name"])
            for e in audit.entries(vault, events=["account"])
        ]
    assert logged == [
        ("analyst", "added", "bob"),
        ("bob", "totp_on", "bob"),
        ("analyst", "totp_reset", "bob"),
        ("analyst", "removed", "bob"),
    ]


def test_only_an_admin_administers(vault_path: Path, passphrase: Path, bob: Analyst) -> None:
    assert add_bob(vault_path, passphrase, bob).exit_code == 0
    for command in (["reset-totp", "analyst"], ["remove", "analyst"]):
        result = run("workstation", "analyst", command[0], "--vault", vault_path,
                     "--passphrase-file", passphrase, "--analyst", "bob", command[1])  # fmt: skip
        assert result.exit_code == 1
        assert result.stderr == (
            "blagh: error: bob is not an admin of this vault: only an admin adds or removes "
            "analysts or resets a login code; give an admin's --analyst\n"
        )
    unknown = run("workstation", "analyst", "reset-totp", "--vault", vault_path,
                  "--passphrase-file", passphrase, "carol")  # fmt: skip
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("blagh: error: there is no such analyst;")
    again = add_bob(vault_path, passphrase, bob)
    assert again.exit_code == 1 and "this name is taken" in again.stderr


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


def test_the_enrolment_page_shows_a_qr_code_inline(app: Flask) -> None:
    client = logged_in(app)
    csrf_page = client.get("/account?lang=en").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', csrf_page)
    assert token is not None
    begun = client.post("/account/totp", data={"csrf": token.group(1), "action": "begin"})
    assert begun.status_code == 303
    response = client.get("/account?lang=en")
    page = response.get_data(as_text=True)
    secret = re.search(r'<code dir="ltr" class="secret">([A-Z2-7 ]+)</code>', page)
    assert secret is not None
    uri = accounts.provisioning_uri(secret.group(1).replace(" ", ""), "analyst")
    svg = re.search(r"<svg .*?</svg>", page, re.S)
    assert svg is not None
    # The QR code is the otpauth address (drawn the way segno draws it), inline: no image to
    # fetch, no script, under the unchanged CSP.
    expected = segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", svgclass="qr", border=4
    )
    assert svg.group(0) == expected
    assert "<script" not in page and "<img" not in page
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
