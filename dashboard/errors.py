"""The one exception family of the dashboard package.

Callers catch :class:`DashboardError` for anything this package raises on purpose. Each subclass
names one failure; the receiver and the API map them to one HTTP status (noted per class).
Messages say what happened and what the caller can do about it.
"""

from __future__ import annotations


class DashboardError(Exception):
    """Base of every error raised on purpose by :mod:`dashboard`."""


class DashboardConfigError(DashboardError):
    """A ``VRP_DASHBOARD_*`` variable is unknown or invalid (the CLI exits with code 2).

    The message is one line naming the variable, its value (never a token) and what is allowed.
    """


class PayloadDecodeError(DashboardError):
    """An OTLP request body could not be decoded as its content type says (HTTP 400)."""


class PayloadTooLargeError(DashboardError):
    """An OTLP request body, once decompressed, exceeds the configured limit (HTTP 413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"request body exceeds {max_bytes} bytes after decompression; send smaller "
            "batches (e.g. a lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise "
            "VRP_DASHBOARD_MAX_BODY_BYTES"
        )
        self.max_bytes = max_bytes


class UnsupportedContentTypeError(DashboardError):
    """An OTLP request has a content type or encoding other than the spec allows (HTTP 415)."""


class RecordsRefusedError(DashboardError):
    """The store refused one request's records for what they hold, not for its own state.

    The receiver answers 200 with the records counted as rejected in ``partial_success``: an
    exporter must not retry them (a 503 would make it re-send the same bad records forever).
    """


class StoreError(DashboardError):
    """The telemetry store cannot be opened or is at the wrong schema revision."""


class TraceNotFoundError(DashboardError):
    """No span of the requested trace is in the store (HTTP 404)."""
