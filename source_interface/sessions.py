"""Source sessions: an opaque cookie, state in the store, the source's secret key split in two.

The cookie holds a random token and a random wrapping key.  The store keeps, under the token's
hash, the source's secret key (and, until the source has typed it back, the codename) wrapped
under that key.  A seized store alone reveals no secret key; a stolen cookie alone holds none.
Flask's signed-cookie session is not used: it is readable by anyone who holds the cookie.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import Flask, Request, g, request
from werkzeug.wrappers import Response

from crypto import wrap
from crypto.errors import DecryptionError
from source_interface.store.protocol import ServerStore
from source_interface.store.records import NewSession

SUBMISSION_FIELD = "submission"
"""The report form's one-time submission id (a hidden field): the same form sent twice stores
one report, and the second request is answered with the first's outcome (views/report.py)."""
SESSION_COOKIE = "blagh_session"
CSRF_COOKIE = "blagh_form"
CSRF_FIELD = "form_token"
_TOKEN_BYTES = 32
_SECRET_KEY_BYTES = 32


@dataclass(frozen=True)
class SourceSession:
    token_hash: bytes
    source_id: str
    secret_key: bytes
    pending_codename: str | None
    wrap_key: bytes


def _hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def new_submission_id() -> str:
    """A fresh submission id for one rendering of the report form: 32 random bytes."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def submission_seed(value: str) -> bytes | None:
    """The 32 bytes behind a submission id as the form sent it, or None if it is not one."""
    if len(value) != 43:
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii") + b"=")
    except (ValueError, UnicodeEncodeError):
        return None
    return raw if len(raw) == _TOKEN_BYTES else None


def _derive(seed: bytes, label: bytes) -> bytes:
    return hmac.new(seed, b"blagh " + label, hashlib.sha256).digest()


def submission_key(seed: bytes) -> bytes:
    """What the store keeps of a submission id: a hash that gives back neither the id nor the
    session made from it."""
    return _derive(seed, b"submission")


@dataclass(frozen=True)
class PreparedSession:
    """A session to record with a report (:class:`~source_interface.store.index.NewSession`)
    and the cookie that opens it."""

    row: NewSession
    cookie: str


def _cookie_args(request: Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "Strict", "secure": request.is_secure, "path": "/"}


class Sessions:
    """Creates, reads and ends source sessions; one per app, sharing the app's store."""

    def __init__(self, store: ServerStore, idle_seconds: int) -> None:
        self._store = store
        self._idle = idle_seconds

    def prepare(
        self, secret_key: bytes, pending_codename: str | None, seed: bytes
    ) -> PreparedSession:
        """A new source's session, to be recorded in the transaction that stores its report.

        Its token and wrapping key are derived from the form's submission id (``seed``), which
        only the reporter's page holds: when the same form arrives twice, the second request
        can hand its browser the first one's session (:meth:`resume`), codename and all.
        """
        token, wrap_key = _derive(seed, b"session token"), _derive(seed, b"session wrap key")
        sealed = wrap.wrap(wrap_key, self._plain(secret_key, pending_codename))
        value = base64.urlsafe_b64encode(token + wrap_key).decode("ascii")
        return PreparedSession(NewSession(_hash(token), sealed, self._idle), value)

    def resume(self, request: Request, response: Response, seed: bytes) -> bool:
        """Give this browser the session a report from the same form started, if it is still
        open (not ended, not idle past its lifetime); whether it was."""
        token, wrap_key = _derive(seed, b"session token"), _derive(seed, b"session wrap key")
        if self._store.session(_hash(token), self._idle) is None:
            return False
        self.set_cookie(request, response, base64.urlsafe_b64encode(token + wrap_key).decode())
        return True

    @staticmethod
    def set_cookie(request: Request, response: Response, value: str) -> None:
        response.set_cookie(SESSION_COOKIE, value, **_cookie_args(request))  # type: ignore[arg-type]

    def start(
        self,
        request: Request,
        response: Response,
        source_id: str,
        secret_key: bytes,
        pending_codename: str | None = None,
    ) -> None:
        token, wrap_key = secrets.token_bytes(_TOKEN_BYTES), wrap.new_key()
        sealed = wrap.wrap(wrap_key, self._plain(secret_key, pending_codename))
        self._store.create_session(_hash(token), source_id, sealed, self._idle)
        value = base64.urlsafe_b64encode(token + wrap_key).decode("ascii")
        response.set_cookie(SESSION_COOKIE, value, **_cookie_args(request))  # type: ignore[arg-type]

    def load(self, request: Request) -> SourceSession | None:
        """The live session this request carries, or None (absent, expired, or damaged)."""
        raw = request.cookies.get(SESSION_COOKIE, "")
        try:
            value = base64.urlsafe_b64decode(raw.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(value) != _TOKEN_BYTES + wrap.KEY_SIZE:
            return None
        token, wrap_key = value[:_TOKEN_BYTES], value[_TOKEN_BYTES:]
        stored = self._store.session(_hash(token), self._idle)
        if stored is None:
            return None
        try:
            plain = wrap.unwrap(wrap_key, stored.sealed_secret)
        except DecryptionError:
            return None
        codename = plain[_SECRET_KEY_BYTES:].decode("utf-8") or None
        return SourceSession(
            _hash(token), stored.source_id, plain[:_SECRET_KEY_BYTES], codename, wrap_key
        )

    def forget_codename(self, session: SourceSession) -> None:
        """Drop the codename once the source has shown they wrote it down."""
        sealed = wrap.wrap(session.wrap_key, self._plain(session.secret_key, None))
        self._store.replace_session_secret(session.token_hash, sealed)

    def end(self, request: Request, response: Response, session: SourceSession | None) -> None:
        if session is not None:
            self._store.delete_session(session.token_hash)
        response.delete_cookie(SESSION_COOKIE, **_cookie_args(request))  # type: ignore[arg-type]

    @staticmethod
    def _plain(secret_key: bytes, codename: str | None) -> bytes:
        return secret_key + (codename or "").encode("utf-8")


def form_token(request: Request) -> tuple[str, bool]:
    """The anti-forgery token for this browser's forms, and whether it must be set as a cookie.

    Double-submit: the token is in a SameSite=Strict cookie and in a hidden field of every form;
    another site can neither read the cookie nor make the browser send it.
    """
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) == 43:
        return current, False
    return secrets.token_urlsafe(32), True


def set_form_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, **_cookie_args(request))  # type: ignore[arg-type]


def form_token_valid(request: Request) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = request.form.get(CSRF_FIELD, "")
    return len(cookie) == 43 and hmac.compare_digest(cookie.encode(), field.encode())


def init_app(app: Flask) -> None:
    """Give every template ``form_token`` and set its cookie on the first page that uses it."""

    @app.context_processor
    def inject_form_token() -> dict[str, str]:
        if "form_token" not in g:
            g.form_token, g.form_token_is_new = form_token(request)
        return {"form_token": g.form_token, "form_token_field": CSRF_FIELD}

    @app.after_request
    def remember_form_token(response: Response) -> Response:
        if g.get("form_token_is_new"):
            set_form_token(request, response, g.form_token)
        return response
