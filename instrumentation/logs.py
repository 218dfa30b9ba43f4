"""Structured logging: JSON lines to a size-rotated file and to stderr, trace ids included.

:func:`configure_logging` attaches (at most) two handlers to the root logger:

* a :class:`~logging.handlers.RotatingFileHandler` at ``log_dir / (file_name or
  f"{service}.log")`` writing one JSON object per line;
* a stderr handler writing JSON, or readable text when stderr is a terminal
  (``stderr_format="auto"``); ``"json"`` / ``"text"`` force one.

Every JSON line has ``timestamp`` (ISO 8601, UTC, milliseconds, ``Z``), ``level``, ``logger``,
``message``, ``service``, ``trace_id`` and ``span_id`` (32 / 16 lowercase hex digits of the span
current when the record was made, ``null`` outside a valid span), ``request_id`` (the HTTP
request being served, ``null`` outside one), then the record's ``extra``
fields, and ``exception`` when there is one. Each handler carries a
:class:`~instrumentation.redaction.RedactionFilter`, so secrets never reach the file or stderr.

The lean path. A record on the request path is cheap: it is redacted once and serialised once,
with orjson, and when both the file and stderr write JSON they share the bytes
(:meth:`JsonLineFormatter.line` keeps them on the record). Its extra fields are collected once,
by the redaction pass, and the JSON line and the OTLP handler both read that dict
(:func:`~instrumentation.redaction.redacted_extras`). Looking up the caller (file, function,
line) walks the stack on every record; with ``LoggingSettings.lean`` it is skipped
(:data:`logging._srcfile` unset, the switch the standard library provides for this) unless the
level is DEBUG or ``LoggingSettings.caller`` asks for it; records at WARNING and above still get
their caller, looked up by :class:`CallerFilter` only for them. In the same lean mode records do
not look up the thread and process names (``logging.logThreads`` and friends), which no output
here shows. These switches are process-wide, so every other handler loses those fields too:
``lean`` is off unless the application asks for it.

The level applies to the root logger. ``urllib3`` (the OTLP exporter's HTTP client, chatty on
retries), ``werkzeug`` (its access lines repeat what the HTTP server spans and metrics record,
without trace ids), ``sqlalchemy`` (pool lifecycle chatter; statements have their own spans)
and ``alembic`` (its migration context lines at every start-up) are set to WARNING - but only if
the application left their level unset, and
:func:`shutdown_logging` puts them back. ``waitress.queue`` writes a WARNING for every request
that waits for a worker thread: on a saturated server, one per request, which only adds work
where there is none to spare; its records pass once a minute (:class:`OncePerInterval`).

Configuring again replaces this module's handlers and never touches handlers it did not add
(the application's own, pytest's ``caplog``, the OTLP handler of :mod:`instrumentation.telemetry`):
ours are added beside them, so the two modules may be set up in either order and an adopting
application keeps its own log output as it was.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from types import CodeType, FrameType, TracebackType
from typing import Any, TextIO

import orjson
from opentelemetry import trace

from instrumentation import direct, logbuffer
from instrumentation.errors import ConfigurationError
from instrumentation.redaction import (
    RedactionFilter,
    record_state,
    redact_text,
    redacted_extras,
)
from instrumentation.requestid import REQUEST_ID
from instrumentation.settings import LoggingSettings

CONTEXT_FIELDS = frozenset({"trace_id", "span_id"})
"""Record attributes :class:`TraceContextFilter` adds (other handlers may want to skip them)."""

# paramiko (the offsite copy's SFTP) logs every connection and every SFTP channel at INFO: a
# copy with several channels would add a dozen records per run.
_QUIETED_LOGGERS = ("urllib3", "werkzeug", "sqlalchemy", "alembic", "paramiko")
# Loggers that write a record per event under load: each message passes once a minute.
_RATE_LIMITED_LOGGERS = ("waitress.queue",)
RATE_LIMIT_INTERVAL_S = 60.0
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
# The file the logging module's own frames come from (what logging._srcfile holds by default).
_LOGGING_SOURCE = logging.addLevelName.__code__.co_filename
_UNKNOWN_FILE = "(unknown file)"

HANDLER_CODE: set[CodeType] = set()
"""Code of this package's handlers that a record passes through on its way from the caller
(their ``handle``), skipped with the logging module's own when :class:`CallerFilter` looks for
the caller."""

_installed_handlers: list[logging.Handler] = []
_installed_filters: list[tuple[str, logging.Filter]] = []
# Levels to restore on shutdown_logging: the root's ("") and those of the quieted loggers.
_saved_levels: dict[str, int] = {}
# The standard library's switches the lean mode turns off, with their values to restore.
_LEAN_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
_saved_switches: dict[str, object] = {}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class OncePerInterval(logging.Filter):
    """Lets one record per logger and message template through per ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._next_allowed: dict[object, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = (record.name, record.msg)
        with self._lock:
            if now < self._next_allowed.get(key, 0.0):
                return False
            self._next_allowed[key] = now + self._interval_s
        return True


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to each record (``None`` if none).

    It runs on the handler, in the thread that logs, so it sees that thread's current span; a
    record queued by :mod:`instrumentation.logbuffer` carries the span and request id of the
    moment it was made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        state = record_state(record)
        if "context" in state:  # a handler before this one did it
            return True
        # A record queued by instrumentation.logbuffer brings the context it was made in.
        made_in = state.get(logbuffer.CONTEXT_KEY)
        context = trace.get_current_span(made_in).get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = None
            record.span_id = None
        if getattr(record, "request_id", None) is None:
            record.request_id = (
                state[logbuffer.REQUEST_ID_KEY] if made_in is not None else REQUEST_ID.get()
            )
        state["context"] = True
        return True


class CallerFilter(logging.Filter):
    """Fills in the caller of a WARNING-or-worse record made without caller lookup.

    With :data:`logging._srcfile` unset (see the module doc) every record comes with
    ``pathname`` ``"(unknown file)"`` and ``lineno`` 0. Warnings and errors are rare and their
    location is worth a stack walk: the filter runs inside the logging call, so the caller is
    the first frame past the logging module's own. ``stacklevel`` is not honoured here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.lineno or record.levelno < logging.WARNING or record.pathname != _UNKNOWN_FILE:
            return True
        frame: FrameType | None = sys._getframe(1)
        inside_logging = False
        while frame is not None:
            code = frame.f_code
            if code.co_filename == _LOGGING_SOURCE or code in HANDLER_CODE:
                inside_logging = True
            elif inside_logging:
                record.pathname = code.co_filename
                record.filename = os.path.basename(code.co_filename)
                record.module = os.path.splitext(record.filename)[0]
                record.lineno = frame.f_lineno
                record.funcName = code.co_name
                break
            frame = frame.f_back
        return True


_second: list[tuple[int, str]] = [(-1, "")]


def _utc_iso_millis(created: float, msecs: float | None = None) -> str:
    # strftime once per second: most records of a busy service share their second.
    second = int(created)
    cached_second, prefix = _second[0]
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[0] = (second, prefix)
    millis = int((created - second) * 1000) if msecs is None else int(msecs)
    return f"{prefix}.{millis:03d}Z"


def _dumps(fields: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(fields, default=str, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        # orjson refuses integers beyond 64 bits and some exotic keys; json takes anything.
        return json.dumps(fields, default=str, ensure_ascii=False).encode("utf-8")


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record with the fields of the log contract (see the module doc).

    :meth:`line` serialises a record once per formatter and keeps the bytes on the record, so
    handlers sharing this formatter (the file and stderr) format each record once.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record).decode("utf-8")

    def line(self, record: logging.LogRecord) -> bytes:
        """The record as UTF-8 JSON, without the line terminator."""
        state = record_state(record)
        cached = state.get("json")
        if cached is not None and cached[0] is self:
            line: bytes = cached[1]
            return line
        msg = record.msg
        merged: dict[str, Any] | None = None
        if isinstance(msg, dict) and not record.args:
            # A dict logged as the message contributes its keys, as python-json-logger did.
            merged, message = msg, ""
        else:
            message = record.getMessage()
        data: dict[str, Any] = {
            "timestamp": _utc_iso_millis(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "service": self.service,
        }
        if merged:
            data.update(merged)
        data.update(redacted_extras(record))
        exception = record.exc_text
        if not exception and record.exc_info and record.exc_info[0] is not None:
            exception = redact_text(self.formatException(record.exc_info))
        if exception:
            data["exception"] = exception
        if record.stack_info:
            data["stack"] = record.stack_info
        line = _dumps(data)
        state["json"] = (self, line)
        return line


class TextFormatter(logging.Formatter):
    """One readable line per record for a terminal: time, level, logger, message."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso_millis(record.created, record.msecs)

    def formatException(self, ei: ExcInfo) -> str:
        return redact_text(super().formatException(ei))


def _root_level(name: str) -> int:
    levels = logging.getLevelNamesMapping()
    level = levels.get(name.strip().upper())
    if level is None:
        allowed = ", ".join(sorted(levels, key=levels.__getitem__))
        raise ConfigurationError(f"log level {name!r} is not one of {allowed}")
    return level


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _DirectPath:
    """The handler side of :mod:`instrumentation.direct`: the filters it was installed with, and
    ``emit`` under the handler's lock, as ``Handler.handle`` does once the filters passed."""

    _installed_filters: list[logging.Filter] | None = None

    def direct_filters(self) -> list[logging.Filter] | None:
        return self._installed_filters

    def emit_direct(self: Any, record: logging.LogRecord) -> None:
        with self.lock:
            self.emit(record)

    def handle(self: Any, record: logging.LogRecord) -> logging.LogRecord | bool:
        # The queued records were made first: they go first (see instrumentation.logbuffer).
        logbuffer.write_pending()
        return super().handle(record)  # type: ignore[no-any-return]

    def flush(self: Any) -> None:
        logbuffer.write_pending()
        super().flush()


class _BatchedLines(_DirectPath):
    """A direct-path handler that writes whole lines, one write per log buffer batch.

    ``emit`` hands each line to :meth:`_write_line`. While the log buffer's writer hands the
    handler a batch (:func:`instrumentation.logbuffer.writing`), the lines are kept and
    :meth:`end_batch` writes them in one piece; any other line is written at once, after the
    kept ones, so the output keeps its order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: list[Any] = []
        self._kept_record: logging.LogRecord | None = None

    def end_batch(self: Any) -> None:
        """Write the lines kept during the log buffer's batch."""
        with self.lock:
            self._write_kept()

    def close(self: Any) -> None:
        with self.lock:
            self._write_kept()
        super().close()

    def _write_line(self: Any, line: Any, record: logging.LogRecord) -> None:
        """Write ``line`` (under the handler's lock), or keep it until the batch ends."""
        self._kept.append(line)
        self._kept_record = record
        if not logbuffer.writing():
            self._write_kept()

    def _write_kept(self: Any) -> None:
        kept = self._kept
        if not kept:
            return
        record = self._kept_record
        data = kept[0] if len(kept) == 1 else kept[0][:0].join(kept)
        kept.clear()
        try:
            self._write(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write(self, data: Any) -> None:
        """Write and flush ``data``: one or more whole lines."""
        raise NotImplementedError


def _install(handler: logging.Handler, formatter: logging.Formatter) -> None:
    handler.setFormatter(formatter)
    handler.addFilter(TraceContextFilter())
    handler.addFilter(CallerFilter())
    handler.addFilter(RedactionFilter())
    if isinstance(handler, _DirectPath):
        handler._installed_filters = list(handler.filters)
    logging.getLogger().addHandler(handler)
    _installed_handlers.append(handler)


def _encoded_line(handler: logging.Handler, record: logging.LogRecord) -> bytes:
    formatter = handler.formatter
    if isinstance(formatter, JsonLineFormatter):
        return formatter.line(record) + b"\n"
    return (handler.format(record) + "\n").encode("utf-8")


class SizeRotatingFileHandler(_BatchedLines, logging.handlers.RotatingFileHandler):
    """A ``RotatingFileHandler`` that writes each record's bytes as formatted, once.

    The standard one formats every record twice on Python 3.11 (once in ``shouldRollover`` to
    measure it, once to write it) and stats the file each time; this one takes the JSON bytes
    the formatter already made (shared with stderr) and writes them to the file opened in
    binary mode, so nothing is encoded twice. Rotation happens at the same point: before a line
    that would take the file to ``maxBytes``.
    """

    def __init__(self, filename: str | os.PathLike[str], maxBytes: int, backupCount: int) -> None:
        super().__init__(filename, maxBytes=maxBytes, backupCount=backupCount, delay=True)
        self.mode = "ab"
        self.encoding = None
        # Where the next line lands, kept here rather than asked of the file (a syscall) per line.
        self._position = 0

    def _open(self) -> Any:
        stream = super()._open()
        self._position = stream.seek(0, os.SEEK_END)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _encoded_line(self, record)
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0:
                position = self._position
                if position and position + len(line) >= self.maxBytes:
                    self._write_kept()
                    self.doRollover()
                    if self.stream is None:
                        self.stream = self._open()
            self._position += len(line)
            self._write_line(line, record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write(self, data: bytes) -> None:
        if self.stream is None:
            self.stream = self._open()
        self.stream.write(data)
        self.stream.flush()


class _JsonStreamHandler(_BatchedLines, logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` writing the JSON line the shared formatter already made."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            formatter = self.formatter
            if isinstance(formatter, JsonLineFormatter):
                text = formatter.line(record).decode("utf-8")
            else:
                text = self.format(record)
            self._write_line(text + self.terminator, record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write(self, data: str) -> None:
        self.stream.write(data)
        # The stream's flush only: this handler's flush() also writes the log buffer out, which
        # a line being written (often by that buffer's writer) has no need of.
        logging.StreamHandler.flush(self)


class _TextStreamHandler(_DirectPath, logging.StreamHandler[TextIO]):
    """The standard ``StreamHandler``, open to the direct path."""


HANDLER_CODE.add(_DirectPath.handle.__code__)


def _wants_caller(settings: LoggingSettings, level: int) -> bool:
    return level <= logging.DEBUG or settings.caller


def configure_logging(settings: LoggingSettings, *, service: str) -> None:
    """Route the root logger to a rotated JSON file and stderr as the module doc describes.

    Idempotent: a second call replaces the handlers of the first. Raises
    :class:`~instrumentation.errors.ConfigurationError` for an unknown level, an unknown
    ``stderr_format`` or a log directory that cannot be created.
    """
    level = _root_level(settings.level)
    if settings.stderr_format not in ("auto", "json", "text"):
        raise ConfigurationError(
            f"stderr log format {settings.stderr_format!r} is not one of auto, json, text"
        )
    shutdown_logging()
    json_formatter = JsonLineFormatter(service)
    if settings.log_dir is not None:
        path = settings.log_dir / (settings.file_name or f"{service}.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = SizeRotatingFileHandler(
                path, maxBytes=settings.max_bytes, backupCount=settings.backup_count
            )
            file_handler.stream = file_handler._open()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write logs to {str(path)!r}: {exc.strerror}; "
                "point the log directory at a writable place"
            ) from exc
        _install(file_handler, json_formatter)
    if settings.stderr:
        stream = sys.stderr
        choice = settings.stderr_format
        if choice == "text" or (choice == "auto" and _is_terminal(stream)):
            _install(_TextStreamHandler(stream), TextFormatter())
        else:
            _install(_JsonStreamHandler(stream), json_formatter)
    if settings.flush_ms > 0:
        logbuffer.install(settings.flush_ms / 1000, direct.hand_over)
    if settings.lean and not _wants_caller(settings, level):
        for switch in _LEAN_SWITCHES:
            _saved_switches[switch] = getattr(logging, switch)
            setattr(logging, switch, None if switch == "_srcfile" else False)
    root = logging.getLogger()
    _saved_levels[""] = root.level
    root.setLevel(level)
    limiter = OncePerInterval(RATE_LIMIT_INTERVAL_S)
    for name in _RATE_LIMITED_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
        _installed_filters.append((name, limiter))
    for name in _QUIETED_LOGGERS:
        quieted = logging.getLogger(name)
        if quieted.level == logging.NOTSET:
            quieted.setLevel(logging.WARNING)
            _saved_levels[name] = logging.NOTSET


def shutdown_logging() -> None:
    """Remove and close every handler :func:`configure_logging` added; restore the levels it set.

    Safe to call at any time, any number of times.
    """
    logbuffer.uninstall()
    root = logging.getLogger()
    while _installed_handlers:
        handler = _installed_handlers.pop()
        root.removeHandler(handler)
        handler.close()
    while _installed_filters:
        name, installed = _installed_filters.pop()
        logging.getLogger(name).removeFilter(installed)
    for name, level in _saved_levels.items():
        logging.getLogger(name).setLevel(level)
    _saved_levels.clear()
    for switch, value in _saved_switches.items():
        setattr(logging, switch, value)
    _saved_switches.clear()
