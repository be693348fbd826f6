"""Transfer stations' bearer tokens for the pickup API: made once, kept only as a hash.

A token is ``blagh-pickup-v1-`` and 64 hex digits (256 random bits), shown once by ``blagh
pickup-token add NAME``.  The store keeps its SHA-256 under the station's name: a plain hash
is enough for a random secret of that size, and a seized server yields no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from blagh.errors import BlaghError

TOKEN_PREFIX = "blagh-pickup-v1-"  # noqa: S105 — a prefix, not a secret
_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


class TokenError(BlaghError):
    """A token or a token's name is not usable."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_hex(32)


def token_hash(token: str) -> bytes:
    """What the store keeps of a token; any text can be hashed (a wrong token finds nothing)."""
    return hashlib.sha256(token.encode("utf-8", errors="replace")).digest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TokenError(
            f"{name!r} is not a usable token name: use 1 to 40 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. station-1)"
        )
    return name


def parse_token(text: str, where: str) -> str:
    """The token in ``text`` (its first line), or :class:`TokenError` naming ``where``."""
    token = text.split("\n", 1)[0].strip()
    if not _TOKEN.fullmatch(token):
        raise TokenError(
            f"{where} holds no pickup token: it should be the line `blagh pickup-token add` "
            f"printed ({TOKEN_PREFIX}…)"
        )
    return token
