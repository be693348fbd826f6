"""The crypto package's exceptions: one root, few leaves, messages that reveal nothing.

Callers catch :class:`CryptoError` to handle any failure of this package.  Messages are fixed
strings: they never include key material, plaintext, or which internal check failed, because an
error that says *why* an open failed is an oracle for whoever crafted the input.
"""


class CryptoError(Exception):
    """Root of every exception raised by the crypto package."""


class DecryptionError(CryptoError):
    """An envelope could not be opened.

    Raised for every way opening can fail: no matching key, a malformed or unknown header,
    truncation, a reordered, repeated or altered chunk, bytes after the final chunk, or
    non-canonical padding.  Deliberately one class with one message.
    """

    def __init__(self) -> None:
        super().__init__("the envelope could not be opened")


class InvalidRecipients(CryptoError):
    """The recipient list given to seal an envelope is empty, too long, or holds a bad key."""


class InvalidCodename(CryptoError):
    """A codename is too long, empty, or not made of the expected number of list words."""


class KeyFileError(CryptoError):
    """A key file could not be opened: wrong passphrase, or a damaged or foreign file.

    The two cannot be told apart (authenticated encryption fails the same way), and saying
    which would help whoever guesses passphrases.
    """


class InvalidPublicKey(CryptoError):
    """A public key, or a public key line, is malformed or unusable (a low-order point)."""


class BadSignature(CryptoError):
    """A signed manifest is malformed, not canonical, or not signed by a trusted key."""
