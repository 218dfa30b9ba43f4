"""Connection-pool metrics and leak detection for one engine.

Metrics (names and attributes per DESIGN.md, all with ``db.client.connection.pool.name``):

* ``db.client.connection.count`` by ``db.client.connection.state`` (``idle``/``used``): an
  asynchronous up-down counter observed when metrics are collected, from each connection's
  state as the pool's ``connect``, ``checkout``, ``checkin``, ``close`` and ``detach`` events
  track it, so the event orders SQLAlchemy produces for invalidation (close while checked out,
  then a check-in of the dead record) never count a connection twice. A detached pool reports
  zero until it is garbage-collected.
* ``db.client.connection.max``: pool_size + max_overflow, added once, removed on detach.
* ``db.client.connection.wait_time``: time to obtain a connection from the pool. No pool event
  fires *before* a checkout starts (``checkout`` fires at its end), so the measurement wraps
  the ``connect`` method of the engine's pool *instance*, which ``Engine.raw_connection`` calls
  for every connection a ``Connection``/``Session`` takes. An instance attribute, not a pool
  subclass, so that it works on an engine the application created with any pool class;
  ``engine.dispose()`` swaps in a new pool, and the ``engine_disposed`` event wraps that one too.
  The time includes waiting for a free slot, opening a new connection and pre-ping; a checkout
  that times out is not a wait sample but a ``db.client.connection.timeouts`` increment.
* ``vrp.db.connection.leaks``: connections held longer than ``leak_seconds``.

Leak scheme: a checkout stores ``time.monotonic()`` and the first stack frame outside
SQLAlchemy, this package and :mod:`contextlib` (a cheap frame walk; the full stack, which costs
far more, only when ``leak_stack`` is set). A daemon thread per pool, started on the first
checkout and stopped by :meth:`PoolTelemetry.detach`, wakes every ``min(leak_seconds / 2, 5)``
seconds and reports each checkout held past ``leak_seconds`` exactly once: one WARNING on the
``instrumentation.pool`` logger and one counter increment. A sleeping thread costs nothing per
checkout, unlike a timer per checkout, and catches a leak even when the pool sees no further
traffic, unlike a check piggy-backed on later checkouts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import sqlalchemy as sa
from opentelemetry import metrics
from sqlalchemy import event
from sqlalchemy.pool import (
    ConnectionPoolEntry,
    Pool,
    PoolProxiedConnection,
    QueuePool,
    SingletonThreadPool,
    StaticPool,
)

from instrumentation import conventions
from instrumentation.bound import BoundHistogram
from instrumentation.failures import telemetry_failed

_log = logging.getLogger(__name__)

# Bucket boundaries recommended by the semantic conventions for connection wait/use times.
WAIT_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

_LIBRARY_PREFIXES = (
    os.path.dirname(sa.__file__) + os.sep,
    os.path.dirname(__file__) + os.sep,
    contextlib.__file__,
)

_OWNER = "_instrumentation_pool_telemetry"

_EVENTS = ("connect", "checkout", "checkin", "close", "detach", "invalidate")


def _taking_frame(frame: FrameType | None) -> FrameType | None:
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_PREFIXES):
        frame = frame.f_back
    return frame


@dataclass(slots=True)
class _Checkout:
    since: float
    taken_at: str
    stack: traceback.StackSummary | None = None
    reported: bool = False


def _observe_counts(
    ref: weakref.ref[PoolTelemetry],
) -> Callable[[metrics.CallbackOptions], list[metrics.Observation]]:
    def observe(options: metrics.CallbackOptions) -> list[metrics.Observation]:
        telemetry = ref()
        if telemetry is None:
            return []
        idle, used = telemetry.connection_counts()
        return [
            metrics.Observation(idle, telemetry._idle_attributes),
            metrics.Observation(used, telemetry._used_attributes),
        ]

    return observe


def _watch(ref: weakref.ref[PoolTelemetry], stop: threading.Event, interval: float) -> None:
    # Holds its PoolTelemetry weakly: a running thread is a GC root, and the telemetry reaches the
    # engine, whose listeners reach the Database, which could then never be collected.
    while not stop.wait(interval):
        telemetry = ref()
        if telemetry is None:
            return
        try:
            telemetry.report_leaks()
        except Exception:
            telemetry_failed("pool leak check")
        del telemetry


def max_connections(pool: Pool) -> int | None:
    """The most connections ``pool`` opens at once, or ``None`` when it sets no bound."""
    if isinstance(pool, StaticPool | SingletonThreadPool):
        return 1
    if isinstance(pool, QueuePool) and pool._max_overflow >= 0:
        return pool.size() + pool._max_overflow
    return None


class PoolTelemetry:
    """Pool metrics and leak detection for one pool name.

    :meth:`attach` it to an engine; ``max_connections`` is ``None`` for pools without a bound
    (see :func:`max_connections`); ``leak_seconds <= 0`` disables leak detection.
    """

    def __init__(
        self,
        *,
        meter: metrics.Meter,
        pool_name: str,
        max_connections: int | None,
        leak_seconds: float,
        leak_stack: bool,
    ) -> None:
        self.pool_name = pool_name
        self._max_connections = max_connections
        self._leak_seconds = leak_seconds
        self._leak_stack = leak_stack
        self._attributes = {conventions.DB_CLIENT_CONNECTION_POOL_NAME: pool_name}
        self._idle_attributes = {
            **self._attributes,
            conventions.DB_CLIENT_CONNECTION_STATE: conventions.CONNECTION_STATE_IDLE,
        }
        self._used_attributes = {
            **self._attributes,
            conventions.DB_CLIENT_CONNECTION_STATE: conventions.CONNECTION_STATE_USED,
        }
        # Observed at collection time from the tracked states: a checkout then costs no metric
        # update at all, and the callback holds this object only weakly.
        meter.create_observable_up_down_counter(
            conventions.DB_CLIENT_CONNECTION_COUNT,
            callbacks=[_observe_counts(weakref.ref(self))],
            unit="{connection}",
            description="Connections currently in the pool, by state.",
        )
        self._create_instruments(meter)
        self._lock = threading.Lock()
        self._idle: set[ConnectionPoolEntry] = set()
        self._used: dict[ConnectionPoolEntry, _Checkout] = {}
        self._engine: sa.Engine | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _create_instruments(self, meter: metrics.Meter) -> None:
        self._max = meter.create_up_down_counter(
            conventions.DB_CLIENT_CONNECTION_MAX,
            unit="{connection}",
            description="Most open connections the pool allows.",
        )
        self._wait_time = meter.create_histogram(
            conventions.DB_CLIENT_CONNECTION_WAIT_TIME,
            unit="s",
            description="Time it took to obtain a connection from the pool.",
            explicit_bucket_boundaries_advisory=WAIT_TIME_BUCKETS,
        )
        self._wait_point = BoundHistogram(self._wait_time, self._attributes)
        self._timeouts = meter.create_counter(
            conventions.DB_CLIENT_CONNECTION_TIMEOUTS,
            unit="{timeout}",
            description="Checkouts that gave up after pool_timeout.",
        )
        self._leaks = meter.create_counter(
            conventions.VRP_DB_CONNECTION_LEAKS,
            unit="{connection}",
            description="Checkouts held longer than leak_seconds.",
        )

    def rebind(self, meter: metrics.Meter) -> None:
        """Record into ``meter``'s instruments from now on (see :mod:`instrumentation.providers`).

        The connection count stays observed by the instrument made first: a proxy one turns
        into the installed provider's with its callback, and a provider keeps one callback set
        per instrument name. The maximum is published again, as a proxy dropped it.
        """
        self._create_instruments(meter)
        if self._engine is not None and self._max_connections is not None:
            self._guarded(self._max.add, self._max_connections, self._attributes)

    def attach(self, engine: sa.Engine) -> None:
        """Start listening on ``engine``'s pool events and publish the connection maximum."""
        for name in _EVENTS:
            event.listen(engine, name, getattr(self, f"_on_{name}"))
        event.listen(engine, "engine_disposed", self._on_engine_disposed)
        self._engine = engine
        self._time_connect(engine.pool)
        if self._max_connections is not None:
            self._max.add(self._max_connections, self._attributes)

    def detach(self) -> None:
        """Stop listening and watching; take this pool's connections out of the metrics.

        Idempotent. Connections still checked out are subtracted from the count as well, so a
        disposed pool leaves every series of its name at zero.
        """
        self.stop_watcher()
        engine, self._engine = self._engine, None
        if engine is None:
            return
        for name in _EVENTS:
            event.remove(engine, name, getattr(self, f"_on_{name}"))
        event.remove(engine, "engine_disposed", self._on_engine_disposed)
        # Only our own wrapper is taken off: one installed over it stays.
        if getattr(engine.pool.connect, _OWNER, None) is self:
            del engine.pool.connect
        with self._lock:
            self._idle.clear()
            self._used.clear()
        if self._max_connections is not None:
            self._guarded(self._max.add, -self._max_connections, self._attributes)

    @property
    def stop_signal(self) -> Callable[[], None]:
        """Stops the watcher without a reference to this object (for ``weakref.finalize``)."""
        return self._stop.set

    def stop_watcher(self) -> None:
        """Stop the leak-watch thread if it runs; safe to call from any thread, repeatedly."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)

    def connection_counts(self) -> tuple[int, int]:
        """``(idle, used)`` connections as the pool events report them."""
        with self._lock:
            return len(self._idle), len(self._used)

    def _time_connect(self, pool: Pool) -> None:
        # An instance attribute: a pool of another engine sharing the class is untouched, and
        # detach recognises its own wrapper by the owner it carries.
        connect = type(pool).connect.__get__(pool)
        timed = self._timed_connect

        def timed_connect() -> PoolProxiedConnection:
            return timed(connect)

        setattr(timed_connect, _OWNER, self)
        pool.connect = timed_connect  # type: ignore[method-assign]

    def _on_engine_disposed(self, engine: sa.Engine) -> None:
        try:
            self._time_connect(engine.pool)
        except Exception:
            telemetry_failed("pool engine_disposed")

    def _timed_connect(self, connect: Callable[[], PoolProxiedConnection]) -> PoolProxiedConnection:
        """Call ``connect`` (a pool checkout), recording its wait time or its timeout."""
        started = time.perf_counter()
        try:
            connection = connect()
        except sa.exc.TimeoutError:
            if self._engine is not None:
                self._guarded(self._timeouts.add, 1, self._attributes)
            raise
        if self._engine is not None:
            try:
                self._wait_point.record(time.perf_counter() - started)
            except Exception:
                telemetry_failed("pool wait_time")
        return connection

    def _guarded(self, record: Any, value: float, attributes: dict[str, str]) -> None:
        try:
            record(value, attributes)
        except Exception:
            telemetry_failed("pool metric")

    def _on_connect(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        with self._lock:
            if record in self._used or record in self._idle:
                return
            self._idle.add(record)

    def _on_checkout(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        try:
            checkout = self._describe_checkout()
        except Exception:
            telemetry_failed("pool checkout")
            checkout = _Checkout(time.monotonic(), "unknown")
        with self._lock:
            self._idle.discard(record)
            self._used[record] = checkout
        if self._watcher is None and self._leak_seconds > 0:
            self._start_watcher()

    def _on_checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        with self._lock:
            was_used = self._used.pop(record, None) is not None
            # A connection invalidated while checked out comes back without a DBAPI connection.
            if was_used and dbapi_connection is not None:
                self._idle.add(record)

    def _on_close(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        with self._lock:
            self._used.pop(record, None)
            self._idle.discard(record)

    def _on_detach(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        with self._lock:
            self._used.pop(record, None)

    def _on_invalidate(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, exception: BaseException | None
    ) -> None:
        _log.warning(
            "database connection invalidated in pool %r: %s",
            self.pool_name,
            type(exception).__name__ if exception is not None else "invalidated on request",
            extra={"pool_name": self.pool_name},
        )

    def _describe_checkout(self) -> _Checkout:
        taking = _taking_frame(sys._getframe(1))
        if taking is None:
            return _Checkout(time.monotonic(), "unknown")
        code = taking.f_code
        checkout = _Checkout(
            time.monotonic(), f"{code.co_filename}:{taking.f_lineno} in {code.co_name}"
        )
        if self._leak_stack:
            stack = traceback.StackSummary.extract(traceback.walk_stack(taking), lookup_lines=False)
            stack.reverse()
            checkout.stack = stack
        return checkout

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None or self._stop.is_set():
                return
            self._watcher = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._stop, min(self._leak_seconds / 2, 5.0)),
                name=f"instrumentation-leak-watch {self.pool_name}",
                daemon=True,
            )
            self._watcher.start()

    def report_leaks(self) -> int:
        """Report every checkout held past ``leak_seconds`` and not reported yet; return how many.

        The watcher thread calls this; it is public so that a caller can force a check.
        """
        now = time.monotonic()
        with self._lock:
            leaked = [
                c
                for c in self._used.values()
                if not c.reported and now - c.since > self._leak_seconds
            ]
            for checkout in leaked:
                checkout.reported = True
        for checkout in leaked:
            held = now - checkout.since
            extra: dict[str, Any] = {
                "pool_name": self.pool_name,
                "held_seconds": round(held, 3),
                "taken_at": checkout.taken_at,
            }
            if checkout.stack is not None:
                extra["stack"] = "".join(checkout.stack.format())
            _log.warning(
                "database connection from pool %r held for %.1fs without being returned; "
                "taken at %s",
                self.pool_name,
                held,
                checkout.taken_at,
                extra=extra,
            )
            self._guarded(self._leaks.add, 1, self._attributes)
        return len(leaked)
