"""What a refused form shows after its redirect: an encrypted, short-lived cookie.

A refused codename (a failed login, a codename typed back wrong) is answered with a redirect to
the form's page, not with a page of its own: a page that answers a POST cannot be gone back to
(Firefox shows "Document Expired"), and reloading it sends the codename again.  The page after
the redirect shows the error and what was typed (issue 14).  What was typed is a codename, or
nearly: it goes in no URL and in no cookie that is only signed (readable by anyone who holds
it, SecureDrop's mistake).  It is sealed (crypto.wrap: XSalsa20-Poly1305) under a key derived
from the instance's login hash key, which never leaves the server; the cookie lives ten minutes
at most, for this site only (SameSite=Strict, HttpOnly), and is deleted by the page that reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from flask import Request
from werkzeug.wrappers import Response

from crypto import wrap
from crypto.errors import DecryptionError

FLASH_COOKIE = "blagh_flash"
MAX_AGE_SECONDS = 600
MAX_COOKIE_CHARS = 3000
"""Far above what a form here puts in one (a codename is capped at 256 characters)."""


def _key(login_hash_key: bytes) -> bytes:
    return hmac.new(login_hash_key, b"blagh flash cookie", hashlib.sha256).digest()


def _cookie_args(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": request.is_secure, "path": "/"}


def keep(
    request: Request, response: Response, login_hash_key: bytes, page: str, data: dict[str, Any]
) -> None:
    """Give ``response`` the cookie that carries ``data`` to ``page``'s next view."""
    plain = json.dumps({"page": page, **data}, ensure_ascii=False).encode("utf-8")
    value = base64.urlsafe_b64encode(wrap.wrap(_key(login_hash_key), plain)).decode("ascii")
    if len(value) <= MAX_COOKIE_CHARS:
        response.set_cookie(FLASH_COOKIE, value, max_age=MAX_AGE_SECONDS, **_cookie_args(request))


def take(
    request: Request, response: Response, login_hash_key: bytes, page: str
) -> dict[str, Any] | None:
    """What was kept for ``page``, or None; the cookie is deleted either way."""
    raw = request.cookies.get(FLASH_COOKIE)
    if raw is None:
        return None
    response.delete_cookie(FLASH_COOKIE, **_cookie_args(request))
    try:
        sealed = base64.urlsafe_b64decode(raw.encode("ascii"))
        data = json.loads(wrap.unwrap(_key(login_hash_key), sealed).decode("utf-8"))
    except (ValueError, UnicodeError, DecryptionError):
        return None
    if not isinstance(data, dict) or data.get("page") != page:
        return None
    return data
