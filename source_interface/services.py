"""The one object views share: config, store, keys and the limits on expensive work."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

from flask import current_app

from blagh.config import Config
from source_interface.errors import ServerBusy
from source_interface.sessions import Sessions
from source_interface.store import Store
from source_interface.throttle import FailureThrottle

DERIVATIONS_PER_PROCESS = 2
DERIVATION_WAIT_SECONDS = 20
DRAFT_LIFETIME_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Services:
    """What the views share: built once per app, read-only but for the store's contents."""

    config: Config
    store: Store
    sessions: Sessions
    analysts: tuple[bytes, ...]
    instance_salt: bytes
    login_hash_key: bytes
    wordlist: tuple[str, ...]
    derivation_slots: threading.BoundedSemaphore
    login_failures: FailureThrottle

    @contextmanager
    def derivation(self) -> Iterator[None]:
        """Bound concurrent argon2id derivations (64 MiB each) in this process."""
        if not self.derivation_slots.acquire(timeout=DERIVATION_WAIT_SECONDS):
            raise ServerBusy()
        try:
            yield
        finally:
            self.derivation_slots.release()


def load_wordlist() -> tuple[str, ...]:
    """The EFF large word list, as shipped by the xkcdpass package."""
    text = (resources.files("xkcdpass") / "static" / "eff-long").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def services() -> Services:
    """This app's services, for views."""
    found: Services = current_app.extensions["blagh"]
    return found
