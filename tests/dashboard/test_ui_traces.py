"""The Traces page in real headless Chromium: the waterfall's duration labels, legend, span
detail and linked-span highlight, and the attribute search with its scatter and paging.

Spans go in as OTLP protobuf to the dashboard's own receiver (``dash.testing``'s threaded
runner on a SQLite file); the browser fixture and helpers are :mod:`tests.dashboard.test_ui`'s.
The waterfall's screenshot goes where that module's go (``traces-waterfall.png``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from dashboard.settings import DashboardSettings
from tests.dashboard import otlp_bodies
from tests.dashboard.test_ui import (
    _element,
    _screenshot,
    _serve,
    _wait,
    browser,  # noqa: F401 (the module-scoped Chromium fixture)
)

SERVER, INTERNAL, CLIENT = (
    SpanProto.SPAN_KIND_SERVER,
    SpanProto.SPAN_KIND_INTERNAL,
    SpanProto.SPAN_KIND_CLIENT,
)
NOT_FOUND = 4
LINKED_TRACE, LINKED_SPAN = bytes.fromhex("5e" * 16), bytes.fromhex("5f" * 8)
FOUND = 8


@dataclass
class Traces:
    base: str
    not_found: list[str]
    found: list[str]
    session_of: dict[str, str]


def _request(rng: random.Random, start: int, status: int) -> tuple[list[SpanProto], str, str]:
    """A GET answered ``status``: SERVER span, session, two statements (one of 20 us)."""
    trace_id, root, session, first, second = (rng.randbytes(n) for n in (16, 8, 8, 8, 8))
    session_attributes: dict[str, str | int | float | bool] = {"db.system.name": "sqlite"}
    if status == 404:
        session_attributes["error.type"] = "NotFoundError"
    spans = [
        otlp_bodies.span(
            trace_id,
            root,
            "GET /api/recordings/{id}",
            start,
            42_000_000,
            kind=SERVER,
            attributes={"http.response.status_code": status, "http.route": "/api/recordings/{id}"},
        ),
        otlp_bodies.span(
            trace_id,
            session,
            "db.session",
            start + 1_000_000,
            30_000_000,
            parent=root,
            kind=INTERNAL,
            attributes=session_attributes,
        ),
        otlp_bodies.span(
            trace_id,
            first,
            "SELECT recordings",
            start + 2_000_000,
            20_000,
            parent=session,
            kind=CLIENT,
            attributes={"db.query.text": "SELECT recordings.id FROM recordings WHERE id = ?"},
        ),
        otlp_bodies.span(
            trace_id,
            second,
            "SELECT tags",
            start + 3_000_000,
            12_400_000,
            parent=session,
            kind=CLIENT,
            attributes={"db.query.text": "SELECT tags.name FROM tags WHERE recording_id = ?"},
        ),
    ]
    if status == 404:
        retry = spans[1].events.add(name="retry", time_unix_nano=start + 2_000_000)
        retry.attributes.append(otlp_bodies.kv("error.type", "OperationalError"))
        link = spans[1].links.add(trace_id=LINKED_TRACE, span_id=LINKED_SPAN)
        link.attributes.append(otlp_bodies.kv("vrp.link.reason", "follows"))
    return spans, trace_id.hex(), session.hex()


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traces]:
    folder: Path = tmp_path_factory.mktemp("traces-ui")
    runner, base = _serve(DashboardSettings(store_url=f"sqlite:///{folder / 'telemetry.db'}"))
    try:
        rng = random.Random(3)
        now = time.time_ns()
        sent = Traces(base, [], [], {})
        spans: list[SpanProto] = []
        for index in range(NOT_FOUND + FOUND):
            status = 404 if index < NOT_FOUND else 200
            request, trace_id, session = _request(rng, now - (index + 1) * 30 * 10**9, status)
            spans.extend(request)
            (sent.not_found if status == 404 else sent.found).append(trace_id)
            sent.session_of[trace_id] = session
        response = requests.post(
            f"{base}/v1/traces",
            data=otlp_bodies.traces_request(spans).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        yield sent
    finally:
        runner.stop()


def _bar_texts(driver: WebDriver) -> list[str]:
    return [
        e.text
        for e in driver.find_elements(By.CSS_SELECTOR, "#traces-waterfall-graph .bartext")
        if e.text
    ]


def _tick_labels(driver: WebDriver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#traces-waterfall-graph .ytick")]


def test_waterfall_labels_bars_and_shows_a_clicked_spans_attributes(
    browser: WebDriver,  # noqa: F811
    traces: Traces,
) -> None:
    trace_id = traces.not_found[0]
    browser.get(f"{traces.base}/traces?trace={trace_id}")
    _element(browser, "#traces-waterfall-graph", f"Trace {trace_id}")
    _wait(browser, lambda d: len(_bar_texts(d)) == 4, "four duration labels")
    assert sorted(_bar_texts(browser)) == sorted(["42.0 ms", "30.0 ms", "20 µs", "12.4 ms"])
    legend = browser.find_element(By.CSS_SELECTOR, "#traces-waterfall-graph .legend").text
    assert "SERVER" in legend and "INTERNAL" in legend and "CLIENT" in legend
    # The 20 us statement is drawn wide enough to see and to click.
    short = browser.execute_script(
        "const g = document.querySelector('#traces-waterfall-graph .js-plotly-plot');"
        "const bars = [...g.querySelectorAll('.bars .point path')];"
        "return Math.min(...bars.map(b => b.getBoundingClientRect().width));"
    )
    assert short >= 2, short
    assert browser.find_element(By.ID, "traces-span-detail").text == ""
    # Click the db.session bar (the one INTERNAL span) as a user would: move there, click.
    names = browser.execute_script(
        "const g = document.querySelector('#traces-waterfall-graph .js-plotly-plot');"
        "return g.data.map(t => t.name);"
    )
    internal = names.index("INTERNAL")
    bar = browser.find_elements(By.CSS_SELECTOR, "#traces-waterfall-graph .trace.bars")[internal]
    ActionChains(browser).move_to_element(
        bar.find_element(By.CSS_SELECTOR, ".point path")
    ).click().perform()
    detail = _element(browser, "#traces-span-detail", "NotFoundError")
    assert "db.session" in detail.text
    assert "error.type" in detail.text and "db.system.name" in detail.text
    assert "Events (1)" in detail.text and "retry" in detail.text
    assert "OperationalError" in detail.text
    assert "Links (1)" in detail.text and "vrp.link.reason" in detail.text
    assert f"trace {LINKED_TRACE.hex()} span {LINKED_SPAN.hex()}" in detail.text
    assert "linked span" not in detail.text
    _wait(
        browser,
        lambda d: any(label.startswith("\u25b6") for label in _tick_labels(d)),
        "the clicked span marked",
    )
    _screenshot(browser, "traces-waterfall")


def test_arriving_with_a_span_highlights_it_and_shows_its_detail(
    browser: WebDriver,  # noqa: F811
    traces: Traces,
) -> None:
    trace_id = traces.not_found[1]
    session = traces.session_of[trace_id]
    browser.get(f"{traces.base}/traces?trace={trace_id}&span={session}")
    detail = _element(browser, "#traces-span-detail", "linked span")
    assert "db.session" in detail.text and session in detail.text
    _wait(
        browser,
        lambda d: [label for label in _tick_labels(d) if label.startswith("\u25b6")],
        "the linked span's row marked",
    )
    marked = [label for label in _tick_labels(browser) if label.startswith("\u25b6")]
    assert len(marked) == 1 and "db.session" in marked[0]
    shapes = browser.execute_script(
        "return document.querySelector('#traces-waterfall-graph .js-plotly-plot')"
        ".layout.shapes.length;"
    )
    assert shapes == 1


def _result_ids(driver: WebDriver) -> list[str]:
    cells = driver.find_elements(By.CSS_SELECTOR, "#traces-table td[data-dash-column=trace] a")
    return [cell.get_attribute("href").rsplit("trace=", 1)[1] for cell in cells]


def test_attribute_search_lists_only_matching_traces_with_their_scatter(
    browser: WebDriver,  # noqa: F811
    traces: Traces,
) -> None:
    browser.get(f"{traces.base}/traces")
    _wait(
        browser,
        lambda d: len(_result_ids(d)) == NOT_FOUND + FOUND,
        "every trace in the results",
    )
    options = browser.execute_script(
        "return [...document.querySelectorAll('#traces-operations option')].map(o => o.value);"
    )
    assert options == ["GET /api/recordings/{id}"]
    field = browser.find_element(By.ID, "traces-attribute")
    field.send_keys("http.response.status_code=404", Keys.ENTER)
    wanted = sorted(traces.not_found)
    _wait(browser, lambda d: sorted(_result_ids(d)) == wanted, "only the 404 traces")
    points = browser.execute_script(
        "const g = document.querySelector('#traces-scatter .js-plotly-plot');"
        "return g.data.map(t => t.customdata).flat();"
    )
    assert sorted(points) == wanted
    # An operation no trace has finds none; the operation in another case finds the four.
    operation = browser.find_element(By.ID, "traces-operation")
    operation.send_keys("GET /nowhere", Keys.ENTER)
    _wait(browser, lambda d: not _result_ids(d), "no trace for an unknown operation")
    operation.clear()
    operation.send_keys("get /API/RECORDINGS/{id}", Keys.ENTER)
    _wait(browser, lambda d: sorted(_result_ids(d)) == wanted, "the same four traces")
    # A click on a point of the scatter opens that trace.
    point = browser.find_element(By.CSS_SELECTOR, "#traces-scatter .scatterlayer .point")
    ActionChains(browser).move_to_element(point).click().perform()
    _wait(browser, lambda d: "trace=" in d.current_url, "the trace opened from the scatter")
    opened = browser.current_url.rsplit("trace=", 1)[1]
    assert opened in wanted
    _element(browser, "#traces-waterfall-graph", f"Trace {opened}")


def test_a_bad_attribute_is_named_on_the_page(
    browser: WebDriver,  # noqa: F811
    traces: Traces,
) -> None:
    browser.get(f"{traces.base}/traces?attribute=%3D404")
    error = _element(browser, ".read-error", "422")
    assert "attribute" in error.text and "key" in error.text
