"""The value of a user rule: one aggregate of a metric's or a span's rollups over a window.

The series of the metric (or of the spans of that name) are filtered by service, route and
attributes, grouped by ``group_by`` (``service`` by default; any other key is an attribute of
the series), and each group's rollup rows over the window are added up as ``/api/`` adds them
(minute rollups; the window starts at the minute it falls in). Durations (``avg``, ``max``,
``p50``, ``p95``, ``p99``) are milliseconds for histograms of seconds, as ``/api/`` shows them;
``rate`` is per second; ``sum`` of a counter is its increase over the window; ``last`` is a
gauge's value received last.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dashboard.alerts.rules import OPERATORS, Context, Rule, Sample
from dashboard.reads.rollups import select_series, window_totals
from dashboard.reads.totals import RollupTotal, Series
from dashboard.reads.window import TimeRange
from instrumentation import conventions as names


def _value(acc: RollupTotal, aggregate: str, seconds: float) -> float | None:
    if aggregate == "count":
        return float(acc.count)
    if aggregate == "rate":
        return acc.count / seconds
    if aggregate == "sum":
        return acc.sum
    if aggregate == "last":
        return acc.last_value
    if aggregate == "max":
        return None if acc.high is None else acc.high * acc.to_ms
    if not acc.count:
        return None
    if aggregate == "avg":
        return acc.sum / acc.count * acc.to_ms
    if aggregate == "error_rate":
        return acc.errors / acc.count
    if aggregate == "client_error_rate":
        return acc.client_errors / acc.count
    # All three at once: a group of one rollup row carries its stored p50/p95/p99, no buckets.
    p50, p95, p99 = acc.percentiles()
    return {"p50": p50, "p95": p95, "p99": p99}[aggregate]


def _matches(found: Series, wanted: dict[str, Any]) -> bool:
    attributes = found.attributes
    return all(str(attributes.get(key)) == str(value) for key, value in wanted.items())


def _group_value(found: Series, key: str) -> str:
    if key == "service":
        return found.service
    if key == "name":
        return found.name
    value = found.attributes.get(key)
    return "" if value is None else str(value)


def _url(data: dict[str, Any], labels: dict[str, str], wanted: dict[str, Any]) -> str:
    """Where to look: the traces of the span, or of the route when its method is known (a
    server span is named ``METHOD route``); else the page of the metric."""
    if data.get("span"):
        return "/traces?" + urlencode({"operation": data["span"]})
    route = labels.get(names.HTTP_ROUTE) or wanted.get(names.HTTP_ROUTE)
    method = labels.get(names.HTTP_REQUEST_METHOD) or wanted.get(names.HTTP_REQUEST_METHOD)
    if route and method:
        return "/traces?" + urlencode({"operation": f"{method} {route}"})
    if data["metric"].startswith((names.DB_CLIENT_CONNECTION_NAMESPACE, names.VRP_DB_NAMESPACE)):
        return "/transactions"
    if data["metric"].startswith("db."):
        return "/queries"
    return "/requests"


def user_rule(data: dict[str, Any]) -> Rule:
    """The :class:`Rule` of one validated entry of the rules file."""
    source, name = ("span", data["span"]) if data.get("span") else ("metric", data["metric"])
    wanted = dict(data["filter"].get("attributes") or {})
    if data["filter"].get("route"):
        wanted[names.HTTP_ROUTE] = data["filter"]["route"]
    service = data["filter"].get("service")
    group_by: list[str] = list(data["group_by"])
    operator, threshold = data["condition"]
    compare = OPERATORS[operator]
    window_s: float = data["window"]
    aggregate: str = data["aggregate"]

    def active(context: Context) -> list[Sample]:
        until = datetime.fromtimestamp(context.now, UTC)
        since = datetime.fromtimestamp(context.now - window_s, UTC)
        window = TimeRange(since, until, service)
        with context.store.read() as conn:
            found = [s for s in select_series(conn, source, [name], service) if _matches(s, wanted)]
            if not found:
                return []
            totals = window_totals(
                conn, found, window, lambda s: tuple(_group_value(s, key) for key in group_by)
            )
        samples = []
        for key, acc in sorted(totals.items()):
            value = _value(acc, aggregate, window_s)
            if value is None or not math.isfinite(value) or not compare(value, threshold):
                continue
            labels = dict(zip(group_by, key, strict=True))
            samples.append(Sample(labels, value, _url(data, labels, wanted)))
        return samples

    expression = (
        f"{aggregate}({source} {name!r}"
        + (f", service={service!r}" if service else "")
        + "".join(f", {k}={v!r}" for k, v in wanted.items())
        + f") over {window_s:g}s by ({', '.join(group_by)}) {operator} {threshold:g}"
    )
    return Rule(
        name=data["name"],
        description=data["annotations"].get("summary", expression),
        severity=data["severity"],
        for_seconds=data["for_"],
        active=active,
        labels=data["labels"],
        annotations=data["annotations"],
        expression=expression,
    )
