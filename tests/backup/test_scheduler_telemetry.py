"""A scheduled run reports over OTLP as ``vrp-scheduler``, its prune a child of ``backup.run``."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from backup.state import read_state

ROOT = Path(__file__).resolve().parents[2]


class _Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.traces: list[bytes] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            self.server.traces.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _attributes(items: Any) -> dict[str, object]:
    def value(v: AnyValue) -> object:
        return getattr(v, v.WhichOneof("value"))

    return {item.key: value(item.value) for item in items}


def test_a_scheduled_run_and_its_prune_reach_otlp_as_vrp_scheduler(
    tmp_path: Path, sink: _Sink
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{sink.server_port}",
        VRP_LOG_FORMAT="json",
    )
    vrp = [sys.executable, "-m", "recorder.cli"]
    upgrade = subprocess.run([*vrp, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True)
    assert upgrade.returncode == 0, upgrade.stderr
    process = subprocess.Popen(
        [*vrp, "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while (s := read_state(tmp_path / "var" / "backups")) is None or s.last_outcome is None:
            assert time.monotonic() < deadline, "no scheduled run within a minute"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]

    spans: dict[str, Any] = {}
    service_of: dict[str, object] = {}
    for body in sink.traces:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            service = _attributes(resource_spans.resource.attributes)["service.name"]
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    spans[span.name] = span
                    service_of[span.name] = service
    assert service_of["backup.run"] == service_of["backup.prune"] == "vrp-scheduler"
    run = spans["backup.run"]
    attributes = _attributes(run.attributes)
    assert attributes["vrp.backup.trigger"] == "schedule"
    assert attributes["vrp.backup.status"] == "success"
    assert attributes["vrp.backup.verified"] is True
    prune = spans["backup.prune"]
    assert prune.parent_span_id == run.span_id
    assert _attributes(prune.attributes)["vrp.backup.pruned"] == 0
