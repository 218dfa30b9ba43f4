"""Group commit: one writer thread per store turns concurrent requests into few transactions.

Each receiver request hands its decoded records to :meth:`GroupWriter.submit` and waits until
they are committed (so a 200 still means "stored and readable"). The writer takes whatever
requests queued up meanwhile, up to :data:`MAX_GROUP_RECORDS` records, and writes each signal's
records in one transaction: the commit, the rollup read-merge-write and the index pages touched
are paid once per group instead of once per request, and while SQLite works (it releases the
GIL) the request threads decode the next bodies.

Request threads decode one at a time (:meth:`GroupWriter.decode_slot`): the writer spends most
of its time in SQLite without the GIL, and each time it takes the GIL back it waits behind every
thread that runs Python; with one decoding thread it waits behind one. While a request is being
decoded, the writer waits up to :data:`GROUP_LINGER_S` for it to make a group of at least
:data:`MIN_GROUP_RECORDS` records: a commit and the rollups' read-merge-write cost the same for
one request as for eight.

If a group's transaction fails, each of its requests is written again alone, so that records one
request got past validation cannot fail the others. A request that still fails alone gets the
store's error when the store itself failed (locked, full, unreachable: the receiver answers 503)
and :class:`~dashboard.errors.RecordsRefusedError` otherwise (its records were the problem).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dashboard.errors import RecordsRefusedError
from dashboard.store import PreparedSpans, TelemetryStore

logger = logging.getLogger(__name__)
MAX_GROUP_RECORDS = 8192
MIN_GROUP_RECORDS = 2048
GROUP_LINGER_S = 0.02
_WRITERS = {"spans": "write_spans", "logs": "write_logs", "metrics": "write_metrics"}
# Errors that say the store cannot be written now, whatever the records: retrying may succeed.
_STORE_FAILURES = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.InternalError,
    sa.exc.ProgrammingError,
    sa.exc.DisconnectionError,
)


@dataclass
class _Pending:
    signal: str
    count: int
    # Logs and metrics: the records. Spans: none, what prepare_spans derived of them instead.
    records: list[Any]
    prepared: PreparedSpans | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupWriter:
    """Serialises and groups the writes of one :class:`TelemetryStore`."""

    def __init__(self, store: TelemetryStore) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # A lock, not a semaphore: the threads waiting for it wait in C, without the GIL.
        self._decode_slot = threading.Lock()
        self._decoding = 0

    @contextmanager
    def decode_slot(self) -> Iterator[None]:
        """Hold the one decoding slot while decoding a request's body (see the module docstring).

        The writer knows a request is on its way while the slot is held, and waits for it
        (up to :data:`GROUP_LINGER_S`) rather than committing a small group.
        """
        with self._decode_slot:
            with self._lock:
                self._decoding += 1
            try:
                yield
            finally:
                with self._lock:
                    self._decoding -= 1

    def submit(self, signal: str, records: list[Any]) -> None:
        """Write ``records`` of ``signal`` ("spans", "logs", "metrics"); return once committed.

        Raises what the store raised for the group the records were written in. Span records
        are not kept while waiting, only their rows and what else the store derives of them:
        a caller that holds no reference of its own lets them go before the wait (in the
        receiver, the records of the requests queued at once were most of what the garbage
        collector scanned, and took a fifth of its time).
        """
        pending = self.prepare(signal, records)
        del records
        self.commit(pending)

    def prepare(self, signal: str, records: list[Any]) -> _Pending | None:
        """The first half of :meth:`submit`: what the writer needs of ``records``.

        Spans are prepared here, on the calling thread (see :meth:`submit`).
        """
        if not records:
            return None
        if signal == "spans":
            # Built here, on the request's thread, while the writer thread writes others.
            pending = _Pending(signal, len(records), [], self._store.prepare_spans(records))
        else:
            pending = _Pending(signal, len(records), records)
        return pending

    def commit(self, pending: _Pending | None) -> None:
        """The second half of :meth:`submit`: hand ``pending`` to the writer and wait."""
        if pending is None:
            return
        self._ensure_thread()
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            self._store.stop_checkpoints()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._store.start_checkpoints()
                self._thread = threading.Thread(
                    target=self._run, name="telemetry-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            size = first.count
            stop = False
            deadline = time.monotonic() + GROUP_LINGER_S
            while size < MAX_GROUP_RECORDS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if size >= MIN_GROUP_RECORDS or not self._decoding or left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=min(left, 0.002))
                    except queue.Empty:
                        continue
                if item is None:
                    stop = True
                    break
                group.append(item)
                size += item.count
            self._write(group)
            if stop:
                return

    def _write(self, group: list[_Pending]) -> None:
        for signal in _WRITERS:
            members = [p for p in group if p.signal == signal]
            if not members:
                continue
            try:
                self._write_signal(signal, members)
            except Exception as exc:  # handed to the waiting requests, alone if several
                if len(members) == 1:
                    self._fail(members[0], exc)
                else:
                    for p in members:
                        try:
                            self._write_signal(signal, [p])
                        except Exception as alone:  # this request's own failure
                            self._fail(p, alone)
            for p in members:
                p.done.set()

    def _write_signal(self, signal: str, members: list[_Pending]) -> None:
        if signal == "spans":
            prepared = [p.prepared for p in members if p.prepared is not None]
            self._store.write_prepared_spans(prepared)
        else:
            records = [record for p in members for record in p.records]
            getattr(self._store, _WRITERS[signal])(records)

    @staticmethod
    def _fail(pending: _Pending, exc: Exception) -> None:
        kind = type(exc).__name__
        logger.warning("writing %d %s failed: %s", pending.count, pending.signal, kind)
        if isinstance(exc, _STORE_FAILURES):
            pending.error = exc
            return
        refused = RecordsRefusedError(
            f"{pending.count} {pending.signal} could not be stored ({kind}); "
            "they are dropped, not retried"
        )
        refused.__cause__ = exc
        pending.error = refused
