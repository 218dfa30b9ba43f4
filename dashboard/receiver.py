"""The OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs``.

As the OTLP specification (``docs/specification.md``, "OTLP/HTTP") defines it: bodies are
``application/x-protobuf`` or ``application/json`` (the OTLP JSON mapping), optionally
``Content-Encoding: gzip``; success is 200 with the matching ``Export*ServiceResponse``, whose
``partial_success`` counts the items that were refused; failures carry a ``google.rpc.Status``
encoded like the request. 400 for an undecodable body, 413 when the body (after decompression,
checked while inflating so a gzip bomb is never inflated whole) exceeds the limit, 415 for
another content type or encoding, 401 when a token is configured and the bearer token is missing
or wrong, 429 for a wrong one from a network that sent too many (:mod:`dashboard.attempts`),
503 (retryable, with ``Retry-After``) when the store cannot be written.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Blueprint, Response, g, request
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from dashboard import otlp
from dashboard.attempts import TokenAttempts, check_bearer
from dashboard.errors import (
    PayloadDecodeError,
    PayloadTooLargeError,
    RecordsRefusedError,
    UnsupportedContentTypeError,
)
from dashboard.settings import DashboardSettings
from dashboard.writer import GroupWriter

REJECTED_KEY = "vrp_otlp_rejected"
"""Where a request's refused item count is left in ``flask.g`` (read by dashboard.prometheus)."""

logger = logging.getLogger(__name__)
_READ_CHUNK = 64 * 1024

# (decoder, writer signal, response class, partial-success field)
_SIGNALS: dict[str, tuple[Callable[[bytes, str], otlp.Decoded], str, type[Message], str]] = {
    "traces": (otlp.decode_traces, "spans", ExportTraceServiceResponse, "rejected_spans"),
    "metrics": (
        otlp.decode_metrics,
        "metrics",
        ExportMetricsServiceResponse,
        "rejected_data_points",
    ),
    "logs": (otlp.decode_logs, "logs", ExportLogsServiceResponse, "rejected_log_records"),
}


def inflate(data: bytes, limit: int) -> bytes:
    """Gunzip ``data``, refusing as soon as the output would exceed ``limit`` bytes."""
    out = bytearray()
    remaining = data
    while remaining:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = remaining
        try:
            while pending:
                # max_length caps what one call may produce: the bomb is never inflated whole.
                chunk = inflater.decompress(pending, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise PayloadTooLargeError(limit)
                pending = inflater.unconsumed_tail
            if not inflater.eof:
                raise PayloadDecodeError("gzip body is truncated")
        except zlib.error as exc:
            raise PayloadDecodeError(f"body is not valid gzip ({exc})") from None
        # A gzip file may hold several members one after another.
        remaining = inflater.unused_data
    return bytes(out)


def _read_body(max_bytes: int) -> bytes:
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise UnsupportedContentTypeError(
            f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding"
        )
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(max_bytes)
    raw = bytearray()
    stream = request.stream
    while True:
        chunk = stream.read(min(_READ_CHUNK, max_bytes + 1 - len(raw)))
        if not chunk:
            break
        raw += chunk
        if len(raw) > max_bytes:
            raise PayloadTooLargeError(max_bytes)
    if encoding == "gzip":
        return inflate(bytes(raw), max_bytes)
    return bytes(raw)


def _content_type() -> str:
    mimetype = request.mimetype
    if mimetype not in (otlp.PROTOBUF, otlp.JSON):
        raise UnsupportedContentTypeError(
            f"Content-Type {request.content_type or '(none)'!r} is not supported; "
            f"send {otlp.PROTOBUF} or {otlp.JSON}"
        )
    return mimetype


def _encode(message: Message, content_type: str) -> bytes:
    if content_type == otlp.JSON:
        return orjson.dumps(json_format.MessageToDict(message))
    return message.SerializeToString()


def status_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` encoded as the request was (JSON or protobuf)."""
    return _encode(status_pb2.Status(code=code, message=message), content_type)


def _status(code: int, message: str, content_type: str, http_status: int) -> Response:
    body = status_body(code, message, content_type)
    response = Response(body, status=http_status, content_type=content_type)
    if http_status == 503:
        response.headers["Retry-After"] = "5"
    return response


@dataclass(frozen=True)
class TokenRefusal:
    """Why a request to the receiver is refused before its body is read."""

    status: int
    rpc_code: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def check_token(
    token: str, attempts: TokenAttempts, authorization: str, address: str | None
) -> TokenRefusal | None:
    """None when ``authorization`` carries the bearer ``token`` and ``address`` may try it.

    Called by the handler and, under :mod:`instrumentation.serving`, as soon as the headers
    are in (:mod:`dashboard.limits`), so an unauthenticated client never gets to send a body.
    """
    # The right token always passes, even from an address with failures: a neighbour's wrong
    # guesses must never lock the stack's own exporters out.
    wait = check_bearer(authorization, token, attempts, address)
    if wait is None:
        return None
    if wait:
        return TokenRefusal(
            429,
            8,
            f"too many wrong tokens from this address; retry in {wait} s",
            (("Retry-After", str(wait)),),
        )
    return TokenRefusal(
        401,
        16,
        "missing or wrong bearer token: set the exporter's Authorization "
        "header to 'Bearer <VRP_DASHBOARD_TOKEN>'",
    )


def create_receiver_blueprint(
    settings: DashboardSettings, writer: GroupWriter, attempts: TokenAttempts
) -> Blueprint:
    """The ``/v1/*`` endpoints writing through ``writer``; wrong tokens count in ``attempts``."""
    blueprint = Blueprint("otlp_receiver", __name__)
    token = settings.token

    def handle(signal: str) -> Response:
        reply_type = request.mimetype if request.mimetype == otlp.JSON else otlp.PROTOBUF
        if token is not None:
            authorization = request.headers.get("Authorization", "")
            refused = check_token(token, attempts, authorization, request.remote_addr)
            if refused is not None:
                response = _status(refused.rpc_code, refused.message, reply_type, refused.status)
                response.headers.extend(refused.headers)
                return response
        decode, store_signal, response_type, rejected_field = _SIGNALS[signal]
        try:
            content_type = _content_type()
            body = _read_body(settings.max_body_bytes)
            with writer.decode_slot():
                decoded = decode(body, content_type)
                count = len(decoded.records)
                pending = writer.prepare(store_signal, decoded.take_records())
            writer.commit(pending)
        except UnsupportedContentTypeError as exc:
            return _status(3, str(exc), reply_type, 415)
        except PayloadTooLargeError as exc:
            return _status(8, str(exc), reply_type, 413)
        except PayloadDecodeError as exc:
            return _status(3, str(exc), reply_type, 400)
        except RecordsRefusedError as exc:
            decoded.rejected += count
            decoded.error_message = decoded.error_message or str(exc)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("telemetry store write failed for %s: %s", signal, type(exc).__name__)
            return _status(14, "telemetry store unavailable; retry later", content_type, 503)
        response: Any = response_type()
        if decoded.rejected:
            setattr(g, REJECTED_KEY, decoded.rejected)
            setattr(response.partial_success, rejected_field, decoded.rejected)
            response.partial_success.error_message = decoded.error_message
        return Response(_encode(response, content_type), status=200, content_type=content_type)

    for signal in _SIGNALS:
        blueprint.add_url_rule(
            f"/v1/{signal}",
            endpoint=signal,
            view_func=lambda signal=signal: handle(signal),
            methods=["POST"],
        )
    return blueprint
