"""Request-path records handed to the handlers in batches, a fraction of a second after they
are made.

Why. A record made at the end of a request meets cold CPU caches: the request's own work
(Flask, SQLAlchemy, the database driver) has evicted the logging code and its data, so
redacting, serialising, writing and queueing it for OTLP cost several times what they cost in
a row (``benchmarks/overhead.py --logs``: "in a loop" against "caches evicted before each").
So the direct path (:mod:`instrumentation.direct`) makes the record inside the request, with
the request's time, trace context and request id, and queues it here; a writer thread hands
the queued records to the handlers in a row once per flush interval, as nginx's buffered
access log (``access_log ... buffer= flush=``) and the OpenTelemetry batch processors do.
A line is the same line; only the moment it is written changes. A handler with an
``end_batch()`` method may keep the lines of a batch (see :func:`writing`) and write them with
one call when the batch ends; the file and stderr handlers do, so a batch costs one write and
one flush per output instead of one per record, as with nginx's buffer.

The standard library's ``QueueHandler`` / ``QueueListener`` do not do this: the handler
formats the record in the caller (the cost this module moves), and the listener wakes for
every record as it arrives, so nothing is ever handled in a row.

Order and loss. A record that takes the ordinary path (WARNING and above, or any record when
another handler is installed) first writes the queue out, so the file and stderr keep the order
records were made in. Flushing a handler, :func:`~instrumentation.logs.shutdown_logging`, the
telemetry shutdown (SIGTERM included) and the interpreter's exit write it out too. A process
killed outright (SIGKILL, a power cut) loses at most the last interval's INFO and DEBUG
records; warnings and errors are never queued. Past :data:`MAX_PENDING` queued records the
thread that logs writes them itself, so a writer that cannot keep up slows the callers down
instead of growing memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.context import Context, get_current

from instrumentation.redaction import record_state
from instrumentation.requestid import REQUEST_ID

MAX_PENDING = 10_000
"""Queued records past which the logging thread writes the queue out itself."""

CONTEXT_KEY = "otel_context"
"""Where a queued record keeps the OpenTelemetry context it was made in (its record state)."""

REQUEST_ID_KEY = "request_id"
"""Where a queued record keeps the request id current when it was made (its record state)."""

Deliver = Callable[[logging.LogRecord, Sequence[logging.Handler]], None]


def made_in(record: logging.LogRecord) -> Context | None:
    """The context a queued record was made in, ``None`` for a record handled as it is made."""
    context: Context | None = record_state(record).get(CONTEXT_KEY)
    return context


class RecordBuffer:
    """Records waiting for their handlers, and the thread that hands them over.

    ``deliver`` does for one record what the direct path does when nothing is queued: runs
    each handler's filters and emits it (see :func:`instrumentation.direct.hand_over`).
    """

    def __init__(self, interval_s: float, deliver: Deliver, max_pending: int = MAX_PENDING):
        self._interval_s = interval_s
        self._deliver = deliver
        self._max_pending = max_pending
        self._pending: deque[tuple[logging.LogRecord, Sequence[logging.Handler]]] = deque()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._work = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, record: logging.LogRecord, handlers: Sequence[logging.Handler]) -> None:
        """Queue ``record`` for ``handlers``, noting the context and request id it is made in."""
        if self._stop.is_set():
            self._deliver(record, handlers)
            return
        state = record_state(record)
        state[CONTEXT_KEY] = get_current()
        state[REQUEST_ID_KEY] = REQUEST_ID.get()
        pending = self._pending
        pending.append((record, handlers))
        if self._thread is None:
            self._start()
        # Looked at after the append: the writer lowers the flag just before it takes the
        # queue, so a record appended before that is in its pass, and one appended after it
        # finds the flag down and raises it. (Waking the writer only for the record that makes
        # the queue one long loses the wake-up when two threads append before either counts.)
        if not self._work.is_set():
            self._work.set()
        if len(pending) >= self._max_pending:
            self.write()

    def write(self) -> None:
        """Hand every queued record to its handlers, oldest first (a no-op while this thread
        is already writing: a record that a handler logs meanwhile is handled at once)."""
        if not self._pending or getattr(self._local, "writing", False):
            return
        with self._lock:
            self._local.writing = True
            written: dict[int, logging.Handler] = {}
            try:
                pending = self._pending
                while pending:
                    record, handlers = pending.popleft()
                    for handler in handlers:  # before delivery: a failed one still ends its batch
                        written[id(handler)] = handler
                    self._deliver(record, handlers)
            finally:
                self._local.writing = False
                for handler in written.values():
                    end_batch = getattr(handler, "end_batch", None)
                    if end_batch is not None:
                        end_batch()

    def writing_here(self) -> bool:
        """Whether the calling thread is writing the queue out now."""
        return bool(getattr(self._local, "writing", False))

    def pending(self) -> int:
        """How many records wait for their handlers."""
        return len(self._pending)

    def close(self) -> None:
        """Stop the writer thread and write out what is queued; later records are not queued."""
        self._stop.set()
        self._work.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self.write()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="instrumentation-log-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._work.wait()
            # Let the interval's records gather, unless closing.
            self._stop.wait(self._interval_s)
            self._work.clear()
            self.write()

    def _after_fork_in_child(self) -> None:
        # The parent writes its own queued records; the child starts empty, without a thread.
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pending.clear()
        self._work = threading.Event()
        self._thread = None


_active: list[RecordBuffer] = []


def active() -> RecordBuffer | None:
    """The buffer the direct path queues records in, ``None`` when records are handled at once."""
    return _active[0] if _active else None


def install(interval_s: float, deliver: Deliver) -> RecordBuffer:
    """Queue the direct path's records from now on, written every ``interval_s`` seconds."""
    uninstall()
    buffer = RecordBuffer(interval_s, deliver)
    _active.append(buffer)
    return buffer


def uninstall() -> None:
    """Write out and stop the active buffer; records are handled as they are made again."""
    while _active:
        _active.pop().close()


def writing() -> bool:
    """Whether the calling thread is writing the active buffer out: a handler may then keep its
    output and write it in one piece when the buffer calls its ``end_batch()``."""
    return bool(_active) and _active[0].writing_here()


def write_pending() -> None:
    """Hand the queued records to their handlers now (before a record of the ordinary path,
    a flush, a shutdown)."""
    if _active:
        _active[0].write()


def _after_fork_in_child() -> None:
    for buffer in _active:
        buffer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
# At exit the buffer is written out and stopped, not only written out: logging.shutdown (which
# runs later) flushes each handler while holding its lock, and a writer thread still running
# could then hold the buffer's lock while it waits for that handler's.
atexit.register(uninstall)
