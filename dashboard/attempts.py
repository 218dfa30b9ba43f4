"""Wrong tokens per client network: a network that sends too many is refused for a while.

A token is at least 128 bits (:data:`dashboard.settings.MIN_TOKEN_LENGTH`, ``vrp dashboard
token``), so guessing is hopeless whatever the rate; this limit only keeps a guesser from
making the dashboard spend its time on guesses. It never stands in the way of the right token:
a request that carries it passes even from a network that is refused (otherwise anyone who
shares 127.0.0.1 with ``vrp up`` could stop the API's telemetry with ten wrong tokens). Only
wrong tokens are refused: a network that sent :data:`MAX_FAILURES` of them within
:data:`WINDOW_S` gets 429 for every further wrong one until the oldest of those failures is that
old. A request without any token is not a guess and counts for nothing.

Failures are counted per IPv4 address and per IPv6 /64 (one host usually holds a whole /64, so
counting its addresses one by one would give it 2**64 tries). At most :data:`MAX_NETWORKS` are
remembered; past that the one heard from least recently (a wrong token counted or refused) is
forgotten first, so memory stays bounded and a flood of new addresses forgets only the quietest
networks, never all of them.

Hand-written rather than flask-limiter: what is counted is failures only, shared by a form, a
Flask ``before_request`` check and the receiver's own check, in this process's memory.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 300.0
MAX_NETWORKS = 10_000
IPV6_PREFIX = 64


def network_of(address: str | None) -> str:
    """The key failures of ``address`` count under: an IPv4 address or an IPv6 /64.

    An IPv4-mapped IPv6 address counts as its IPv4 address; something that is not an IP
    address (a Unix socket, a test's label) counts as itself.
    """
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class TokenAttempts:
    """Failed token checks per client network (thread-safe, bounded)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Least recently heard from first: the eviction order.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def remembered(self) -> int:
        """How many networks have failures on record."""
        with self._lock:
            return len(self._failures)

    def retry_after(self, address: str | None) -> int:
        """Whole seconds until a wrong token from ``address`` is checked again; 0 when it is now."""
        key = network_of(address)
        now = self._clock()
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return 0
            while failures and failures[0] <= now - WINDOW_S:
                failures.popleft()
            if not failures:
                del self._failures[key]
                return 0
            if len(failures) < MAX_FAILURES:
                return 0
            # A refused network that keeps trying is the last to be forgotten.
            self._failures.move_to_end(key)
            return max(1, math.ceil(failures[0] + WINDOW_S - now))

    def failed(self, address: str | None) -> None:
        """``address`` sent a wrong token."""
        key = network_of(address)
        now = self._clock()
        with self._lock:
            failures = self._failures.pop(key, None) or deque(maxlen=MAX_FAILURES)
            failures.append(now)
            self._failures[key] = failures
            while len(self._failures) > MAX_NETWORKS:
                self._failures.popitem(last=False)


def token_matches(candidate: str | None, token: str) -> bool:
    """``candidate`` is ``token``, compared in constant time."""
    return candidate is not None and hmac.compare_digest(candidate.encode(), token.encode())


def check_bearer(
    authorization: str, token: str, attempts: TokenAttempts, address: str | None
) -> int | None:
    """The one bearer-token check of the dashboard (its pages, its API, the OTLP receiver).

    None when the ``Authorization`` header value carries the bearer ``token``; else how many
    seconds ``address`` must wait before its next guess (a 429), or 0 for a plain refusal (a
    401), after counting the wrong token. A missing header is a refusal that counts nothing.
    """
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and token_matches(given.strip(), token):
        return None
    if not authorization:
        return 0
    wait = attempts.retry_after(address)
    if not wait:
        attempts.failed(address)
    return wait
