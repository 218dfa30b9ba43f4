"""The direct log path: a hot-path record handed straight to this package's handlers.

A record made with ``logger.info(...)`` passes through the logging module's machinery before
any handler sees it: ``Logger._log`` and ``makeRecord`` (``LogRecord.__init__`` reads the
clock, splits the source path, checks the thread, process and task switches), ``callHandlers``
walking the logger hierarchy, then for each handler ``Handler.handle`` with its lock and
``Filterer.filter`` over its filters, each of which runs once per handler (the trace context,
redaction and caller filters find their work done the second time, but are still called).

:func:`log` does the same work without the detour, when the result cannot differ: the logger
has no filters, neither it nor its ancestors up to the root have handlers of their own, and
they propagate; the root's handlers are all this package's (:class:`DirectHandler`), each
still with exactly the filters it was installed with; the level is below WARNING (those
records get their caller looked up, see :mod:`instrumentation.logs`) and the lean switches
are set (no caller lookup, no thread or process names). Anything else - pytest's ``caplog``,
an application's own handler, a filter added later - sends the record down the ordinary path.
The record is a real :class:`logging.LogRecord` with the same attributes in the same order
(the redaction pass relies on that order), it runs through the same filters and the same
``emit`` of each handler, so the file line, the stderr line and the OTLP record are the ones
the ordinary path writes; a test compares them. When :mod:`instrumentation.logbuffer` is
active (the default of :func:`instrumentation.logs.configure_logging`), the record is made here
and queued, and the handlers get it from the buffer's writer, in a row with the others.

Measured on the access record through the JSON file and OTLP (CPU time, ``thread_time``):
144 -> 99 us in a tight loop, 263 -> 239 us inside ``benchmarks/overhead.py``'s requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from instrumentation import logbuffer

_root = logging.getLogger()
# The attributes of a record made in lean mode, in LogRecord.__init__'s order (see _record).
_template: list[dict[str, Any]] = []


class DirectHandler(Protocol):
    """A handler :func:`log` may hand records to without ``Handler.handle``."""

    def direct_filters(self) -> list[logging.Filter] | None:
        """The filters the handler was installed with, or ``None`` if it takes no direct path."""

    def emit_direct(self, record: logging.LogRecord) -> None:
        """What ``handle`` does for a record its filters let through: emit it (never raise)."""


def log(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], fields: Mapping[str, Any]
) -> None:
    """``logger.log(level, msg, *args, extra=fields)``, by the direct path when it may be taken.

    ``fields`` become the record's attributes, as ``extra`` does; the mapping itself is not
    changed or kept.
    """
    if not logger.isEnabledFor(level):
        return
    handlers = _direct_handlers(logger, level)
    if handlers is None:
        logger.log(level, msg, *args, extra=fields)
        return
    record = _record(logger.name, level, msg, args, fields)
    buffer = logbuffer.active()
    if buffer is None:
        hand_over(record, handlers)
    else:
        buffer.put(record, tuple(handlers))  # the handlers of the moment it is made


def hand_over(record: logging.LogRecord, handlers: Sequence[logging.Handler]) -> None:
    """What ``Handler.handle`` does for each of ``handlers``: run its filters, then emit."""
    for handler in handlers:
        for check in handler.filters:
            if not check.filter(record):  # type: ignore[union-attr]
                break
        else:
            handler.emit_direct(record)  # type: ignore[attr-defined]


def _direct_handlers(logger: logging.Logger, level: int) -> list[logging.Handler] | None:
    """The root's handlers if a record of ``logger`` at ``level`` may skip the machinery."""
    if level >= logging.WARNING or logging._srcfile is not None or logging.logThreads:
        return None
    if logging.logProcesses or logging.logMultiprocessing:
        return None
    if getattr(logging, "logAsyncioTasks", False):  # Python 3.12+: the task's name per record
        return None
    # Only the logger a record is made on applies its filters (Logger.handle); its ancestors
    # pass it to their handlers.
    if logger.filters or logger.disabled:
        return None
    current: logging.Logger | None = logger
    while current is not None and current is not _root:
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    handlers = _root.handlers
    for handler in handlers:
        expected = getattr(handler, "direct_filters", None)
        if expected is None or level < handler.level:
            return None
        installed = expected()
        if installed is None or handler.filters != installed:
            return None
    return handlers


def _record(
    name: str, level: int, msg: str, args: tuple[Any, ...], fields: Mapping[str, Any]
) -> logging.LogRecord:
    """What ``makeRecord`` makes in lean mode: the same attributes in the same order, extras last.

    The attributes that do not depend on the call (no caller, thread or process looked up) are
    copied from a record the standard constructor made once, so a Python version that adds one
    (3.12's ``taskName``) adds it here too.
    """
    if not _template:
        made = logging.LogRecord(
            "", logging.NOTSET, "(unknown file)", 0, "", (), None, "(unknown function)"
        )
        _template.append(vars(made))
    created = time.time()
    attributes = _template[0].copy()
    attributes["name"] = name
    attributes["msg"] = msg
    # As LogRecord.__init__: a lone non-empty mapping is the args (``%(key)s`` formatting).
    attributes["args"] = (
        args[0] if len(args) == 1 and isinstance(args[0], Mapping) and args[0] else args
    )
    attributes["levelname"] = logging.getLevelName(level)
    attributes["levelno"] = level
    attributes["created"] = created
    attributes["msecs"] = int((created - int(created)) * 1000) + 0.0
    attributes["relativeCreated"] = (created - logging._startTime) * 1000
    for key in fields:
        if key in attributes or key in ("message", "asctime"):
            raise KeyError(f"Attempt to overwrite {key!r} in LogRecord")
    attributes.update(fields)
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__ = attributes
    return record
