"""Signed-in browsers, so that signing out ends a session for good.

Each sign-in gets a random id that goes into the signed cookie; the id is valid while it is in
:class:`Sessions`. Signing out forgets it, so a copy of the cookie replayed later is refused, as
is every cookie once the dashboard restarts (browsers sign in again). Only a sign-in with the
right token adds an id, and at most :data:`MAX_SESSIONS` are kept (the oldest sign-in is
forgotten first), so memory stays bounded.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_SESSIONS = 10_000


class Sessions:
    """Open session ids and when each expires (thread-safe, bounded)."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session id, valid for ``max_age_s`` or until :meth:`close`."""
        session_id = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            self._expiry[session_id] = now + self._max_age_s
            while len(self._expiry) > MAX_SESSIONS:
                self._expiry.popitem(last=False)
        return session_id

    def is_open(self, session_id: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(session_id)
        return expiry is not None and expiry > self._clock()

    def close(self, session_id: str) -> None:
        with self._lock:
            self._expiry.pop(session_id, None)
