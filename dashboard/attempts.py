"""Wrong tokens per client address: an address that sends too many is refused for a while.

``VRP_DASHBOARD_TOKEN`` is chosen by whoever deploys the dashboard and may be short; without a
limit, anyone who can reach the dashboard could try tokens as fast as it answers. An address
that sent :data:`MAX_FAILURES` wrong tokens (on the login form, as a bearer token to ``/api/``
or to the receiver) within :data:`WINDOW_S` is refused every token check, right or wrong,
until the oldest of those failures is that old: a right guess during the block would otherwise
tell the guesser. A request without any token is not a guess and counts for nothing, and a
browser already signed in keeps its cookie.

Hand-written rather than flask-limiter: what is counted is failures only, shared by a form, a
Flask ``before_request`` check and the receiver's own check, in this process's memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 300.0
# Addresses remembered at most; past this, those whose failures have all expired are dropped,
# then, if that is not enough, all of them (memory stays bounded whatever the traffic).
MAX_ADDRESSES = 10_000


class TokenAttempts:
    """Failed token checks per client address (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str | None) -> int:
        """Whole seconds until ``address`` may try a token again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            failures = self._failures.get(address or "")
            if failures is None:
                return 0
            while failures and failures[0] <= now - WINDOW_S:
                failures.popleft()
            if not failures:
                del self._failures[address or ""]
                return 0
            if len(failures) < MAX_FAILURES:
                return 0
            return max(1, math.ceil(failures[0] + WINDOW_S - now))

    def failed(self, address: str | None) -> None:
        """``address`` sent a wrong token."""
        now = self._clock()
        with self._lock:
            failures = self._failures.setdefault(address or "", deque(maxlen=MAX_FAILURES))
            failures.append(now)
            if len(self._failures) > MAX_ADDRESSES:
                self._forget_expired(now)

    def _forget_expired(self, now: float) -> None:
        self._failures = {
            address: failures
            for address, failures in self._failures.items()
            if failures[-1] > now - WINDOW_S
        }
        if len(self._failures) > MAX_ADDRESSES:
            self._failures = {}
