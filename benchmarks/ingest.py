"""How fast the dashboard ingests spans, against the floor of merely reading them.

Run ``.venv/bin/python benchmarks/ingest.py`` (``--quick`` for a smoke run of a few seconds).

What is measured, in one run
    1. ingest: spans per second through HTTP POSTs of OTLP protobuf batches of 512 spans (the
       SDK's default export batch) to one receiver process (``vrp dashboard``'s server under
       waitress) writing into the default store, a SQLite file in WAL mode: raw spans, minute
       and hour rollups, query examples and N+1 checks included. The clock runs from the first
       POST until the last batch is readable through ``/api/`` (its trace found by
       ``/api/traces/<id>`` and every span counted by ``/api/operations``). The client posts
       from ``--clients`` threads (8: several services exporting at once) over keep-alive
       connections, bodies serialised beforehand; waitress serves as ``vrp dashboard`` does.
    2. floor: the same bodies parsed with ``ExportTraceServiceRequest.FromString`` and every
       field of every span (ids, parent, name, kind, times, status, attributes) read into
       Python values, storing nothing, in this process.

Target: ingest / floor >= 0.3.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Runnable as a script (`python benchmarks/ingest.py`) as well as with -m.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.otlp_data import SPANS_PER_REQUEST, batches

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.3
SPANS_PER_BATCH = 512


def serve(store_url: str) -> None:
    """The receiver process: a dashboard server on a free port, printed on stdout."""
    import logging

    import waitress

    from dashboard.cli import WAITRESS_OPTIONS, tune_for_serving
    from dashboard.server import create_server
    from dashboard.settings import DashboardSettings

    app = create_server(DashboardSettings(store_url=store_url))
    # A queue of requests is the point of the benchmark: no warning per queued request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = waitress.create_server(app, host="127.0.0.1", port=0, **WAITRESS_OPTIONS)
    sys.stdout.write(f"{server.effective_port}\n")
    sys.stdout.flush()
    # As `vrp dashboard` does before serving (dashboard/cli.py).
    tune_for_serving()
    server.run()


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def floor_rate(bodies: Sequence[bytes]) -> float:
    """Spans per second parsed and read into Python values, nothing stored."""
    spans = 0
    sink: list[tuple[Any, ...]] = []
    start = time.perf_counter()
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {kv.key: _any_value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    sink.append(
                        (
                            resource,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            span.status.code,
                            span.status.message,
                            {kv.key: _any_value(kv.value) for kv in span.attributes},
                        )
                    )
                    spans += 1
        sink.clear()
    return spans / (time.perf_counter() - start)


class Receiver:
    def __init__(self, store_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ingest", "--serve", store_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def get(self, path: str) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, orjson.loads(body) if body else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def stored_spans(receiver: Receiver) -> int:
    """Spans counted by the rollups: operations (server, internal) plus statements."""
    _, operations = receiver.get("/api/operations?since=7d")
    _, queries = receiver.get("/api/queries?since=7d")
    return sum(o["count"] for o in operations["operations"]) + sum(
        q["count"] for q in queries["queries"]
    )


def ingest_rate(
    receiver: Receiver, bodies: Sequence[bytes], last_trace: str, clients: int
) -> float:
    """Spans per second from the first POST until the last batch is readable through /api/."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=120)
        headers = {"Content-Type": "application/x-protobuf"}
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            connection.request("POST", "/v1/traces", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"POST answered {response.status}")
        connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = len(bodies) * SPANS_PER_BATCH
    deadline = time.monotonic() + 120
    while True:
        if failures:
            raise SystemExit(f"ingest failed: {failures[0]}")
        status, _ = receiver.get(f"/api/traces/{last_trace}")
        counted = stored_spans(receiver)
        if status == 200 and counted >= expected:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counted} of {expected} spans readable after 120 s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    if counted != expected:
        raise SystemExit(f"/api/operations counts {counted} spans, {expected} were sent")
    return expected / elapsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--batches", type=int, default=400, help="batches of 512 spans per run")
    parser.add_argument("--runs", type=int, default=3, help="runs; the medians are reported")
    parser.add_argument("--clients", type=int, default=8, help="posting threads")
    parser.add_argument("--serve", metavar="STORE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    if args.quick:
        args.batches, args.runs = 12, 1

    ingest: list[float] = []
    floor: list[float] = []
    for run in range(args.runs):
        rng = random.Random(run)
        start_ns = time.time_ns() - 3600 * 10**9
        requests_ = batches(rng, args.batches, SPANS_PER_BATCH, start_ns, 5_000_000)
        bodies = [r.SerializeToString() for r in requests_]
        last_trace = requests_[-1].resource_spans[0].scope_spans[0].spans[-1].trace_id.hex()
        floor.append(floor_rate(bodies))
        with tempfile.TemporaryDirectory() as folder:
            receiver = Receiver(f"sqlite:///{folder}/telemetry.db")
            try:
                ingest.append(ingest_rate(receiver, bodies, last_trace, args.clients))
            finally:
                receiver.stop()
        floor.append(floor_rate(bodies))

    spans = args.batches * SPANS_PER_BATCH
    ingest_median, floor_median = statistics.median(ingest), statistics.median(floor)
    ratio = ingest_median / floor_median
    print("Dashboard ingest: OTLP/HTTP protobuf, 512 spans per POST, default SQLite store")
    requests_sent = spans // SPANS_PER_REQUEST
    print(f"  runs                  {args.runs} x {spans} spans ({requests_sent} requests)")
    print(f"  ingest                {ingest_median:12,.0f} spans/s  (runs: {_rates(ingest)})")
    print(f"  floor                 {floor_median:12,.0f} spans/s  (runs: {_rates(floor)})")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"  ingest/floor          {ratio:12.3f}  >= {TARGET}  {verdict}")


def _rates(values: Sequence[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
