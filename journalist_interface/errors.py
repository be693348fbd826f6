"""The workstation's exceptions: one root, so the CLI and the app each turn any into one message.

The root derives from :class:`blagh.errors.BlaghError`, so ``blagh workstation`` prints them as
the one line every ``blagh`` command prints.  Messages say what is wrong and what to do, and
never hold a passphrase, a key or anything a report says.
"""

from blagh.errors import BlaghError


class WorkstationError(BlaghError):
    """Root of every exception the workstation raises on purpose."""


class VaultError(WorkstationError):
    """A vault folder is missing, incomplete, damaged, or already in use."""


class WrongPassphrase(WorkstationError):
    """The passphrase does not open the vault's key file: nothing was opened."""

    def __init__(self) -> None:
        super().__init__(
            "wrong passphrase: nothing was opened. Type the passphrase of the analyst key "
            "file this vault was made with"
        )


class ImportRefused(WorkstationError):
    """A pickup bundle failed a check: it was refused whole and the vault is unchanged."""


class NothingToSend(WorkstationError):
    """No reply, acknowledgement or deletion is waiting: no reply bundle was made."""
