"""A manual ``vrp backup run``'s spans and metrics reach an OTLP/HTTP receiver through the real
SDK exporters, with the names and attributes of DESIGN.md, under service name ``vrp-cli``."""

from __future__ import annotations

import gzip
import json
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
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from recorder.local_dashboard import up_state
from tests.backup.helpers import write_blob

REPO = Path(__file__).resolve().parents[2]
PHASES = ["backup.snapshot", "backup.blobs", "backup.manifest", "backup.verify"]


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": [], "/v1/logs": []}
        self.authorizations: set[str] = set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies.setdefault(self.path, []).append(body)
        self.server.authorizations.add(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not the access log."""


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _value(value: AnyValue) -> object:
    return getattr(value, value.WhichOneof("value"))


def _attributes(items: Any) -> dict[str, object]:
    return {item.key: _value(item.value) for item in items}


def _vrp(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_manual_run_exports_its_span_tree_and_metrics_over_otlp(
    tmp_path: Path, receiver: _Receiver
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(REPO),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}",
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0
    write_blob(tmp_path / "var" / "recordings", b"not referenced by any row")

    done = _vrp(tmp_path, env, "backup", "run")
    assert done.returncode == 0, done.stderr

    spans = {}
    resources = set()
    for body in receiver.bodies["/v1/traces"]:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resources.add(_attributes(resource_spans.resource.attributes)["service.name"])
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    spans[span.name] = span
    assert resources == {"vrp-cli"}
    run = spans["backup.run"]
    attributes = _attributes(run.attributes)
    assert attributes["vrp.backup.trigger"] == "manual"
    assert attributes["vrp.backup.status"] == "success"
    assert attributes["vrp.backup.verified"] is True
    assert attributes["vrp.backup.files"] == 1
    assert attributes["vrp.backup.bytes"] > 0 and attributes["vrp.backup.stored_bytes"] > 0
    assert str(attributes["vrp.backup.id"]) in done.stdout
    identity = _identity(tmp_path)
    assert {k: attributes[k] for k in identity} == identity
    for phase in PHASES:
        assert spans[phase].parent_span_id == run.span_id, phase
        assert spans[phase].trace_id == run.trace_id

    metrics: dict[str, Any] = {}
    for body in receiver.bodies["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    metrics[metric.name] = metric
    duration = metrics["vrp.backup.duration"]
    assert duration.unit == "s"
    kind = duration.WhichOneof("data")
    assert kind in ("histogram", "exponential_histogram")
    (point,) = getattr(duration, kind).data_points
    assert point.count == 1
    assert _attributes(point.attributes) == {"vrp.backup.status": "success", **identity}
    last_success = metrics["vrp.backup.last_success"]
    (gauge_point,) = last_success.gauge.data_points
    assert gauge_point.as_double > 1.7e9
    assert _attributes(gauge_point.attributes) == identity

    backup_id = str(attributes["vrp.backup.id"])
    restored = _vrp(tmp_path, env, "backup", "restore", backup_id, "--to", "restored.db")
    assert restored.returncode == 0, restored.stderr
    [restore] = [
        span
        for body in receiver.bodies["/v1/traces"]
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
        if span.name == "backup.restore"
    ]
    assert _attributes(restore.attributes) == {
        "vrp.backup.id": backup_id,
        "vrp.backup.status": "success",
        **identity,
    }


def _identity(home: Path) -> dict[str, object]:
    """What every run of the checkout at ``home`` carries: its repository and its database."""
    marker = json.loads((home / "var" / "backups" / "repository.json").read_text())
    return {
        "vrp.backup.repository.id": marker["id"],
        "vrp.backup.database": f"sqlite:///{home / 'var' / 'vrp.db'}",
    }


def _plain_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    return {**env, "PYTHONPATH": str(REPO), "OTEL_METRIC_EXPORT_INTERVAL": "60000", **extra}


def _span_services(receiver: _Receiver) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for body in receiver.bodies["/v1/traces"]:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            service = str(_attributes(resource_spans.resource.attributes)["service.name"])
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found.setdefault(span.name, set()).add(service)
    return found


def test_a_manual_run_without_an_endpoint_reports_to_the_vrp_up_of_its_folder(
    tmp_path: Path, receiver: _Receiver
) -> None:
    env = _plain_env()
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0
    endpoint = f"http://127.0.0.1:{receiver.server_port}"

    with up_state(endpoint, "s3cret-token", cwd=tmp_path) as announced:
        assert announced.stat().st_mode & 0o777 == 0o600
        done = _vrp(tmp_path, env, "backup", "run")

    assert done.returncode == 0, done.stderr
    assert _span_services(receiver)["backup.run"] == {"vrp-cli"}
    assert receiver.bodies["/v1/metrics"]
    assert receiver.authorizations == {"Bearer s3cret-token"}
    assert not announced.exists()


def test_a_dashboard_of_another_checkout_listening_on_the_port_gets_nothing(
    tmp_path: Path, receiver: _Receiver
) -> None:
    """Something listens on the dashboard's port, but no ``vrp up`` runs from this folder: it
    may be another stack's dashboard, and this checkout's runs must not show there."""
    env = _plain_env(VRP_DASHBOARD_PORT=str(receiver.server_port), VRP_LOG_LEVEL="DEBUG")
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0
    other = tmp_path / "other-checkout"
    other.mkdir()
    with up_state(f"http://127.0.0.1:{receiver.server_port}", None, cwd=other):
        done = _vrp(tmp_path, env, "backup", "run")

    assert done.returncode == 0, done.stderr
    assert receiver.bodies == {"/v1/traces": [], "/v1/metrics": [], "/v1/logs": []}
    assert "telemetry not exported: no OTLP endpoint is configured and no `vrp up` runs" in (
        done.stderr
    )


def test_a_vrp_up_state_file_left_by_a_dead_process_is_ignored(
    tmp_path: Path, receiver: _Receiver
) -> None:
    env = _plain_env()
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    (tmp_path / "var" / "vrp-up.json").write_text(
        json.dumps(
            {
                "pid": int(dead.stdout),
                "otlp_endpoint": f"http://127.0.0.1:{receiver.server_port}",
                "token": None,
            }
        )
    )

    done = _vrp(tmp_path, env, "backup", "run")

    assert done.returncode == 0, done.stderr
    assert receiver.bodies == {"/v1/traces": [], "/v1/metrics": [], "/v1/logs": []}


def test_a_manual_run_without_an_endpoint_or_a_dashboard_exports_nothing_and_warns_nothing(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = _plain_env(VRP_DASHBOARD_PORT=str(closed_port))
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0

    done = _vrp(tmp_path, env, "backup", "run")

    assert done.returncode == 0, done.stderr
    assert "opentelemetry.exporter" not in done.stderr
    assert "Connection refused" not in done.stderr


def _gauge_points(receiver: _Receiver, name: str) -> list[tuple[float, dict[str, object]]]:
    """Every exported point of the gauge ``name``, in the order they arrived."""
    return [
        (point.as_double, _attributes(point.attributes))
        for body in receiver.bodies["/v1/metrics"]
        for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.gauge.data_points
    ]


def test_the_scheduler_exports_its_next_run_then_none_when_it_stops(
    tmp_path: Path, receiver: _Receiver
) -> None:
    env = _plain_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}",
        VRP_BACKUP_SCHEDULE="every 6 hours",
    )
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "200"
    assert _vrp(tmp_path, env, "db", "upgrade").returncode == 0
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.time()
    try:
        deadline = time.monotonic() + 60
        while not any(value > 0 for value, _ in _gauge_points(receiver, "vrp.backup.next_run")):
            assert time.monotonic() < deadline, "no next run was exported"
            time.sleep(0.05)
        scheduler.send_signal(signal.SIGTERM)
        _, stderr = scheduler.communicate(timeout=60)
    finally:
        scheduler.kill()
    assert scheduler.returncode == 0, stderr

    identity = _identity(tmp_path)
    points = _gauge_points(receiver, "vrp.backup.next_run")
    assert points and all(attributes == identity for _, attributes in points)
    assert points[-1][0] == 0.0, "a stopped scheduler has no next run"
    planned = [value for value, _ in points if value > 0]
    assert all(started + 5.9 * 3600 < value < time.time() + 6 * 3600 for value in planned)
    [(success, attributes)] = _gauge_points(receiver, "vrp.backup.last_success")[-1:]
    assert success > started - 120 and attributes == identity
