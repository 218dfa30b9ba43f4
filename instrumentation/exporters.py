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
apply unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.exporter.otlp.proto.http import _log_exporter, trace_exporter

# Private helpers of the SDK exporter, reused so that the size limit behaves exactly as there.
from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from instrumentation import otlp_wire

__all__ = ["WireLogExporter", "WireSpanExporter"]

_span_logger = logging.getLogger(trace_exporter.__name__)
_log_logger = logging.getLogger(_log_exporter.__name__)

_ItemT = TypeVar("_ItemT")

# What ``export()`` below uses of the SDK exporter's state. A later SDK that renames any of it
# gets the SDK's own ``export()`` (and encoder) instead of a broken one.
_SDK_STATE = ("_shutdown", "_metrics", "_client", "_max_request_size")


def _has_sdk_state(exporter: object) -> bool:
    return all(hasattr(exporter, name) for name in _SDK_STATE)


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


class WireSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` serializing with :func:`instrumentation.otlp_wire.encode_spans`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not _has_sdk_state(self):
            return super().export(spans)
        if self._shutdown:
            _span_logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE

        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized_data = _serialize(spans, otlp_wire.encode_spans, _sdk_spans)
            except Exception as error:  # as the SDK: a failed batch, not a crash
                _span_logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE

            if _is_request_too_large(serialized_data, self._max_request_size):
                _span_logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(serialized_data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized_data)} "
                    f"bytes exceeds max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE

            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                    if export_result.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class WireLogExporter(OTLPLogExporter):
    """``OTLPLogExporter`` serializing with :func:`instrumentation.otlp_wire.encode_logs`."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not _has_sdk_state(self):
            return super().export(batch)
        if self._shutdown:
            _log_logger.warning("Exporter already shutdown, ignoring batch")
            return LogRecordExportResult.FAILURE

        with self._metrics.export_operation(len(batch)) as result:
            try:
                serialized_data = _serialize(batch, otlp_wire.encode_logs, _sdk_logs)
            except Exception as error:  # as the SDK: a failed batch, not a crash
                _log_logger.error("Failed to encode logs batch: %s", error)
                result.error = error
                return LogRecordExportResult.FAILURE

            if _is_request_too_large(serialized_data, self._max_request_size):
                _log_logger.warning(
                    "Dropping logs batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(serialized_data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized logs request size {len(serialized_data)} "
                    f"bytes exceeds max_request_size {self._max_request_size} bytes."
                )
                return LogRecordExportResult.FAILURE

            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                    if export_result.status_code is not None
                    else None
                )
                return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS
