"""The SDK names behind :class:`instrumentation.telemetry.OtlpLogHandler`'s direct queueing.

``Logger.emit`` checks that the logger is enabled, counts the record if the SDK's own metrics
are on, and hands it to each processor; the batch processor's ``on_emit`` copies it with an
empty context into a ``ReadableLogRecord`` and queues that. When the logger is enabled, counts
nothing and every processor is the SDK's ``BatchLogRecordProcessor``, the handler builds that
``ReadableLogRecord`` itself and queues it: three objects and two calls fewer per record.
:func:`batch_queues` finds those queues through private names; :func:`check_sdk`, run when a
handler is built, queues one record through them on a throw-away provider and checks the
exporter receives it. If not, :func:`batch_queues` answers ``None`` for good (the handler then
calls the public ``Logger.emit``) and one WARNING names the SDK version.

:func:`severity_number` is the SDK's mapping of a ``logging`` level to an OpenTelemetry
severity, which it does not re-export; a table of the logs data model stands in if it moves.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import Logger as SdkLogger
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter

from instrumentation import sdk_internals

try:
    from opentelemetry.sdk._logs._internal import std_to_otel
except ImportError:  # depends on the installed SDK
    std_to_otel = None

__all__ = ["CONCERN", "batch_queues", "check_sdk", "severity_number"]

CONCERN = "log records queued directly"

# The batch processor's queue, an attribute of each BatchLogRecordProcessor.
_QUEUE = "_batch_processor"

_lock = threading.Lock()
_direct_ok: bool | None = None


def _data_model_severity(levelno: int) -> SeverityNumber:
    """The logs data model's mapping: DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21, and
    up to three steps above each for the levels in between (as the SDK's own table)."""
    if levelno < 10:
        return SeverityNumber.UNSPECIFIED
    if levelno > 53:
        return SeverityNumber.FATAL4
    tens, units = divmod(levelno, 10)
    return SeverityNumber(1 + 4 * tens + min(units, 3))


severity_number = std_to_otel if std_to_otel is not None else _data_model_severity


def batch_queues(logger: SdkLogger) -> tuple[Any, ...] | None:
    """The batch queues ``logger``'s records end in, when handing a record to them changes
    nothing (see the module doc); ``None`` for the public ``Logger.emit``."""
    if _direct_ok is False:
        return None
    try:
        # By name: the class lives in a private module of the SDK.
        if not logger._is_enabled() or type(logger._logger_metrics).__name__ != "NoOpLoggerMetrics":
            return None
        processors = logger._multi_log_record_processor._log_record_processors
        if not processors or any(type(p) is not BatchLogRecordProcessor for p in processors):
            return None
        queues = tuple(getattr(processor, _QUEUE) for processor in processors)
    except AttributeError:
        return None
    return queues


def check_sdk() -> bool:
    """Run the self-test of the module doc once per process; whether direct queueing is used."""
    global _direct_ok
    if _direct_ok is None:
        with _lock:
            if _direct_ok is None:
                problem = _self_test()
                if problem is not None:
                    sdk_internals.fall_back(CONCERN, problem, "records go through Logger.emit")
                _direct_ok = problem is None
    return _direct_ok


def reset_check() -> None:
    """Forget the self-test's verdict (for tests that change the SDK under it)."""
    global _direct_ok
    with _lock:
        _direct_ok = None


def _self_test() -> str | None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    try:
        logger = provider.get_logger(__name__)
        queues = batch_queues(logger) if isinstance(logger, SdkLogger) else None
        if queues is None:
            return "the batch processor's queue was not found"
        record = LogRecord(body="self-test", severity_number=SeverityNumber.INFO)
        for queue in queues:
            queue.emit(
                ReadableLogRecord(
                    record, logger.resource, logger.instrumentation_scope, LogRecordLimits()
                )
            )
        provider.force_flush()
        bodies = [finished.log_record.body for finished in exporter.get_finished_logs()]
        if bodies != ["self-test"]:
            return f"a record queued directly was exported as {bodies!r}"
    except Exception as exc:  # any surprise in the SDK's internals: the public path
        return f"{type(exc).__name__}: {exc}"
    finally:
        provider.shutdown()
    return None
