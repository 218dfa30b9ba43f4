"""OTLP/HTTP span and log exporters that serialize batches with :mod:`instrumentation.otlp_wire`.

They are the SDK's ``OTLPSpanExporter`` / ``OTLPLogExporter`` (opentelemetry-exporter-otlp-
proto-http) with one step changed: the request body comes from the hand-written wire encoder
instead of building protobuf messages and serializing them (see :mod:`instrumentation.otlp_wire`
for why and the figures). Everything else is the SDK's: constructor and environment variables,
the HTTP client with its retries, compression and timeout, the exporter's own metrics, the
request size limit, shutdown. A batch the wire encoder leaves aside
(:class:`~instrumentation.otlp_wire.WireEncodingError`) is encoded by the SDK's encoder, so what
is sent is always what the SDK would send.

``export()`` below follows the SDK's ``export()`` of version 1.45 line for line; only the
encoding call differs. Records are logged through the SDK exporters' own loggers so that the
telemetry bootstrap's filters for those loggers (rate limit, kept out of the OTLP log pipeline)
apply unchanged. The exporter state it reads is checked when an exporter is built
(:func:`instrumentation.sdk_internals.exporters.wire_export_usable`); without it the exporter
runs the SDK's own ``export()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from instrumentation import otlp_wire
from instrumentation.sdk_internals.exporters import (
    RequestPayloadTooLargeError,
    is_request_too_large,
    wire_export_usable,
)

__all__ = ["WireLogExporter", "WireSpanExporter"]

_span_logger = logging.getLogger(trace_exporter.__name__)
_log_logger = logging.getLogger(_log_exporter.__name__)

_ItemT = TypeVar("_ItemT")


def _serialize(
    items: Sequence[_ItemT],
    fast: Callable[[Sequence[_ItemT]], bytes],
    sdk: Callable[[Sequence[_ItemT]], bytes],
) -> bytes:
    try:
        return fast(items)
    except Exception:  # any surprise in the fast path: the SDK's encoder decides
        return sdk(items)


def _sdk_spans(spans: Sequence[ReadableSpan]) -> bytes:
    return sdk_encode_spans(spans).SerializePartialToString()


def _sdk_logs(records: Sequence[ReadableLogRecord]) -> bytes:
    return sdk_encode_logs(records).SerializeToString()


def _export(
    exporter: OTLPSpanExporter | OTLPLogExporter,
    items: Sequence[_ItemT],
    fast: Callable[[Sequence[_ItemT]], bytes],
    sdk: Callable[[Sequence[_ItemT]], bytes],
    logger: logging.Logger,
    kind: str,
) -> bool:
    """The SDK exporters' ``export()`` (1.45) with the encoder swapped; True on success."""
    if exporter._shutdown:
        logger.warning("Exporter already shutdown, ignoring batch")
        return False

    with exporter._metrics.export_operation(len(items)) as result:
        try:
            serialized_data = _serialize(items, fast, sdk)
        except Exception as error:  # as the SDK: a failed batch, not a crash
            logger.error("Failed to encode %s batch: %s", kind, error)
            result.error = error
            return False

        limit = exporter._max_request_size
        if is_request_too_large(serialized_data, limit):
            logger.warning(
                "Dropping %s batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                kind,
                len(serialized_data),
                limit,
            )
            result.error = RequestPayloadTooLargeError(
                f"Serialized {kind} request size {len(serialized_data)} "
                f"bytes exceeds max_request_size {limit} bytes."
            )
            return False

        export_result = exporter._client.export(serialized_data)
        if not export_result.success:
            result.error = export_result.error
            result.error_attrs = (
                {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                if export_result.status_code is not None
                else None
            )
            return False
    return True


class WireSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` serializing with :func:`instrumentation.otlp_wire.encode_spans`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = wire_export_usable(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._wire:
            return super().export(spans)
        sent = _export(self, spans, otlp_wire.encode_spans, _sdk_spans, _span_logger, "span")
        return SpanExportResult.SUCCESS if sent else SpanExportResult.FAILURE


class WireLogExporter(OTLPLogExporter):
    """``OTLPLogExporter`` serializing with :func:`instrumentation.otlp_wire.encode_logs`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = wire_export_usable(self)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not self._wire:
            return super().export(batch)
        sent = _export(self, batch, otlp_wire.encode_logs, _sdk_logs, _log_logger, "logs")
        return LogRecordExportResult.SUCCESS if sent else LogRecordExportResult.FAILURE
