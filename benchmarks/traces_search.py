"""How long ``/api/traces`` searches take on the panels benchmark's stores (1,000,000 spans).

Run ``.venv/bin/python benchmarks/traces_search.py --stores DIR`` with the folder that
``benchmarks/panels.py --stores DIR`` filled (``--fill-only`` fills it; a fresh folder is filled
here first, which takes some 15 minutes for the large store).

What is measured, in one run
    The Traces page's searches (100 traces a page, slowest first) through the Flask test client
    over the last 1 h, 24 h and 7 d: no filter, ``operation`` in another case, an attribute of
    the root span (``http.response.status_code=500``, 2% of the requests), an attribute of a
    child span (``vrp.db.session.outcome=commit``, every request), a key that exists, and the
    second page. ``--repeat`` calls each, interleaved between the 10,000- and the 1,000,000-span
    store; the figures are median latencies, and ``searched since`` says where an attribute
    search stopped reading (it reads at most ``dashboard.trace_search.SCAN_SPANS`` spans).

Target: every median < 100 ms on the large store. An attribute search reads spans (their JSON
has no index), so its cost grows with the spans of the range up to the scan limit, and stops
growing there: the ratio to the small store is reported, not held to 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Runnable as a script (`python benchmarks/traces_search.py`) as well as with -m.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.panels import _folder, _stores
from dashboard.server import create_server
from dashboard.settings import DashboardSettings
from dashboard.trace_search import SCAN_SPANS

RANGES = ("1h", "24h", "7d")
MAX_MEDIAN_MS = 100.0
SEARCHES: dict[str, dict[str, Any]] = {
    "slowest": {},
    "operation, any case": {"operation": "get /API/RECORDINGS"},
    "root attribute": {"attribute": "http.response.status_code=500"},
    "child attribute": {"attribute": "vrp.db.session.outcome=commit"},
    "key exists": {"attribute": "vrp.request.id"},
    "second page": {"offset": 100},
}


def measure(
    apps: dict[str, Any], repeat: int, until: str
) -> tuple[dict[tuple[str, str, str], list[float]], dict[tuple[str, str, str], Any]]:
    """Latencies in ms per (store, search, range), and what each answered about its scan."""
    latencies: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    scans: dict[tuple[str, str, str], Any] = {}
    clients = {label: app.test_client() for label, app in apps.items()}
    for client in clients.values():  # warm-up: caches, first compiled statements
        client.get("/api/traces", query_string={"since": "7d", "until": until})
    for _ in range(repeat):
        for name, params in SEARCHES.items():
            for window in RANGES:
                for label, client in clients.items():
                    query = {"since": window, "until": until, "limit": 100, **params}
                    started = time.perf_counter()
                    response = client.get("/api/traces", query_string=query)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{query} answered {response.status_code}")
                    latencies[(label, name, window)].append(elapsed)
                    body = response.get_json()
                    scans[(label, name, window)] = (
                        len(body["traces"]),
                        body["search"]["searched_since"],
                    )
    return latencies, scans


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="spans in the large store")
    parser.add_argument("--small", type=int, default=10_000, help="spans in the small store")
    parser.add_argument("--repeat", type=int, default=11, help="calls per search and range")
    parser.add_argument("--stores", type=Path, help="the folder panels.py --stores filled")
    args = parser.parse_args(argv)

    with _folder(args.stores) as folder:
        stores, _, now_ns = _stores(folder, {"small": args.small, "large": args.large})
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9))
        apps = {
            label: create_server(
                DashboardSettings(store_url=f"sqlite:///{folder}/{label}.db"), store=store
            )
            for label, store in stores.items()
        }
        latencies, scans = measure(apps, args.repeat, until)
        for app in apps.values():
            app.store.dispose()

    print("Trace search: median latency of /api/traces (100 a page), Flask test client, SQLite")
    print(
        f"  stores: small {args.small:,} spans, large {args.large:,} spans, 7 days each; "
        f"{args.repeat} calls per cell; an attribute search reads at most {SCAN_SPANS:,} spans"
    )
    print(
        f"  {'search':<22}{'range':>6}{'small ms':>10}{'large ms':>10}{'ratio':>7}"
        f"{'found':>7}  {'searched since (large)':<26}verdict"
    )
    worst = 0.0
    for name in SEARCHES:
        for window in RANGES:
            small = statistics.median(latencies[("small", name, window)])
            large = statistics.median(latencies[("large", name, window)])
            found, since = scans[("large", name, window)]
            worst = max(worst, large)
            verdict = "PASS" if large < MAX_MEDIAN_MS else "MISS"
            print(
                f"  {name:<22}{window:>6}{small:>10.2f}{large:>10.2f}{large / small:>7.2f}"
                f"{found:>7}  {since or 'whole range':<26}{verdict}"
            )
    verdict = "PASS" if worst < MAX_MEDIAN_MS else "MISS"
    print(f"  worst median ms (large) {worst:8.2f}  < {MAX_MEDIAN_MS:.0f}  {verdict}")


if __name__ == "__main__":
    main()
