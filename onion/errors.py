"""The onion package's exceptions, and the scrubbing of anything tor or stem says.

Every exception raised on purpose here derives from :class:`OnionError`, whose message is
addressed to the operator: what is wrong, and what to do.  None of them carries a secret: stem's
exception text can quote a whole control-port reply (an ``ADD_ONION`` reply holds the onion
service's private key), so whatever comes from stem or tor goes through :func:`redact` first,
and stem's exceptions are never chained (``raise ... from None``) where a traceback would show
them.
"""

from __future__ import annotations

import re


class OnionError(Exception):
    """Root of every exception the onion package raises on purpose."""


class TorNotInstalled(OnionError):
    """The tor program cannot be found."""


class TorStartError(OnionError):
    """tor was found but did not start (bad data folder, port taken, killed...)."""


class ControlError(OnionError):
    """tor's control interface cannot be reached, refuses our credentials, or went away."""


class OnionKeyError(OnionError):
    """An onion service key file, or the authorised clients' file, is unreadable or damaged."""


class PublishError(OnionError):
    """tor refused to create or remove an onion service."""


class ClientError(OnionError):
    """A pickup client name is invalid, already taken, or unknown."""


REDACTED = "[redacted]"

# Each pattern keeps its ``keep`` group (a label that helps reading the message) and replaces
# the rest of its match.
_SECRETS = [
    # ADD_ONION key blobs and replies: ED25519-V3:<base64>, PrivateKey=..., ClientAuthV3=...
    re.compile(r"(?P<keep>(?i:ED25519-V3|RSA1024|x25519)\s*:\s*)[A-Za-z0-9+/=]{16,}"),
    re.compile(r"(?P<keep>(?i:PrivateKey|ClientAuthV3|ClientAuth)\s*=\s*)\S+"),
    # AUTHENTICATE <hex cookie or "password">, and the SAFECOOKIE exchange.
    re.compile(r"(?P<keep>(?i:AUTHENTICATE)\s+)\S+"),
    re.compile(r"(?P<keep>(?i:SERVERHASH|SERVERNONCE|CLIENTNONCE|CLIENTHASH)\s*=\s*)\S+"),
    # Anything else long enough to be key material (base64, base32 or hex), but onion
    # addresses, which are public: the possessive run cannot shrink to dodge the lookahead.
    re.compile(r"(?P<keep>)[A-Za-z0-9+/]{40,}+={0,2}(?!\.onion)"),
]


def redact(text: str) -> str:
    """``text`` with anything that may be a key, cookie or password replaced by [redacted].

    Onion addresses (56 base32 characters and ``.onion``) are kept: they are public.
    """
    for pattern in _SECRETS:
        text = pattern.sub(lambda match: match.group("keep") + REDACTED, text)
    return text
