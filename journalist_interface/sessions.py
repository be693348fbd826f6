"""Logging in: the passphrase unlocks the vault, and the key stays in this process's memory only.

The browser holds a random token in an HttpOnly, SameSite=Strict cookie; this process maps the
token's hash to the session, and the session to the one open :class:`Vault`.  Nothing about the
session is written anywhere: stopping the app logs everyone out.  A session ends on log-out or
after ``idle_minutes`` unused; when the last one ends the vault is closed and the key dropped.
Each session has its own anti-forgery token, which every form carries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from journalist_interface.errors import WrongPassphrase
from journalist_interface.vault import Vault, VaultPaths, unlock_key

COOKIE = "blagh_analyst"
CSRF_FIELD = "csrf"
_TOKEN_BYTES = 32


@dataclass
class AnalystSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(_TOKEN_BYTES))
    last_seen: float = field(default_factory=time.monotonic)


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

    def login(self, passphrase: str) -> str:
        """Open a session with the analyst's passphrase; return the cookie's token.

        Raises :class:`WrongPassphrase` (nothing opened) or a :class:`VaultError`.
        """
        with self._login_lock:
            paths = VaultPaths(self._path)
            key = unlock_key(paths, passphrase)
            with self._lock:
                self._expire()
                if self._vault is None:
                    self._vault = Vault(self._path, key)
                elif not hmac.compare_digest(
                    key.encryption_secret, self._vault.key.encryption_secret
                ):
                    raise WrongPassphrase()  # the key file was replaced since the vault opened
                token = secrets.token_urlsafe(_TOKEN_BYTES)
                self._sessions[_hash(token)] = AnalystSession()
                return token

    def current(self, token: str | None) -> tuple[AnalystSession, Vault] | None:
        """The live session of this cookie and the vault, or None."""
        with self._lock:
            self._expire()
            session = self._sessions.get(_hash(token)) if token else None
            if session is None or self._vault is None:
                return None
            session.last_seen = time.monotonic()
            return session, self._vault

    def logout(self, token: str | None) -> None:
        with self._lock:
            if token:
                self._sessions.pop(_hash(token), None)
            self._close_if_unused()

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
