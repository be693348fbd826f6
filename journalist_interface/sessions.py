"""Logging in: each analyst's passphrase unlocks their key, which opens the shared vault.

The browser holds a random token in an HttpOnly, SameSite=Strict cookie; this process maps the
token's hash to the session, and the session to the one open :class:`Vault`.  Nothing about the
session is written anywhere: stopping the app logs everyone out.  A session ends on log-out or
after ``idle_minutes`` unused; when the last one ends the vault is closed and every key dropped.
Each session has its own anti-forgery token, which every form carries.

Several analysts may be logged in at once (accounts.py): each session keeps its analyst's key
and name, and acts on the vault through :meth:`Vault.acting_as`, so replies are signed, files
opened and changes recorded as that analyst.  A login names the account (empty: the analyst who
made the vault), then the passphrase, then the TOTP code if the account has one.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from crypto.keys import AnalystKey
from journalist_interface import accounts, audit, keyring
from journalist_interface.errors import VaultError
from journalist_interface.vault import Vault, VaultPaths, unlock_key

COOKIE = "blagh_analyst"
CSRF_FIELD = "csrf"
_TOKEN_BYTES = 32


@dataclass
class AnalystSession:
    key: AnalystKey = field(repr=False)
    analyst: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(_TOKEN_BYTES))
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Sessions:
    """The sessions of one app, and the vault they share while any is open."""

    def __init__(self, vault_path: Path, idle_seconds: float) -> None:
        self._path = vault_path
        self._idle = idle_seconds
        self._sessions: dict[bytes, AnalystSession] = {}
        self._vault: Vault | None = None
        self._lock = threading.Lock()
        # One argon2id at a time: each takes 256 MiB.
        self._login_lock = threading.Lock()

    def login(self, passphrase: str, name: str = "", code: str = "") -> str:
        """Open a session for the account ``name`` (empty: the vault's first analyst); return
        the cookie's token.

        Raises :class:`WrongPassphrase` (nothing opened), :class:`accounts.AccountError` (no
        account for this key, a TOTP code needed or wrong), or a :class:`VaultError`.
        """
        with self._login_lock:
            paths = VaultPaths(self._path)
            key = unlock_key(paths, passphrase, name)
            with self._lock:
                self._expire()
                opened_here = self._vault is None
                if self._vault is None:
                    try:
                        self._vault = Vault(self._path, key)
                    except VaultError:
                        if _outside_keyring(paths, key):
                            raise accounts.AccountError(
                                accounts.AccountError.NO_ACCOUNT,
                                "this key does not open this vault",
                            ) from None
                        raise
                else:
                    salt = paths.salt_file.read_bytes()
                    if not self._vault.same_database_key(
                        keyring.database_keys(paths.root, key, salt)
                    ):  # a key never added, or removed since
                        raise accounts.AccountError(
                            accounts.AccountError.NO_ACCOUNT, "this key does not open this vault"
                        )
                try:
                    account = accounts.check_login(self._vault, key, code)
                except BaseException:
                    if opened_here:
                        self._close_if_unused()
                    raise
                token = secrets.token_urlsafe(_TOKEN_BYTES)
                self._sessions[_hash(token)] = AnalystSession(key, account.name, account.role)
                vault = self._vault.acting_as(key, account.name)
        _audit(vault, "login")
        return token

    def current(self, token: str | None) -> tuple[AnalystSession, Vault] | None:
        """The live session of this cookie and the vault as its analyst, or None."""
        with self._lock:
            self._expire()
            session = self._sessions.get(_hash(token)) if token else None
            if session is None or self._vault is None:
                return None
            session.last_seen = time.monotonic()
            return session, self._vault.acting_as(session.key, session.analyst)

    def logout(self, token: str | None) -> None:
        with self._lock:
            session = self._sessions.pop(_hash(token), None) if token else None
            if session is not None and self._vault is not None:
                _audit(self._vault.acting_as(session.key, session.analyst), "logout")
            self._close_if_unused()

    def end_sessions_of(self, analyst: str) -> None:
        """Log out every session of ``analyst`` (their account was removed)."""
        with self._lock:
            for token, session in list(self._sessions.items()):
                if session.analyst == analyst:
                    del self._sessions[token]
            self._close_if_unused()

    def set_role(self, analyst: str, role: str) -> None:
        with self._lock:
            for session in self._sessions.values():
                if session.analyst == analyst:
                    session.role = role

    def expire(self) -> None:
        """End the sessions unused for too long (and lock the vault if none is left)."""
        with self._lock:
            self._expire()

    def close(self) -> None:
        """End every session and lock the vault (the app is stopping)."""
        with self._lock:
            self._sessions.clear()
            self._close_if_unused()

    def _expire(self) -> None:
        now = time.monotonic()
        for key, session in list(self._sessions.items()):
            if now - session.last_seen > self._idle:
                del self._sessions[key]
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if not self._sessions and self._vault is not None:
            self._vault.close()
            self._vault = None


def _outside_keyring(paths: VaultPaths, key: AnalystKey) -> bool:
    """Whether the vault has a keyring that this key does not open (never added, or removed)."""
    if keyring.read(keyring.path(paths.root)) is None:
        return False
    salt = paths.salt_file.read_bytes()
    return len(keyring.database_keys(paths.root, key, salt)) == 1  # only its own derivation


def _audit(vault: Vault, event: str) -> None:
    audit.log(vault, event)
