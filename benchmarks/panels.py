"""How long the panels' API calls take, with a hundred times more telemetry in the store.

Run ``.venv/bin/python benchmarks/panels.py`` (``--quick`` for a smoke run of a few seconds).

What is measured, in one run
    Two default SQLite stores are filled with seven days of the recorder API's telemetry up to
    now: ``--large`` spans (1,000,000 by default) and ``--small`` spans (10,000), each request
    being the contract's six spans, plus their metrics as the SDK exports them: one delta
    exponential histogram point per 10 s interval and attribute set of
    ``http.server.request.duration`` and ``db.client.operation.duration`` (the requests'
    durations and their three statements'). Everything goes through the store's own batched
    writes, rollups included.
    Then ``/api/summary``, ``/api/operations`` and ``/api/queries`` are called through the Flask
    test client over the last 1 h, 24 h and 7 d, ``--repeat`` times each, interleaved between
    the two stores; the figures are median latencies.

``--alerts`` evaluates the dashboard's alert rules (:mod:`dashboard.alerts`) beside the calls, on
both stores, in a thread per store as the dashboard's evaluator runs, every ``--alert-interval``
seconds (1 s by default, thirty times as often as the dashboard's default), at the stores' "now";
the evaluations' own durations are printed too.

``--stores DIR`` keeps the filled stores in ``DIR`` and reuses them on later runs with the same
sizes (the calls then end at the time the stores were filled), so that iterating on the read
side does not refill them; ``--fill-only`` fills and stops, so the filling can run outside a
timing lock.

Targets: large / small <= 1.5 for every call and range, and every median < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Runnable as a script (`python benchmarks/panels.py`) as well as with -m.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.otlp_data import SPANS_PER_REQUEST, batches
from dashboard.histograms import ExpHistogram
from dashboard.otlp import MetricPoint, decode_traces
from dashboard.server import create_server
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from instrumentation import conventions as c

DAYS = 7
INTERVAL_NS = 10 * 10**9
ENDPOINTS = ("/api/summary", "/api/operations", "/api/queries")
RANGES = ("1h", "24h", "7d")
MAX_RATIO = 1.5
MAX_MEDIAN_MS = 100.0
WRITE_BATCH = 4096
POINT_SCALE = 10


def _points(
    service: str, name: str, by_key: dict[tuple[int, tuple[tuple[str, Any], ...]], list[float]]
) -> list[MetricPoint]:
    points = []
    for (interval, attributes), values in by_key.items():
        histogram = ExpHistogram(scale=POINT_SCALE)
        for value in values:
            histogram.record(value)
        attrs = dict(attributes)
        points.append(
            MetricPoint(
                service,
                f"{service}|{name}|{attributes}",
                name,
                "s",
                "exponential_histogram",
                1,
                False,
                attrs,
                interval * INTERVAL_NS,
                (interval + 1) * INTERVAL_NS,
                count=histogram.count,
                sum=histogram.sum,
                min=histogram.min,
                max=histogram.max,
                bucket_counts=histogram.counts,
                scale=POINT_SCALE,
                zero_count=histogram.zero_count,
                offset=histogram.offset,
            )
        )
    return points


def fill(store: TelemetryStore, spans: int, now_ns: int, seed: int) -> float:
    """Seven days of requests up to ``now_ns`` with their metrics; returns seconds taken."""
    started = time.perf_counter()
    requests_count = max(1, spans // SPANS_PER_REQUEST)
    step = DAYS * 86400 * 10**9 // requests_count
    rng = random.Random(seed)
    first = now_ns - DAYS * 86400 * 10**9
    per_batch = WRITE_BATCH - WRITE_BATCH % SPANS_PER_REQUEST
    count = -(-requests_count * SPANS_PER_REQUEST // per_batch)
    http: dict[tuple[int, tuple[tuple[str, Any], ...]], list[float]] = defaultdict(list)
    db: dict[tuple[int, tuple[tuple[str, Any], ...]], list[float]] = defaultdict(list)
    written = 0
    for request in batches(rng, count, per_batch, first, step):
        records = decode_traces(request.SerializeToString(), "application/x-protobuf").records
        records = records[: requests_count * SPANS_PER_REQUEST - written]
        written += len(records)
        store.write_spans(records)
        for record in records:
            seconds = (record.end_ns - record.start_ns) / 1e9
            interval = record.end_ns // INTERVAL_NS
            attrs = record.attributes
            if record.kind == 2:
                key = (
                    (c.HTTP_REQUEST_METHOD, attrs[c.HTTP_REQUEST_METHOD]),
                    (c.HTTP_ROUTE, attrs[c.HTTP_ROUTE]),
                    (c.HTTP_RESPONSE_STATUS_CODE, attrs[c.HTTP_RESPONSE_STATUS_CODE]),
                )
                http[(interval, key)].append(seconds)
            elif record.kind == 3:
                key = (
                    (c.DB_SYSTEM_NAME, "sqlite"),
                    (c.DB_OPERATION_NAME, "SELECT"),
                    (c.DB_COLLECTION_NAME, attrs[c.DB_COLLECTION_NAME]),
                    (c.DB_QUERY_SUMMARY, record.name),
                )
                db[(interval, key)].append(seconds)
    points = _points("vrp-api", c.HTTP_SERVER_REQUEST_DURATION, http) + _points(
        "vrp-api", c.DB_CLIENT_OPERATION_DURATION, db
    )
    points.sort(key=lambda p: p.time_ns)
    for start in range(0, len(points), WRITE_BATCH):
        store.write_metrics(points[start : start + WRITE_BATCH])
    return time.perf_counter() - started


def measure(
    apps: dict[str, Any], repeat: int, until: str
) -> dict[tuple[str, str, str], list[float]]:
    """Latencies in ms per (store, endpoint, range), calls interleaved between the stores."""
    latencies: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    clients = {label: app.test_client() for label, app in apps.items()}
    for client in clients.values():  # warm-up: caches, first compiled statements
        for endpoint in ENDPOINTS:
            client.get(endpoint, query_string={"since": "7d", "until": until})
    for _ in range(repeat):
        for endpoint in ENDPOINTS:
            for window in RANGES:
                for label, client in clients.items():
                    started = time.perf_counter()
                    response = client.get(endpoint, query_string={"since": window, "until": until})
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{endpoint} answered {response.status_code}")
                    latencies[(label, endpoint, window)].append(elapsed)
    return latencies


@contextmanager
def _evaluating(
    apps: dict[str, Any], interval: float | None, now: float
) -> Iterator[dict[str, list[float]]]:
    """Alert evaluations at ``now`` every ``interval`` seconds per app, in threads of their own,
    while the body runs (none when ``interval`` is None); yields their durations in ms."""
    durations: dict[str, list[float]] = {label: [] for label in apps}
    if interval is None:
        yield durations
        return
    stop = threading.Event()

    def run(label: str, app: Any) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            app.alerts.evaluate(now)
            durations[label].append((time.perf_counter() - started) * 1000)
            stop.wait(interval)

    threads = [
        threading.Thread(target=run, args=(label, app), name=f"alerts-{label}", daemon=True)
        for label, app in apps.items()
    ]
    for thread in threads:
        thread.start()
    try:
        yield durations
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


@contextmanager
def _folder(kept: Path | None) -> Iterator[Path]:
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _stores(
    folder: Path, sizes: dict[str, int]
) -> tuple[dict[str, TelemetryStore], dict[str, float], int]:
    """The filled stores in ``folder``, their fill times and their "now": reused if they match."""
    stamp = folder / "panels.json"
    if stamp.exists():
        kept = json.loads(stamp.read_text())
        if kept["sizes"] == sizes:
            stores = {label: TelemetryStore(f"sqlite:///{folder}/{label}.db") for label in sizes}
            return stores, kept["seconds"], kept["now_ns"]
        stamp.unlink()
    now_ns = time.time_ns()
    stores, seconds = {}, {}
    for label, spans in sizes.items():
        (folder / f"{label}.db").unlink(missing_ok=True)
        store = TelemetryStore(f"sqlite:///{folder}/{label}.db")
        store.upgrade()
        seconds[label] = fill(store, spans, now_ns, seed=len(label))
        stores[label] = store
    stamp.write_text(json.dumps({"sizes": sizes, "seconds": seconds, "now_ns": now_ns}))
    return stores, seconds, now_ns


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--large", type=int, default=1_000_000, help="spans in the large store")
    parser.add_argument("--small", type=int, default=10_000, help="spans in the small store")
    parser.add_argument("--repeat", type=int, default=21, help="calls per endpoint and range")
    parser.add_argument(
        "--stores", type=Path, help="keep the filled stores here and reuse them on later runs"
    )
    parser.add_argument("--fill-only", action="store_true", help="fill the stores and stop")
    parser.add_argument(
        "--alerts", action="store_true", help="evaluate the alert rules beside the calls"
    )
    parser.add_argument(
        "--alert-interval", type=float, default=1.0, help="seconds between alert evaluations"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.small, args.repeat = 12_000, 1_200, 3

    with _folder(args.stores) as folder:
        stores, seeded, now_ns = _stores(folder, {"small": args.small, "large": args.large})
        if args.fill_only:
            for store in stores.values():
                store.dispose()
            return
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9))
        apps = {
            label: create_server(
                DashboardSettings(store_url=f"sqlite:///{folder}/{label}.db"), store=store
            )
            for label, store in stores.items()
        }
        interval = args.alert_interval if args.alerts else None
        with _evaluating(apps, interval, now_ns / 1e9) as evaluations:
            latencies = measure(apps, args.repeat, until)
        for app in apps.values():
            app.store.dispose()

    print("Dashboard panels: median latency of the API calls, Flask test client, SQLite store")
    print(
        f"  stores: small {args.small:,} spans (filled in {seeded['small']:.0f} s), "
        f"large {args.large:,} spans (filled in {seeded['large']:.0f} s), "
        f"7 days each; {args.repeat} calls per cell"
    )
    if args.alerts:
        for label in ("small", "large"):
            spent = evaluations[label]
            print(
                f"  alert evaluations beside the calls, {label} store: {len(spent)}, every "
                f"{args.alert_interval:g} s, median {statistics.median(spent):.1f} ms, "
                f"max {max(spent):.1f} ms"
            )
    print(f"  {'call':<18}{'range':>6}{'small ms':>11}{'large ms':>11}{'ratio':>8}  verdict")
    worst_ratio, worst_median = 0.0, 0.0
    for endpoint in ENDPOINTS:
        for window in RANGES:
            small = statistics.median(latencies[("small", endpoint, window)])
            large = statistics.median(latencies[("large", endpoint, window)])
            ratio = large / small
            worst_ratio, worst_median = max(worst_ratio, ratio), max(worst_median, large, small)
            verdict = "PASS" if ratio <= MAX_RATIO and large < MAX_MEDIAN_MS else "MISS"
            print(
                f"  {endpoint:<18}{window:>6}{small:>11.2f}{large:>11.2f}{ratio:>8.2f}  {verdict}"
            )
    ratio_verdict = "PASS" if worst_ratio <= MAX_RATIO else "MISS"
    median_verdict = "PASS" if worst_median < MAX_MEDIAN_MS else "MISS"
    print(f"  worst ratio           {worst_ratio:8.2f}  <= {MAX_RATIO}  {ratio_verdict}")
    print(f"  worst median ms       {worst_median:8.2f}  < {MAX_MEDIAN_MS:.0f}  {median_verdict}")


if __name__ == "__main__":
    main()
