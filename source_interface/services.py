"""The one object views share: config, store, keys and the limits on expensive work."""

from dataclasses import dataclass
from importlib import resources

from flask import current_app

from blagh.config import Config
from blagh.offload import Busy, Offload
from crypto import codename
from crypto.codename import SourceKeys
from source_interface.errors import ServerBusy
from source_interface.sessions import Sessions
from source_interface.store.protocol import ServerStore
from source_interface.throttle import FailureThrottle

DRAFT_LIFETIME_SECONDS = 6 * 3600

DENYLIST = "codename-denylist.txt"


@dataclass(frozen=True)
class Services:
    """What the views share: built once per app, read-only but for the store's contents."""

    config: Config
    store: ServerStore
    sessions: Sessions
    analysts: tuple[bytes, ...]
    instance_salt: bytes
    login_hash_key: bytes
    wordlist: tuple[str, ...]
    retired_words: tuple[str, ...]
    derivations: Offload
    login_failures: FailureThrottle

    def derive(self, words: str) -> SourceKeys:
        """The source's keys for a codename: argon2id (64 MiB, a fraction of a second) on the
        derivation threads, never on the event loop; :class:`ServerBusy` (a 503 page) at once
        when they and their queue are full."""
        try:
            return self.derivations.run(codename.derive, words, self.instance_salt)
        except Busy:
            raise ServerBusy() from None

    @property
    def accepted_words(self) -> tuple[str, ...]:
        """Every word a typed codename may hold: the drawn ones and the retired ones, so a
        codename given out before a word was retired still logs in."""
        return self.wordlist + self.retired_words


def load_wordlist() -> tuple[str, ...]:
    """The words new codenames are drawn from: the EFF large word list (as shipped by the
    xkcdpass package) without our deny-list, in the list's order (docs/keys.md)."""
    denied = frozenset(load_denylist())
    return tuple(word for word in _eff_words() if word not in denied)


def load_retired_words() -> tuple[str, ...]:
    """The deny-listed EFF words: never drawn again, still accepted when typed back."""
    denied = frozenset(load_denylist())
    return tuple(word for word in _eff_words() if word in denied)


def load_denylist() -> tuple[str, ...]:
    """Our deny-list (codename-denylist.txt): words distressing to read in a codename."""
    text = (resources.files("source_interface") / DENYLIST).read_text("utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)


def _eff_words() -> tuple[str, ...]:
    text = (resources.files("xkcdpass") / "static" / "eff-long").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def services() -> Services:
    """This app's services, for views."""
    found: Services = current_app.extensions["blagh"]
    return found
