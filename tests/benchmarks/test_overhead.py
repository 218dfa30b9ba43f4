"""``benchmarks/overhead.py`` runs end to end, and its replay reproduces ``full``'s telemetry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from benchmarks import overhead, replay
from instrumentation.testing import InMemoryTelemetry

ROOT = Path(__file__).resolve().parents[2]


def _tree(node: replay.Node) -> tuple[object, ...]:
    return (node.name, node.kind, tuple(_tree(child) for child in node.children))


def test_capture_holds_the_contract_tree_for_every_operation(tmp_path: Path) -> None:
    templates = overhead.capture_templates(tmp_path, overhead.make_wav())

    assert set(templates) == set(overhead.OPERATIONS)
    for operation, template in templates.items():
        (server,) = template.roots
        assert server.kind is SpanKind.SERVER, operation
        assert server.attributes["http.response.status_code"] in (200, 201)
        # Besides the request's step spans (routing, parsing, storage, serialising), one
        # database session.
        steps = [child for child in server.children if child.kind is SpanKind.INTERNAL]
        (session,) = [child for child in steps if child.name == "db.session"]
        assert {child.name for child in steps} >= {"http.request.route", "http.response.finalize"}
        (transaction,) = session.children
        assert transaction.name == "db.transaction"
        assert transaction.attributes["vrp.db.transaction.outcome"] == "commit"
        statements = transaction.children
        assert statements, operation
        assert all(span.kind is SpanKind.CLIENT for span in statements)
        assert all("db.query.text" in span.attributes for span in statements)
        names = [point.instrument.name for point in _points(server)]
        assert names.count("http.server.request.duration") == 1
        assert names.count("db.client.operation.duration") >= len(statements)


def _points(node: replay.Node) -> list[replay.Point]:
    return [*node.points, *(point for child in node.children for point in _points(child))]


def test_replay_emits_the_captured_spans_and_points(tmp_path: Path) -> None:
    template = overhead.capture_templates(tmp_path, overhead.make_wav())["get"]
    telemetry = InMemoryTelemetry()
    replayer = replay.Replayer(telemetry.tracer_provider, telemetry.meter_provider)
    calls: list[str] = []

    replayer.request(template, lambda: calls.append("app"))

    assert calls == ["app"]
    spans = telemetry.span_exporter.get_finished_spans()
    captured = {(n.name, tuple(sorted(n.attributes.items()))) for n in _nodes(template.roots)}
    replayed = {(s.name, tuple(sorted((s.attributes or {}).items()))) for s in spans}
    assert replayed == captured
    assert len(spans) == len(list(_nodes(template.roots)))
    by_id = {span.context.span_id: span for span in spans}
    (root,) = [span for span in spans if span.parent is None]
    assert root.kind is SpanKind.SERVER
    assert all(span.parent is None or span.parent.span_id in by_id for span in spans)
    recorded = {
        metric.name
        for resource in telemetry.metric_reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert {point.instrument.name for point in _points(template.roots[0])} <= recorded


def _nodes(nodes: list[replay.Node]):
    for node in nodes:
        yield node
        yield from _nodes(node.children)


def test_quick_run_reports_every_configuration_and_loses_nothing() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "overhead.py"),
            "--quick",
            "--sdk-calls",
            "--logs",
            "--no-steps",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    rows = {
        match["name"]: (float(match["spans"]), float(match["points"]), float(match["logs"]))
        for match in re.finditer(
            r"^(?P<name>off|full|ratio10|replay|replay10|nosteps)\s+\d+\s.*"
            r"\s(?P<spans>\d+\.\d\d)\s+(?P<points>\d+\.\d\d)\s+(?P<logs>\d+\.\d\d)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {*overhead.CONFIGURATIONS, overhead.NO_STEPS}
    assert rows["off"] == (0, 0, 0)
    assert rows["replay"][0] == rows["full"][0] > 3
    assert rows["replay"][1] == rows["full"][1] > 3
    # The canonical log line: one record per request.
    assert rows["full"][2] == rows["ratio10"][2] == rows["replay"][2] == 1
    # Without step spans: 9 fewer on a create, 3 on a get, 4 on a list, 5 on an update; the
    # metric points and the log record stay.
    assert rows["nosteps"] == (rows["full"][0] - 21 / 4, rows["full"][1], 1)
    delivered = re.search(
        r"sink received spans (\d+) of (\d+) ended, log records (\d+) of (\d+)", out
    )
    assert delivered is not None
    assert delivered[1] == delivered[2]
    assert delivered[3] == delivered[4]
    assert "full / off" in out and "ratio10 / off" in out and "nosteps / off" in out
    assert re.search(r"^  in a loop, on the caller\s+\d+\.\d us$", out, re.MULTILINE)
    per_request = re.search(r"^  in full's requests, on .* \((\d\.\d\d) records", out, re.M)
    assert per_request is not None
    assert float(per_request[1]) == 1.0
    assert re.search(r"^  one record in a request, export incl\., us\s+\d", out, re.MULTILINE)
    calls = re.search(r"^  start_span\s+\d+\.\d\d\s+(\d+\.\d\d)\s", out, re.MULTILINE)
    assert calls is not None
    assert float(calls[1]) == rows["full"][0]


def test_contrib_without_its_venv_says_how_to_get_it() -> None:
    try:
        import opentelemetry.instrumentation.flask  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the contrib instrumentations are installed in this environment")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--quick", "--contrib"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "make bench-contrib" in result.stderr
