"""A local OTLP/HTTP sink for benchmarks: accepts exports, counts them, keeps nothing.

Run it as its own process (``python benchmarks/sink.py --port 4318``) so that receiving
telemetry never competes for the interpreter lock of the process being measured.

* ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``: reads the whole body and answers ``200``
  with an empty protobuf body (an empty ``Export*ServiceResponse`` serialises to zero bytes),
  ``Content-Type: application/x-protobuf``, as an OTLP/HTTP receiver does. Other paths get 404;
  a body without ``Content-Length`` gets 411 (the SDK exporters always send one).
* ``GET /stats``: JSON ``{signal: {"requests", "bytes", "items"}}`` since start. ``items`` is the
  number of spans, metric data points or log records decoded from the bodies, so a benchmark can
  check that nothing it emitted was dropped on the way; it is ``null`` when the OTLP protobuf
  classes are not importable (``opentelemetry-proto`` is not installed).

Connections are kept alive (HTTP/1.1), one thread per connection
(:class:`~http.server.ThreadingHTTPServer`), which is plenty for a sink. SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

SIGNALS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}

ItemCounter = Callable[[bytes], int]


def _span_count(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


def _log_record_count(body: bytes) -> int:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest.FromString(body)
    return sum(
        len(scope.log_records)
        for resource in request.resource_logs
        for scope in resource.scope_logs
    )


def _data_point_count(body: bytes) -> int:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    request = ExportMetricsServiceRequest.FromString(body)
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


_ITEM_COUNTERS: dict[str, ItemCounter] = {
    "traces": _span_count,
    "metrics": _data_point_count,
    "logs": _log_record_count,
}


class Counts:
    """Thread-safe per-signal totals of requests, body bytes and decoded items."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, int | None]] = {
            name: {"requests": 0, "bytes": 0, "items": 0} for name in SIGNALS.values()
        }

    def add(self, signal_name: str, size: int, items: int | None) -> None:
        with self._lock:
            totals = self._totals[signal_name]
            totals["requests"] = (totals["requests"] or 0) + 1
            totals["bytes"] = (totals["bytes"] or 0) + size
            previous = totals["items"]
            totals["items"] = None if previous is None or items is None else previous + items

    def snapshot(self) -> dict[str, dict[str, int | None]]:
        with self._lock:
            return {name: dict(totals) for name, totals in self._totals.items()}


def count_items(signal_name: str, body: bytes, encoding: str | None) -> int | None:
    """Items in one export body, or ``None`` when it cannot be decoded here."""
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        return _ITEM_COUNTERS[signal_name](body)
    except Exception:  # no protobuf classes, or a body that is not OTLP: count bytes only
        return None


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, SinkHandler)
        self.counts = Counts()


class SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SinkServer

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._reply(411, b"", "text/plain")
            return
        body = self.rfile.read(int(length))
        signal_name = SIGNALS.get(self.path.partition("?")[0])
        if signal_name is None:
            self._reply(404, b"", "text/plain")
            return
        items = count_items(signal_name, body, self.headers.get("Content-Encoding"))
        self.server.counts.add(signal_name, len(body), items)
        self._reply(200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(404, b"", "text/plain")
            return
        body = json.dumps(self.server.counts.snapshot()).encode()
        self._reply(200, body, "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    server = SinkServer((args.host, args.port))
    print(f"OTLP sink listening on http://{args.host}:{server.server_port}", file=sys.stderr)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
