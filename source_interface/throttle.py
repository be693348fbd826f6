"""Slowing down repeated failed codename logins, without knowing who is failing.

The server keeps no addresses, so failures are counted for the whole worker: after a burst of
failures every further failed attempt waits a little, up to a cap.  A codename has about 90
bits, so this is against noisy guessing and load, not a last line of defence.
"""

import threading
import time
from collections import deque

WINDOW_SECONDS = 60.0
FREE_FAILURES = 10
DELAY_PER_FAILURE = 0.2
MAX_DELAY = 3.0


class FailureThrottle:
    def __init__(self) -> None:
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def record_failure(self) -> float:
        """Count a failure; return how long the failed attempt should be held back (s)."""
        now = time.monotonic()
        with self._lock:
            self._failures.append(now)
            while self._failures and self._failures[0] < now - WINDOW_SECONDS:
                self._failures.popleft()
            excess = len(self._failures) - FREE_FAILURES
        return min(MAX_DELAY, max(0.0, excess * DELAY_PER_FAILURE))
