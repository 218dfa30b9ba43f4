"""The receiver speaks OTLP/HTTP as specified: JSON mapping, gzip, partial success."""

from __future__ import annotations

import gzip
import time

import orjson
import requests
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from instrumentation import conventions as c
from tests.dashboard.conftest import Live
from tests.dashboard.otlp_bodies import TEMPORALITY_DELTA, histogram_request, span, traces_request

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def test_otlp_json_with_hex_ids_numeric_enums_and_string_integers_is_stored(live: Live) -> None:
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": SPAN_ID,
                                "parentSpanId": "",
                                "name": "GET /json",
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [
                                    {
                                        "key": "http.response.status_code",
                                        "value": {"intValue": "200"},
                                    },
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"stringValue": "a"},
                                                    {"boolValue": True},
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "status": {"code": 2, "message": "boom"},
                                "unknownFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = requests.post(
        f"{live.url}/v1/traces",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    tree = live.get(f"/api/traces/{TRACE_ID}")
    [stored] = tree["spans"]
    assert (stored["span_id"], stored["kind"], stored["status"]) == (SPAN_ID, "SERVER", "error")
    assert stored["attributes"] == {"http.response.status_code": 200, "tags": ["a", True]}
    assert abs(stored["duration_ms"] - 5.0) < 1e-6


def test_gzip_from_the_sdk_exporter_is_inflated_and_stored(live: Live) -> None:
    provider = TracerProvider(resource=Resource.create({c.SERVICE_NAME: "gzip-svc"}))
    exporter = OTLPSpanExporter(endpoint=f"{live.url}/v1/traces", compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("zipped") as zipped:
        pass
    provider.shutdown()
    trace_id = format(zipped.get_span_context().trace_id, "032x")
    assert [s["name"] for s in live.get(f"/api/traces/{trace_id}")["spans"]] == ["zipped"]


def test_malformed_items_are_refused_through_partial_success(live: Live) -> None:
    now = time.time_ns()
    good = span(bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID), "ok", now, 1000)
    bad = span(b"\x01" * 8, b"\x02" * 8, "short trace id", now, 1000)
    response = requests.post(
        f"{live.url}/v1/traces",
        data=gzip.compress(traces_request([good, bad]).SerializeToString()),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert response.status_code == 200
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_spans == 1
    assert "trace id" in reply.partial_success.error_message
    assert len(live.get(f"/api/traces/{TRACE_ID}")["spans"]) == 1

    metrics = histogram_request(
        c.HTTP_SERVER_REQUEST_DURATION, [(now - 10**9, now, [0.1])], temporality=TEMPORALITY_DELTA
    )
    metrics.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[
        0
    ].scale = 99
    response = requests.post(
        f"{live.url}/v1/metrics",
        data=metrics.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    reply_metrics = ExportMetricsServiceResponse.FromString(response.content)
    assert MessageToDict(reply_metrics)["partialSuccess"]["rejectedDataPoints"] == "1"
