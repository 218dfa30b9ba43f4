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

The level applies to the root logger. ``urllib3`` (the OTLP exporter's HTTP client, chatty on
retries), ``werkzeug`` (its access lines repeat what the HTTP server spans and metrics record,
without trace ids) and ``sqlalchemy`` (pool lifecycle chatter; statements have their own spans)
are set to WARNING - but only if the application left their level unset, and
:func:`shutdown_logging` puts them back.

Configuring again replaces this module's handlers and never touches handlers it did not add
(pytest's ``caplog``, the OTLP handler of :mod:`instrumentation.telemetry`), so the two modules
may be set up in either order.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from instrumentation.errors import ConfigurationError
from instrumentation.redaction import RedactionFilter, redact_text
from instrumentation.requestid import REQUEST_ID
from instrumentation.settings import LoggingSettings

CONTEXT_FIELDS = frozenset({"trace_id", "span_id"})
"""Record attributes :class:`TraceContextFilter` adds (other handlers may want to skip them)."""

_QUIETED_LOGGERS = ("urllib3", "werkzeug", "sqlalchemy")
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JSON_FIELDS = ("asctime", "levelname", "name", "message")
_JSON_RENAMES = {
    "asctime": "timestamp",
    "levelname": "level",
    "name": "logger",
    "exc_info": "exception",
    "stack_info": "stack",
}

_installed_handlers: list[logging.Handler] = []
# Levels to restore on shutdown_logging: the root's ("") and those of the quieted loggers.
_saved_levels: dict[str, int] = {}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to each record (``None`` if none).

    It runs on the handler, in the thread that logs, so it sees that thread's current span.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = None
            record.span_id = None
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def _utc_iso_millis(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLineFormatter(JsonFormatter):
    """python-json-logger's formatter with the field names and timestamp of the log contract."""

    def __init__(self, service: str) -> None:
        super().__init__(
            list(_JSON_FIELDS),
            rename_fields=dict(_JSON_RENAMES),
            static_fields={"service": service},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso_millis(record.created)

    # python-json-logger formats exc_info afresh instead of reusing the redacted exc_text cache.
    def formatException(self, ei: ExcInfo) -> str:
        return redact_text(super().formatException(ei))


class TextFormatter(logging.Formatter):
    """One readable line per record for a terminal: time, level, logger, message."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso_millis(record.created)

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


def _stderr_formatter(stream: TextIO, choice: str, service: str) -> logging.Formatter:
    if choice == "text" or (choice == "auto" and _is_terminal(stream)):
        return TextFormatter()
    return JsonLineFormatter(service)


def _install(handler: logging.Handler, formatter: logging.Formatter) -> None:
    handler.setFormatter(formatter)
    handler.addFilter(TraceContextFilter())
    handler.addFilter(RedactionFilter())
    logging.getLogger().addHandler(handler)
    _installed_handlers.append(handler)


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A ``RotatingFileHandler`` that formats each record once.

    The standard one formats every record twice on Python 3.11 (once in ``shouldRollover`` to
    measure it, once to write it) and stats the file each time; on the request path that is
    half the cost of a log line. Rotation happens at the same point: before a line that would
    take the file to ``maxBytes``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0:
                position = self.stream.tell()
                if position and position + len(line) >= self.maxBytes:
                    self.doRollover()
            self.stream.write(line)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


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
    if settings.log_dir is not None:
        path = settings.log_dir / (settings.file_name or f"{service}.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = SizeRotatingFileHandler(
                path,
                maxBytes=settings.max_bytes,
                backupCount=settings.backup_count,
                encoding="utf-8",
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write logs to {str(path)!r}: {exc.strerror}; "
                "point the log directory at a writable place"
            ) from exc
        _install(file_handler, JsonLineFormatter(service))
    if settings.stderr:
        stream = sys.stderr
        _install(
            logging.StreamHandler(stream),
            _stderr_formatter(stream, settings.stderr_format, service),
        )
    root = logging.getLogger()
    _saved_levels[""] = root.level
    root.setLevel(level)
    for name in _QUIETED_LOGGERS:
        quieted = logging.getLogger(name)
        if quieted.level == logging.NOTSET:
            quieted.setLevel(logging.WARNING)
            _saved_levels[name] = logging.NOTSET


def shutdown_logging() -> None:
    """Remove and close every handler :func:`configure_logging` added; restore the levels it set.

    Safe to call at any time, any number of times.
    """
    root = logging.getLogger()
    while _installed_handlers:
        handler = _installed_handlers.pop()
        root.removeHandler(handler)
        handler.close()
    for name, level in _saved_levels.items():
        logging.getLogger(name).setLevel(level)
    _saved_levels.clear()
