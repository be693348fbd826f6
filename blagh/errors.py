"""The blagh package's exceptions: one root, so the CLI can turn any of them into one line.

Messages are addressed to the person running the command: they say what is wrong and what to
do about it, and never include secrets (keys, passphrases, report data).
"""


class BlaghError(Exception):
    """Root of every exception the blagh package raises on purpose."""


class ConfigError(BlaghError):
    """The configuration file is missing, unreadable, not TOML, or holds an invalid setting."""


class SetupError(BlaghError):
    """The data directory cannot be created, or what it holds is missing or unsafe."""
