"""Analysts' accounts on one workstation: a name, a role, their own key and passphrase, and an
optional second step at login (TOTP, RFC 6238, with pyotp).

Each analyst has their own key file (``blagh keygen``), so their own passphrase; the vault's
database key is sealed to all of them (``keyring.py``).  Accounts live in the vault's ``analysts``
table: the name, the public key line (which ties a key file to the account), the role, and the
TOTP secret once it is confirmed.  Roles: ``admin`` adds and removes analysts; ``analyst`` does
everything else.  The vault always keeps one active admin.

An analyst who is removed cannot open the vault again: their key file is deleted from the vault,
and the database is re-encrypted under a new key that is not sealed to them.  Their name stays
(inactive), so the case history and the audit log keep saying who did what, and is not reused.
Remove their key from the server's recipients list as well (docs/workstation.md, "Analysts and
key rotation"), or pickup bundles stay readable to them.

A TOTP code is accepted in a window of one step either side (30 s), and never twice: the last
step used is kept, so a code seen over a shoulder is worthless once used.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp

from blagh.files import write_new_file
from crypto.errors import KeyFileError
from crypto.keys import AnalystKey, AnalystPublicKey, open_key_file
from journalist_interface import audit, keyring
from journalist_interface.cases import now
from journalist_interface.errors import WorkstationError, WrongPassphrase
from journalist_interface.vault import Vault

ROLES = ("admin", "analyst")
ISSUER = "Blagh workstation"
TOTP_WINDOW = 1


class AccountError(WorkstationError):
    """An account change or a login step refused; ``reason`` says which, for the app."""

    BAD_NAME = "bad_name"
    NAME_TAKEN = "name_taken"
    KEY_TAKEN = "key_taken"
    NO_ACCOUNT = "no_account"
    LAST_ADMIN = "last_admin"
    SELF = "self"
    CODE_NEEDED = "code_needed"
    WRONG_CODE = "wrong_code"
    NOT_ALLOWED = "not_allowed"
    TOO_MANY = "too_many"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Account:
    name: str
    public_key: str
    role: str
    active: bool
    totp: bool
    created: str

    @property
    def fingerprint(self) -> str:
        return AnalystPublicKey.from_line(self.public_key).fingerprint()

    @property
    def admin(self) -> bool:
        return self.role == "admin"


_COLUMNS = "name, public_key, role, active, totp_secret IS NOT NULL, created"


def _account(row: tuple[Any, ...]) -> Account:
    return Account(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5])


def accounts(vault: Vault) -> list[Account]:
    with vault.transaction() as db:
        return [
            _account(row)
            for row in db.execute(
                f"SELECT {_COLUMNS} FROM analysts ORDER BY NOT active, name"  # noqa: S608
            )
        ]


def account(vault: Vault, name: str) -> Account | None:
    with vault.transaction() as db:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM analysts WHERE name = ?",  # noqa: S608 (a constant)
            (name,),
        ).fetchone()
    return _account(row) if row else None


# --- logging in --------------------------------------------------------------------------------


def check_login(vault: Vault, key: AnalystKey, code: str) -> Account:
    """The active account of ``key``, once its TOTP code (if it has TOTP) is checked.

    Raises :class:`AccountError`: ``NO_ACCOUNT``, ``CODE_NEEDED`` or ``WRONG_CODE``.
    """
    with vault.transaction() as db:
        row = db.execute(
            f"SELECT {_COLUMNS}, totp_secret, totp_last FROM analysts"  # noqa: S608
            " WHERE public_key = ? AND active",
            (key.public().to_line(),),
        ).fetchone()
        if row is None:
            raise AccountError(AccountError.NO_ACCOUNT, "this key has no account in this vault")
        found = _account(row)
        secret, last = row[6], row[7]
        if secret is not None:
            code = "".join(code.split())
            if not code:
                raise AccountError(AccountError.CODE_NEEDED, "this account needs a TOTP code")
            step = matching_step(secret, code, last)
            if step is None:
                raise AccountError(AccountError.WRONG_CODE, "wrong or already used TOTP code")
            db.execute("UPDATE analysts SET totp_last = ? WHERE name = ?", (step, found.name))
    return found


def matching_step(secret: str, code: str, last_used: int, at: float | None = None) -> int | None:
    """The time step whose code is ``code`` (one step either side of now), if later than
    ``last_used``; else None."""
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    moment = time.time() if at is None else at
    now_step = int(moment // totp.interval)
    for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
        if step > last_used and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


# --- TOTP --------------------------------------------------------------------------------------


def totp_begin(vault: Vault, name: str) -> str:
    """A new TOTP secret for ``name``, kept aside until a code from it is confirmed."""
    secret = pyotp.random_base32()
    with vault.transaction() as db:
        db.execute("UPDATE analysts SET totp_pending = ? WHERE name = ?", (secret, name))
    return secret


def totp_pending(vault: Vault, name: str) -> str | None:
    with vault.transaction() as db:
        row = db.execute("SELECT totp_pending FROM analysts WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def totp_confirm(vault: Vault, name: str, code: str) -> None:
    """Turn TOTP on with the pending secret, if ``code`` comes from it."""
    with vault.transaction() as db:
        row = db.execute("SELECT totp_pending FROM analysts WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is None:
            raise AccountError(AccountError.WRONG_CODE, "no TOTP set-up was started")
        step = matching_step(row[0], "".join(code.split()), 0)
        if step is None:
            raise AccountError(AccountError.WRONG_CODE, "wrong TOTP code")
        db.execute(
            "UPDATE analysts SET totp_secret = totp_pending, totp_pending = NULL, totp_last = ?"
            " WHERE name = ?",
            (step, name),
        )
    _audit(vault, action="totp_on", name=name)


def totp_disable(vault: Vault, name: str, code: str) -> None:
    """Turn TOTP off, with a current code as proof."""
    with vault.transaction() as db:
        row = db.execute(
            "SELECT totp_secret, totp_last FROM analysts WHERE name = ?", (name,)
        ).fetchone()
        if row is None or row[0] is None:
            return
        if matching_step(row[0], "".join(code.split()), row[1]) is None:
            raise AccountError(AccountError.WRONG_CODE, "wrong or already used TOTP code")
        db.execute(
            "UPDATE analysts SET totp_secret = NULL, totp_pending = NULL, totp_last = 0"
            " WHERE name = ?",
            (name,),
        )
    _audit(vault, action="totp_off", name=name)


def totp_reset(vault: Vault, name: str) -> None:
    """Turn TOTP off for ``name`` without a code: an admin's step for an analyst who lost their
    phone (``blagh workstation analyst reset-totp``).  Their key and passphrase still log them
    in; they set up a new code from their account page."""
    with vault.transaction() as db:
        row = db.execute("SELECT 1 FROM analysts WHERE name = ? AND active", (name,)).fetchone()
        if row is None:
            raise AccountError(AccountError.NO_ACCOUNT, "there is no such analyst")
        db.execute(
            "UPDATE analysts SET totp_secret = NULL, totp_pending = NULL, totp_last = 0"
            " WHERE name = ?",
            (name,),
        )
    _audit(vault, action="totp_reset", name=name)


def provisioning_uri(secret: str, name: str) -> str:
    """The ``otpauth://`` address an authenticator app reads (typed in, or from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The ``otpauth://`` address as a QR code, an SVG element to put inline in the page.

    Inline, so the page loads no image (the secret never becomes a URL a browser might cache or
    log) and needs no script: the workstation's CSP allows neither inline script nor data URLs.
    Black on white with a quiet zone, the way phone cameras read best.
    """
    import segno

    code = segno.make(uri, error="m")
    svg: str = code.svg_inline(scale=4, dark="#000", light="#fff", svgclass="qr", border=4)
    return svg


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into an authenticator app."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --- adding and removing -----------------------------------------------------------------------


def add_analyst(
    vault: Vault, name: str, role: str, key_file_data: bytes, passphrase: str
) -> Account:
    """Give the analyst whose key file is ``key_file_data`` an account and access to the vault.

    The new analyst types their own passphrase: it proves the key file is theirs and whole.
    The database key is sealed to them in the keyring (made now if the vault had none).
    """
    if keyring.NAME.fullmatch(name) is None:
        raise AccountError(
            AccountError.BAD_NAME,
            "a name is 1 to 32 lower-case letters, digits, '_', '.' or '-', a letter first",
        )
    if role not in ROLES:
        raise AccountError(AccountError.NOT_ALLOWED, "unknown role")
    try:
        key = open_key_file(key_file_data, passphrase)
    except KeyFileError:
        raise WrongPassphrase() from None
    public = key.public().to_line()
    with vault.transaction() as db:
        if db.execute("SELECT 1 FROM analysts WHERE name = ?", (name,)).fetchone():
            raise AccountError(AccountError.NAME_TAKEN, "this name is taken (or was, once)")
        if db.execute("SELECT 1 FROM analysts WHERE public_key = ?", (public,)).fetchone():
            raise AccountError(AccountError.KEY_TAKEN, "this key already has an account")
        members = [*_members(db), (name, key.public())]
        if len(members) > keyring.MAX_ANALYSTS:
            raise AccountError(AccountError.TOO_MANY, "this vault has as many analysts as it can")
        root = vault.paths.root
        _ensure_key_files(vault, db)
        target = root / keyring.KEY_DIR / f"{name}.key"
        target.unlink(missing_ok=True)  # a leftover of an add that failed half way
        write_new_file(target, key_file_data)
        try:
            keyring.write(root, vault.database_key, members)
            db.execute(
                "INSERT INTO analysts (name, public_key, role, created) VALUES (?, ?, ?, ?)",
                (name, public, role, now()),
            )
            keyring.commit(root)
        except BaseException:
            keyring.pending_path(root).unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            raise
    _audit(vault, action="added", name=name, role=role)
    found = account(vault, name)
    assert found is not None
    return found


def remove_analyst(vault: Vault, name: str) -> None:
    """Take the analyst ``name`` off the vault: new database key, not sealed to them."""
    if name == vault.analyst:
        raise AccountError(AccountError.SELF, "you cannot remove your own account")
    with vault.transaction() as db:
        row = db.execute("SELECT role FROM analysts WHERE name = ? AND active", (name,)).fetchone()
        if row is None:
            raise AccountError(AccountError.NO_ACCOUNT, "there is no such analyst")
        if row[0] == "admin" and _admins(db) <= 1:
            raise AccountError(AccountError.LAST_ADMIN, "the vault keeps one admin at least")
        _ensure_key_files(vault, db)
        db.execute(
            "UPDATE analysts SET active = 0, totp_secret = NULL, totp_pending = NULL"
            " WHERE name = ?",
            (name,),
        )
        members = _members(db)
    # The database key changes outside the transaction (PRAGMA rekey cannot run inside one):
    # the account is already inactive, so the removed key opens nothing past this point anyway.
    root = vault.paths.root
    new_key = secrets.token_bytes(32)
    keyring.write(root, new_key, members)
    vault.rekey(new_key)
    keyring.commit(root)
    (root / keyring.KEY_DIR / f"{name}.key").unlink(missing_ok=True)
    _audit(vault, action="removed", name=name)


def set_role(vault: Vault, name: str, role: str) -> None:
    if role not in ROLES:
        raise AccountError(AccountError.NOT_ALLOWED, "unknown role")
    with vault.transaction() as db:
        row = db.execute("SELECT role FROM analysts WHERE name = ? AND active", (name,)).fetchone()
        if row is None:
            raise AccountError(AccountError.NO_ACCOUNT, "there is no such analyst")
        if row[0] == role:
            return
        if row[0] == "admin" and _admins(db) <= 1:
            raise AccountError(AccountError.LAST_ADMIN, "the vault keeps one admin at least")
        db.execute("UPDATE analysts SET role = ? WHERE name = ?", (role, name))
    _audit(vault, action="role", name=name, role=role)


def _members(db: sqlite3.Connection) -> list[tuple[str, AnalystPublicKey]]:
    return [
        (name, AnalystPublicKey.from_line(line))
        for name, line in db.execute(
            "SELECT name, public_key FROM analysts WHERE active ORDER BY name"
        )
    ]


def _admins(db: sqlite3.Connection) -> int:
    (count,) = db.execute(
        "SELECT count(*) FROM analysts WHERE active AND role = 'admin'"
    ).fetchone()
    return int(count)


def _ensure_key_files(vault: Vault, db: sqlite3.Connection) -> None:
    """Before the first keyring: the first analyst's key file gets its place under analysts/."""
    folder = vault.paths.root / keyring.KEY_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    first = db.execute(
        "SELECT a.name FROM analysts a JOIN settings s ON s.name = 'analyst'"
        " AND s.value = a.public_key WHERE a.active"
    ).fetchone()
    if first is not None:
        target = folder / f"{first[0]}.key"
        if not target.exists():
            write_new_file(target, vault.paths.key_file.read_bytes())


def _audit(vault: Vault, **fields: Any) -> None:
    audit.log(vault, "account", **fields)


def key_file_path(vault_root: Path, name: str) -> Path:
    return vault_root / keyring.KEY_DIR / f"{name}.key"
