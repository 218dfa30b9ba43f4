"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium.

The dashboard runs in a thread (``dash.testing``'s ``ThreadedRunner``) on a SQLite store in a
temporary folder; the real OpenTelemetry SDK exporters feed it over OTLP/HTTP
(:mod:`tests.dashboard.ui_telemetry`). Every page must render with data, and the run saves one
screenshot per page to ``var/screenshots/`` (git-ignored): a test run never changes a tracked
file. ``VRP_TEST_UPDATE_SCREENSHOTS=1`` saves them to ``docs/screenshots/`` for the README.

Chromium is mandatory in CI (``CI=true``): there a missing browser fails the run. On a laptop
without it the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dash.testing.application_runners import ThreadedRunner
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.app import create_app
from dashboard.otlp import LogRecord
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard import otlp_bodies, ui_telemetry
from tests.dashboard.ui_telemetry import Sent

ROOT = Path(__file__).resolve().parents[2]
UPDATE_SCREENSHOTS = "VRP_TEST_UPDATE_SCREENSHOTS"


def screenshots_folder(environ: Mapping[str, str]) -> Path:
    """Where the run saves its screenshots: the README's copies only when asked to."""
    if environ.get(UPDATE_SCREENSHOTS, "").strip() == "1":
        return ROOT / "docs" / "screenshots"
    return ROOT / "var" / "screenshots"


SCREENSHOTS = screenshots_folder(os.environ)
CHROMIUM = os.environ.get("VRP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VRP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
TOKEN = "browser-test-token-0123"
SERVER, CLIENT = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_CLIENT
WAIT_S = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        reason = f"headless Chromium not installed ({', '.join(missing)} missing)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: mandatory in CI (apt-get install chromium chromium-driver)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _serve(settings: DashboardSettings) -> tuple[ThreadedRunner, str]:
    runner = ThreadedRunner()
    port = _free_port()
    runner.start(create_app(settings), port=port, host="127.0.0.1", start_timeout=15)
    return runner, f"http://127.0.0.1:{port}"


def _readable(base: str, sent: Sent, headers: dict[str, str]) -> bool:
    trace = requests.get(f"{base}/api/traces/{sent.slow_trace_id}", headers=headers, timeout=5)
    backups = requests.get(
        f"{base}/api/backups", params={"since": "24h"}, headers=headers, timeout=5
    )
    queries = requests.get(f"{base}/api/queries", headers=headers, timeout=5)
    return (
        trace.status_code == 200
        and backups.status_code == 200
        and backups.json()["has_telemetry"]
        and bool(queries.json()["queries"])
    )


@dataclass
class Running:
    base: str
    sent: Sent
    store_url: str


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("dashboard")
    settings = DashboardSettings(store_url=f"sqlite:///{folder / 'telemetry.db'}")
    runner, base = _serve(settings)
    try:
        sent = ui_telemetry.send_stack_telemetry(base)
        deadline = time.monotonic() + WAIT_S
        while not _readable(base, sent, {}):
            assert time.monotonic() < deadline, "the telemetry sent never became readable"
            time.sleep(0.2)
        yield Running(base, sent, settings.store_url)
    finally:
        runner.stop()


def _wait(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    try:
        return WebDriverWait(
            driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)
        ).until(condition, message=f"waited {WAIT_S} s for {what}")
    except WebDriverException:
        errors = driver.find_elements(By.CSS_SELECTOR, ".read-error, .dash-fe-error__title")
        raise AssertionError(
            f"{what} never appeared on {driver.current_url}; errors shown: "
            f"{[e.text for e in errors]}"
        ) from None


def _text_in(selector: str, text: str) -> Callable[[WebDriver], bool]:
    def found(driver: WebDriver) -> bool:
        return any(text in e.text for e in driver.find_elements(By.CSS_SELECTOR, selector))

    return found


Finder = Callable[[WebDriver], "WebElement | bool"]


def _holding(selector: str, text: str, inner: str | None = None) -> Finder:
    """The first ``selector`` element holding ``text`` (or its first ``inner`` element)."""

    def find(driver: WebDriver) -> WebElement | bool:
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            if text in element.text:
                return element.find_element(By.CSS_SELECTOR, inner) if inner else element
        return False

    return find


def _first(selector: str) -> Finder:
    def find(driver: WebDriver) -> WebElement | bool:
        return next(iter(driver.find_elements(By.CSS_SELECTOR, selector)), False)

    return find


def _element(driver: WebDriver, selector: str, text: str) -> WebElement:
    found = _wait(driver, _holding(selector, text), f"{selector} holding {text!r}")
    assert isinstance(found, WebElement)
    return found


def _click(driver: WebDriver, find: Finder, what: str) -> None:
    """Click like a user: scrolled into view, once a refresh overlay has gone.

    The element is looked up again for every try: a panel that refreshes replaces its elements,
    and a reference to a replaced one can never be clicked.
    """

    def clicked(d: WebDriver) -> bool:
        element = find(d)
        if not isinstance(element, WebElement):
            return False
        d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
        except (ElementClickInterceptedException, StaleElementReferenceException):
            return False
        return True

    _wait(driver, clicked, f"{what} to click")


def _screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, at the width of the window, into ``SCREENSHOTS/<name>.png``."""
    time.sleep(1.0)  # let Plotly finish drawing and its transitions
    chrome, height = driver.execute_script(
        "return [window.outerHeight - window.innerHeight,"
        " Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)];"
    )
    driver.set_window_size(1400, max(700, min(int(height) + int(chrome), 4000)))
    try:
        time.sleep(0.5)  # the plots resize to the new window
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    finally:
        driver.set_window_size(1400, 1000)


def _no_errors(driver: WebDriver) -> None:
    errors = driver.find_elements(By.CSS_SELECTOR, ".read-error, .dash-fe-error__title")
    assert not errors, [e.text for e in errors]


PAGES = {
    # page: (path, element that shows data, text it holds)
    "overview": ("/", "#overview-services", "vrp-api"),
    "queries": ("/queries", "#queries-table", ui_telemetry.SLOW_QUERY),
    "requests": ("/requests", "#requests-table", "POST /api/recordings"),
    "transactions": ("/transactions", "#pool-table", "vrp"),
    "logs": ("/logs", "#logs-table", ui_telemetry.ERROR_MESSAGE),
    "traces": ("/traces", "#traces-table", "GET /api/tags"),
    "backups": ("/backups", "#backups-table", "backup-3"),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_data(browser: WebDriver, dashboard: Running, page: str) -> None:
    path, selector, text = PAGES[page]
    browser.get(dashboard.base + path)
    _element(browser, selector, text)
    if page == "queries":
        # The screenshot shows a query's latency and its slowest examples.
        _click(browser, _holding("#queries-table td", ui_telemetry.SLOW_QUERY), "the slow query")
        _element(browser, "#queries-detail-title", ui_telemetry.SLOW_QUERY)
    if page == "transactions":
        _element(browser, "#transactions-outcomes", "commit")
    if page == "logs":
        # The screenshot shows a record's detail.
        _click(browser, _holding("#logs-table td", ui_telemetry.ERROR_MESSAGE), "the error")
        _element(browser, "#logs-detail-table", "http.route")
    if page == "backups":
        state = _element(browser, "#backups-state", "Last good backup")
        assert "alert-success" in state.get_attribute("class")
        assert "Next scheduled run at" in state.text
        _element(browser, "#backups-repositories", "sqlite:////srv/vrp/var/vrp.db")
        _element(browser, "#backups-table", "5f3c2a9e")
    if page == "traces":
        # The screenshot shows a waterfall: open the N+1 trace from the search results.
        browser.get(f"{dashboard.base}/traces?trace={dashboard.sent.n_plus_one_trace_id}")
        _element(browser, ".n-plus-one", "N+1")
        _element(browser, "#traces-table", "GET /api/tags")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"), "a plot")
    _no_errors(browser)
    _screenshot(browser, page)


def test_clicking_a_slow_query_leads_to_its_trace_waterfall(
    browser: WebDriver, dashboard: Running
) -> None:
    browser.get(f"{dashboard.base}/")
    _click(browser, _holding(".navbar a.nav-link", "Queries"), "the Queries tab")
    _wait(browser, lambda d: d.current_url.endswith("/queries"), "the Queries page")
    _click(browser, _holding("#queries-table td", ui_telemetry.SLOW_QUERY), "the slow query")
    _element(browser, "#queries-detail-title", ui_telemetry.SLOW_QUERY)
    _wait(browser, _text_in("#queries-latency", "p95"), "the query's latency plot")
    trace_id = dashboard.sent.slow_trace_id
    _click(
        browser,
        _first(f'#queries-examples a[href*="{trace_id}"]'),
        "a link to the slow example's trace",
    )
    _wait(browser, lambda d: f"trace={trace_id}" in d.current_url, "the trace page")
    _element(browser, "#traces-waterfall-graph", f"Trace {trace_id}")
    _element(browser, "#traces-waterfall-graph", ui_telemetry.SLOW_QUERY)
    _no_errors(browser)


def test_n_plus_one_is_flagged_on_queries_and_in_its_waterfall(
    browser: WebDriver, dashboard: Running
) -> None:
    trace_id = dashboard.sent.n_plus_one_trace_id
    browser.get(f"{dashboard.base}/queries")
    _element(browser, "#queries-n-plus-one-table", ui_telemetry.N_PLUS_ONE_TEXT)
    _click(
        browser, _first(f'#queries-n-plus-one-table a[href*="{trace_id}"]'), "the N+1 trace link"
    )
    _element(browser, ".n-plus-one", ui_telemetry.N_PLUS_ONE_TEXT)
    flagged = _wait(
        browser,
        lambda d: d.execute_script(
            "const g = document.querySelector('#traces-waterfall-graph .js-plotly-plot');"
            "return g && g.data ? g.data.filter(t => t.marker.color === '#d62728') : null;"
        ),
        "the waterfall's bars",
    )
    assert isinstance(flagged, list) and len(flagged) == 1
    assert flagged[0]["name"] == "N+1 statement"
    assert len(flagged[0]["y"]) == 7, "the seven repeated statements are highlighted"
    # The page draws the API's finding, and nothing it worked out itself.
    finding = requests.get(f"{dashboard.base}/api/traces/{trace_id}", timeout=5).json()
    (found,) = finding["n_plus_one"]
    assert set(flagged[0]["customdata"]) == set(found["span_ids"])
    listed = requests.get(f"{dashboard.base}/api/queries", timeout=5).json()["n_plus_one"]
    assert [(n["trace_id"], n["count"]) for n in listed] == [(trace_id, found["count"])]


def test_a_log_line_leads_to_its_trace(browser: WebDriver, dashboard: Running) -> None:
    trace_id = dashboard.sent.error_trace_id
    browser.get(f"{dashboard.base}/logs")
    _click(
        browser,
        _holding("#logs-table tr", ui_telemetry.ERROR_MESSAGE, "a"),
        "the error's trace link",
    )
    _wait(browser, lambda d: f"trace={trace_id}" in d.current_url, "the trace page")
    _element(browser, "#traces-waterfall-graph", f"Trace {trace_id}")
    _element(browser, "#traces-waterfall-graph", "POST /api/recordings")


@pytest.fixture(scope="module")
def protected(dashboard: Running) -> Iterator[str]:
    """A second dashboard with a token, on the same store: the data is there, behind the login."""
    runner, base = _serve(DashboardSettings(store_url=dashboard.store_url, token=TOKEN))
    yield base
    runner.stop()


def test_without_the_token_the_ui_shows_the_login_and_no_data(
    browser: WebDriver, protected: str
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{protected}/queries")
    _wait(browser, lambda d: "/login" in d.current_url, "the login page")
    assert browser.find_elements(By.ID, "login-form")
    page = browser.page_source
    assert "vrp-api" not in page and ui_telemetry.SLOW_QUERY not in page
    status = browser.execute_script("const r = await fetch('/api/queries'); return r.status;")
    assert status == 401
    _screenshot(browser, "login")
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.ID, "login-submit").click()
    _element(browser, "#login-error", "Wrong token")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser, lambda d: d.current_url.endswith("/queries"), "the page asked for")
    _element(browser, "#queries-table", ui_telemetry.SLOW_QUERY)
    browser.delete_all_cookies()


def test_an_empty_dashboard_says_plainly_that_nothing_arrived(
    browser: WebDriver, tmp_path: Path
) -> None:
    runner, base = _serve(DashboardSettings(store_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    try:
        browser.get(f"{base}/backups")
        notice = _element(browser, ".notice", "No backup telemetry has arrived yet")
        assert "alert-danger" not in notice.get_attribute("class")
        browser.get(f"{base}/")
        _element(browser, ".notice", "No requests in this time range yet")
        _no_errors(browser)
    finally:
        runner.stop()


HOSTILE_NAME = 'GET <a href="https://evil.example/">click</a>'
HOSTILE_QUERY = "SELECT 1 -- <b>bold</b> <a href='https://evil.example/'>here</a>"


def _graph_text(driver: WebDriver) -> str:
    return str(
        driver.execute_script(
            "const g = document.querySelector('#traces-waterfall-graph');"
            "return g ? g.textContent : '';"
        )
    )


def _markup_in_graph(driver: WebDriver) -> list[str]:
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "'#traces-waterfall-graph a, #traces-waterfall-graph [style*=\"bold\"]'"
            ")).map(e => e.outerHTML);"
        )
    )


def test_markup_in_span_names_and_statements_shows_as_text(
    browser: WebDriver, tmp_path: Path
) -> None:
    runner, base = _serve(DashboardSettings(store_url=f"sqlite:///{tmp_path / 'hostile.db'}"))
    try:
        trace_id, root, child = bytes.fromhex("ab" * 16), b"\x01" * 8, b"\x02" * 8
        start = time.time_ns() - 60 * 1_000_000_000
        spans = [
            otlp_bodies.span(trace_id, root, HOSTILE_NAME, start, 5_000_000, kind=SERVER),
            otlp_bodies.span(
                trace_id,
                child,
                "SELECT <b>x</b>",
                start + 1_000_000,
                2_000_000,
                parent=root,
                kind=CLIENT,
                attributes={"db.query.text": HOSTILE_QUERY},
            ),
        ]
        sent = requests.post(
            f"{base}/v1/traces",
            data=otlp_bodies.traces_request(spans).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=5,
        )
        assert sent.status_code == 200
        browser.get(f"{base}/traces?trace={trace_id.hex()}")
        _wait(browser, lambda d: HOSTILE_NAME in _graph_text(d), "the span name as text")
        assert "SELECT <b>x</b>" in _graph_text(browser)
        browser.execute_script(
            "const g = document.querySelector('#traces-waterfall-graph .js-plotly-plot');"
            # The statement is the one CLIENT bar: the second legend entry, after SERVER.
            "Plotly.Fx.hover(g, [{curveNumber: 1, pointNumber: 0}]);"
        )
        _wait(browser, lambda d: HOSTILE_QUERY in _graph_text(d), "the statement's hover text")
        # Plotly's own markup is bold only around the hovered span's name.
        leaked = [e for e in _markup_in_graph(browser) if "evil" in e or ">x<" in e]
        assert not leaked, leaked
    finally:
        runner.stop()


def test_screenshots_go_to_an_ignored_folder_unless_an_update_is_asked() -> None:
    default = screenshots_folder({})
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", str(default / "overview.png")],
        check=False,
    )
    assert ignored.returncode == 0, f"{default} is not git-ignored: a test run would dirty it"
    asked = screenshots_folder({UPDATE_SCREENSHOTS: "1"})
    assert asked == ROOT / "docs" / "screenshots"


def _row_by_header(driver: WebDriver, table: str, text: str) -> dict[str, str]:
    """The cells of the first row of ``table`` holding ``text``, by column header."""
    return dict(
        driver.execute_script(
            "const t = document.querySelector(arguments[0]);"
            "const heads = Array.from(t.querySelectorAll('th.dash-header'))"
            "  .map(h => h.textContent.trim());"
            "const row = Array.from(t.querySelectorAll('tr'))"
            "  .find(r => r.querySelector('td') && r.textContent.includes(arguments[1]));"
            "const cells = Array.from(row.querySelectorAll('td')).map(c => c.textContent.trim());"
            "return heads.map((h, i) => [h, cells[i]]);",
            table,
            text,
        )
    )


def test_overview_shows_client_errors_beside_errors_and_the_error_rate_in_percent(
    browser: WebDriver, dashboard: Running
) -> None:
    browser.get(dashboard.base + "/")
    _element(browser, "#overview-services", "vrp-api")
    cards = [
        str(e.get_attribute("textContent")) for e in browser.find_elements(By.CSS_SELECTOR, ".card")
    ]
    assert any(c.startswith("4xx rate") and "1 client errors" in c for c in cards), cards
    row = _row_by_header(browser, "#overview-services", "vrp-api")
    assert (row["errors (5xx)"], row["client errors (4xx)"]) == ("1", "1")
    ticks = _wait(
        browser,
        lambda d: [
            e.text for e in d.find_elements(By.CSS_SELECTOR, "#overview-error-rate .ytick text")
        ],
        "the error rate axis",
    )
    assert isinstance(ticks, list)
    assert all(t.endswith("%") for t in ticks), ticks
    # The failed request is one of a minute's few: far above 1%, and never above 100%.
    values = [float(t.rstrip("%")) for t in ticks]
    assert max(values) > 1 and max(values) <= 100, ticks
    _no_errors(browser)


def test_requests_show_each_route_by_status_class(browser: WebDriver, dashboard: Running) -> None:
    browser.get(dashboard.base + "/requests")
    _element(browser, "#requests-table", ui_telemetry.CLIENT_ERROR_ROUTE)
    row = _row_by_header(browser, "#requests-table", ui_telemetry.CLIENT_ERROR_ROUTE)
    assert (row["2xx"], row["3xx"], row["4xx"], row["5xx"]) == ("0", "0", "1", "0")
    assert (row["errors (5xx)"], row["client errors (4xx)"]) == ("0", "1")
    posts = _row_by_header(browser, "#requests-table", "POST /api/recordings")
    assert posts["5xx"] == "1" and posts["4xx"] == "0" and int(posts["2xx"].replace(",", "")) > 100
    _no_errors(browser)


def _column(driver: WebDriver, table: str, column_id: str) -> list[str]:
    """The text of ``column_id``'s cells in ``table``, top to bottom as shown."""
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "  arguments[0] + ' td[data-dash-column=\"' + arguments[1] + '\"]'"
            ")).map(c => c.textContent.trim());",
            table,
            column_id,
        )
    )


def _sort_icon(driver: WebDriver, table: str, column_id: str) -> str:
    return str(
        driver.execute_script(
            "const h = document.querySelector(arguments[0] + ' th[data-dash-column=\"'"
            "  + arguments[1] + '\"] .column-header--sort svg');"
            "return h ? h.getAttribute('data-icon') : '';",
            table,
            column_id,
        )
    )


def test_queries_show_microseconds_and_rank_by_total_time(
    browser: WebDriver, dashboard: Running
) -> None:
    browser.get(dashboard.base + "/queries")
    _element(browser, "#queries-table", ui_telemetry.FAST_QUERY)
    try:
        row = _row_by_header(browser, "#queries-table", ui_telemetry.FAST_QUERY)
        for column in ("p50", "mean"):
            assert row[column].endswith("µs"), row
            assert 25 <= float(row[column].removesuffix("µs")) <= 50, row
        assert _sort_icon(browser, "#queries-table", "total_s") == "sort-down"
        api = requests.get(f"{dashboard.base}/api/queries", timeout=5).json()["queries"]
        by_total = [q["summary"] for q in sorted(api, key=lambda q: -q["total_ms"])]
        assert _column(browser, "#queries-table", "summary") == by_total
        # Descending, unsorted, then ascending: the values sort as numbers, not as "37µs" text.
        for _ in range(2):
            _click(browser, _first('th[data-dash-column="total_s"] .column-header--sort'), "sort")
        _wait(
            browser,
            lambda d: _sort_icon(d, "#queries-table", "total_s") == "sort-up",
            "the ascending sort",
        )
        assert _column(browser, "#queries-table", "summary") == by_total[::-1]
        _no_errors(browser)
    finally:
        browser.execute_script("window.sessionStorage.clear();")


def _plot_traces(driver: WebDriver, graph: str) -> list[str]:
    names = driver.execute_script(
        "const g = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return g && g.data ? g.data.map(t => t.name) : [];",
        graph,
    )
    return [str(n) for n in names]


def test_requests_show_latency_per_route_and_backup_spans_apart(
    browser: WebDriver, dashboard: Running
) -> None:
    browser.get(dashboard.base + "/requests")
    _element(browser, "#requests-table", "POST /api/recordings")
    traces = _wait(
        browser, lambda d: _plot_traces(d, "#requests-route-latency"), "the per-route latency"
    )
    assert isinstance(traces, list)
    for route in ("GET /api/recordings", "POST /api/recordings", "GET /api/tags"):
        assert {f"{route} p50", f"{route} p95"} <= set(traces), traces
    assert not [t for t in traces if t.endswith("p99")]
    backups = _element(browser, "#requests-backups", "backup.restore")
    assert "vrp-scheduler" in backups.text
    operations = browser.find_element(By.CSS_SELECTOR, "#requests-table").text
    assert "backup." not in operations
    _no_errors(browser)


def test_a_log_record_shows_every_attribute_and_the_volume_per_level(
    browser: WebDriver, dashboard: Running
) -> None:
    browser.get(dashboard.base + "/logs")
    _click(browser, _holding("#logs-table td", ui_telemetry.ERROR_MESSAGE), "the error record")
    detail = _element(browser, "#logs-detail-table", ui_telemetry.ERROR_MESSAGE)
    fields = _row_by_header(browser, "#logs-detail-table", "http.route")
    assert fields == {"field": "http.route", "value": "/api/recordings"}
    assert "ERROR" in detail.text and dashboard.sent.error_trace_id in detail.text
    levels = _wait(browser, lambda d: _plot_traces(d, "#logs-volume"), "the volume histogram")
    assert isinstance(levels, list)
    assert {"INFO", "ERROR"} <= set(levels), levels
    spelled = set(_column(browser, "#logs-table", "level"))
    assert spelled and spelled <= {"INFO", "WARNING", "ERROR", "CRITICAL"}, spelled
    _no_errors(browser)


def test_logs_page_past_200_records(browser: WebDriver, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'logs.db'}"
    runner, base = _serve(DashboardSettings(store_url=store_url))
    store = TelemetryStore(store_url)
    try:
        now = time.time_ns()
        store.write_logs(
            [
                LogRecord(now - i * 10**9, "vrp-api", 9, "INFO", f"record {i:03d}", None, None, {})
                for i in range(450)
            ]
        )
        browser.get(f"{base}/logs")
        _element(browser, "#logs-position", "records 1-100 of 450")
        assert browser.find_element(By.ID, "logs-newer").get_attribute("disabled")
        for first in (101, 201, 301, 401):
            _click(browser, _first("#logs-older:not([disabled])"), "older")
            last = min(first + 99, 450)
            _element(browser, "#logs-position", f"records {first}-{last} of 450")
        _element(browser, "#logs-table", "record 449")
        assert browser.find_element(By.ID, "logs-older").get_attribute("disabled")
        shown = _column(browser, "#logs-table", "message")
        assert shown == [f"record {i:03d}" for i in range(400, 450)]
        _click(browser, _first("#logs-newer:not([disabled])"), "newer")
        _element(browser, "#logs-position", "records 301-400 of 450")
        _no_errors(browser)
    finally:
        store.dispose()
        runner.stop()
