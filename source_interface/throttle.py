"""Refusing codename logins for a minute after a burst of failures, without knowing who fails.

The server keeps no addresses, so failures are counted for the whole worker.  Past
:data:`FREE_FAILURES` wrong codenames in a minute, further logins are answered at once with a
"too many attempts, wait a minute" page (429), before any derivation: a request never sleeps
holding anything.  A codename has about 90 bits, so this is against noisy guessing and the
CPU it burns, not a last line of defence; the price, that a flood of wrong codenames delays
honest logins by a minute, is paid by logins only: reports and every other page are untouched.
"""

import threading
import time
from collections import deque

from flask_babel import gettext as _

WINDOW_SECONDS = 60.0
FREE_FAILURES = 30


class FailureThrottle:
    def __init__(self, free_failures: int = FREE_FAILURES, window: float = WINDOW_SECONDS) -> None:
        self._free = free_failures
        self._window = window
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        while self._failures and self._failures[0] < now - self._window:
            self._failures.popleft()

    def record_failure(self) -> None:
        """Count a failed login (a codename that matched nobody)."""
        now = time.monotonic()
        with self._lock:
            self._forget_old(now)
            self._failures.append(now)

    def exceeded(self) -> bool:
        """Whether logins must be refused now (too many failures in the last window)."""
        with self._lock:
            self._forget_old(time.monotonic())
            return len(self._failures) >= self._free


def too_many_logins() -> str:
    """What a reporter reads while logins are refused (in the request's language)."""
    return str(
        _(
            "Too many wrong codenames reached this site in the last minute, so logins are "
            "paused. Your codename and your reports are safe: wait a minute, then log in again."
        )
    )
