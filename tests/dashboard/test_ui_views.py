"""Views people share and compare, in a real browser (Debian's headless Chromium).

The time range and the service live in the URL: opening one sets the selectors and the data,
changing a selector rewrites it, the navigation and the links in tables keep it, a drag across
a chart sets an absolute range, and every time chart spans it. Overview compares with the
previous period; the navigation bar fits a 1024-pixel window; the dark theme follows the
system's colour scheme. The dashboard is fed the page tests' telemetry
(:mod:`tests.dashboard.ui_telemetry`) by the real SDK exporters.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from dashboard import url_filters
from dashboard.app import NAV_CONTROLS
from dashboard.settings import DashboardSettings
from tests.dashboard import test_ui, ui_telemetry
from tests.dashboard.test_ui import (
    Running,
    _click,
    _element,
    _first,
    _holding,
    _no_errors,
    _readable,
    _serve,
    _wait,
)

TOKEN = "views-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium as the page tests start it (mandatory in CI, skipped elsewhere)."""
    missing = [p for p in (test_ui.CHROMIUM, test_ui.CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        reason = f"headless Chromium not installed ({', '.join(missing)} missing)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: mandatory in CI (apt-get install chromium chromium-driver)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = test_ui.CHROMIUM
    for flag in test_ui.CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(test_ui.CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(test_ui.WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A dashboard fed the page tests' telemetry (an hour of the API, a day of backups)."""
    folder = tmp_path_factory.mktemp("views")
    settings = DashboardSettings(store_url=f"sqlite:///{folder / 'telemetry.db'}")
    runner, base = _serve(settings)
    try:
        sent = ui_telemetry.send_stack_telemetry(base)
        deadline = time.monotonic() + test_ui.WAIT_S
        while not _readable(base, sent, {}):
            assert time.monotonic() < deadline, "the telemetry sent never became readable"
            time.sleep(0.2)
        yield Running(base, sent, settings.store_url)
    finally:
        runner.stop()


@pytest.fixture
def window_1400(chromium: WebDriver) -> Iterator[WebDriver]:
    chromium.set_window_size(1400, 1000)
    yield chromium
    chromium.set_window_size(1400, 1000)


def _query(driver: WebDriver) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(driver.current_url).query).items()}


def _shown(driver: WebDriver, dropdown: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f"#{dropdown}-value").text)


def _choose(driver: WebDriver, dropdown: str, label: str) -> None:
    _click(driver, lambda d: d.find_element(By.ID, dropdown), f"the {dropdown} dropdown")
    _click(driver, _holding(".dash-dropdown-option", label), f"the option {label!r}")


def _card(driver: WebDriver, card: str) -> str:
    return str(driver.find_element(By.ID, card).get_attribute("textContent"))


def _traces(driver: WebDriver, graph: str) -> list[dict]:
    return list(
        driver.execute_script(
            "const g = document.querySelector(arguments[0] + ' .js-plotly-plot');"
            "return g && g.data ? g.data.map(t => ({name: t.name, dash: (t.line || {}).dash,"
            " x: t.x})) : [];",
            f"#{graph}",
        )
    )


def _x_range(driver: WebDriver, graph: str) -> list[str]:
    return list(
        driver.execute_script(
            "const g = document.querySelector(arguments[0] + ' .js-plotly-plot');"
            "return g && g.layout ? g.layout.xaxis.range : [];",
            f"#{graph}",
        )
    )


def _requests_card(driver: WebDriver) -> int:
    value = driver.find_element(By.CSS_SELECTOR, "#overview-card-requests .stat-value")
    return int(str(value.text).replace(",", ""))


def _api_count(base: str, since: str, service: str | None = None) -> int:
    params = {"since": since, **({"service": service} if service else {})}
    body = requests.get(f"{base}/api/summary", params=params, timeout=5).json()
    return sum(s["count"] for s in body["services"])


def test_a_shared_url_opens_with_its_range_and_service_chosen_and_the_data_narrowed(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    browser.get(f"{stack.base}/?range=15m&service=vrp-api")
    _element(browser, "#overview-services", "vrp-api")
    assert _shown(browser, "filter-range") == "last 15 minutes"
    assert _shown(browser, "filter-service") == "vrp-api"
    # The last 15 minutes hold fewer requests than the hour: the card counts those of 15.
    fifteen, hour = _api_count(stack.base, "15m", "vrp-api"), _api_count(stack.base, "1h")
    assert 0 < fifteen < hour
    _wait(browser, lambda d: _requests_card(d) == fifteen, f"{fifteen} requests on the card")
    assert "over 15 min" in _card(browser, "overview-card-requests")
    # Another service's view: the scheduler's log line, not the API's.
    browser.get(f"{stack.base}/logs?range=24h&service=vrp-scheduler")
    _element(browser, "#logs-table", "backup backup-3 verified")
    assert ui_telemetry.ERROR_MESSAGE not in browser.find_element(By.ID, "logs-table").text
    assert _shown(browser, "filter-range") == "last 24 hours"
    assert _shown(browser, "filter-service") == "vrp-scheduler"
    _no_errors(browser)


def test_choosing_a_range_writes_the_url_and_the_navigation_keeps_it(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    browser.get(f"{stack.base}/")
    _element(browser, "#overview-services", "vrp-api")
    assert _query(browser) == {}, "the default view needs no query string"
    _choose(browser, "filter-range", "last 6 hours")
    _wait(browser, lambda d: _query(d) == {"range": "6h"}, "range=6h in the URL")
    _choose(browser, "filter-service", "vrp-api")
    _wait(browser, lambda d: _query(d) == {"range": "6h", "service": "vrp-api"}, "the service")
    _click(browser, _holding(".navbar a.nav-link", "Requests"), "the Requests tab")
    _wait(browser, lambda d: urlparse(d.current_url).path == "/requests", "the Requests page")
    assert _query(browser) == {"range": "6h", "service": "vrp-api"}
    _element(browser, "#requests-table", "POST /api/recordings")
    assert _shown(browser, "filter-range") == "last 6 hours"
    browser.back()
    _wait(browser, lambda d: urlparse(d.current_url).path == "/", "back on Overview")
    _element(browser, "#overview-services", "vrp-api")
    assert _shown(browser, "filter-service") == "vrp-api"
    _no_errors(browser)


def test_dragging_across_a_chart_sets_an_absolute_range_and_reset_returns_to_the_preset(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    browser.get(f"{stack.base}/?range=1h")
    _element(browser, "#overview-services", "vrp-api")
    _wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-rate .nsewdrag"),
        "the rate chart's drag area",
    )
    browser.execute_script(  # instant: Bootstrap scrolls smoothly, the drag would miss
        "document.querySelector('#overview-rate')"
        ".scrollIntoView({block: 'center', behavior: 'instant'});"
    )
    left, top, width, height = browser.execute_script(
        "const r = document.querySelector('#overview-rate .nsewdrag').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];"
    )
    # A drag from a quarter to three quarters of the plot's width, as a mouse does it.
    y = int(top + height / 2)
    drag = ActionBuilder(browser)
    drag.pointer_action.move_to_location(int(left + width / 4), y).pointer_down()
    drag.pointer_action.move_to_location(int(left + width / 2), y + 5)
    drag.pointer_action.move_to_location(int(left + 3 * width / 4), y + 10).pointer_up()
    drag.perform()
    _wait(browser, lambda d: {"from", "to"} <= set(_query(d)), "from and to in the URL")
    query = _query(browser)
    assert "range" not in query
    since, until = (url_filters.parse_instant(query[k]) for k in ("from", "to"))
    assert since is not None and until is not None
    # Half of the hour's chart: some 30 minutes, within the last hour.
    assert timedelta(minutes=20) < until - since < timedelta(minutes=40)
    assert datetime.now(UTC) - timedelta(hours=1, minutes=5) < since
    label = url_filters.describe(url_filters.absolute_value(since, until))
    _wait(browser, lambda d: _shown(d, "filter-range") == label, f"the range shown as {label}")
    # The charts now span exactly that range, and the cards count that range.
    expected = [since.replace(tzinfo=None), until.replace(tzinfo=None)]
    _wait(
        browser,
        lambda d: (
            [url_filters.parse_instant(v) for v in _x_range(d, "overview-latency")]
            == [e.replace(tzinfo=UTC) for e in expected]
        ),
        "the latency chart redrawn over the zoomed range",
    )
    body = requests.get(
        f"{stack.base}/api/summary",
        params={"since": query["from"], "until": query["to"]},
        timeout=5,
    ).json()
    zoomed = sum(s["count"] for s in body["services"])
    _wait(browser, lambda d: _requests_card(d) == zoomed, f"{zoomed} requests on the card")
    # The zoom is kept on the next page, and "reset" returns to the preset chosen before.
    _click(browser, _holding(".navbar a.nav-link", "Requests"), "the Requests tab")
    _wait(browser, lambda d: urlparse(d.current_url).path == "/requests", "the Requests page")
    assert _query(browser) == query
    _click(browser, lambda d: d.find_element(By.ID, "filter-reset"), "reset")
    _wait(browser, lambda d: _query(d) == {}, "the preset's URL (the default: no query)")
    _wait(browser, lambda d: _shown(d, "filter-range") == "last hour", "the preset")
    assert not browser.find_element(By.ID, "filter-reset").is_displayed()
    _no_errors(browser)


def test_links_in_tables_keep_the_range_and_the_service(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    browser.get(f"{stack.base}/requests?range=6h&service=vrp-api")
    row = _holding("#requests-table tr", "POST /api/recordings", "a")
    _wait(
        browser,
        lambda d: (found := row(d)) and "range=6h" in str(found.get_attribute("href")),
        "the route's traces link in the 6 hours' view",
    )
    _click(browser, row, "the route's traces link")
    _wait(browser, lambda d: urlparse(d.current_url).path == "/traces", "the Traces page")
    assert _query(browser) == {
        "operation": "POST /api/recordings",
        "range": "6h",
        "service": "vrp-api",
    }
    _wait(browser, lambda d: _shown(d, "filter-range") == "last 6 hours", "the range kept")
    assert _shown(browser, "filter-service") == "vrp-api"
    # An absolute range too: a slow statement's trace link on Queries.
    now = datetime.now(UTC).replace(microsecond=0)
    since, until = now - timedelta(minutes=55), now - timedelta(minutes=1)
    absolute = {"from": url_filters.iso_utc(since), "to": url_filters.iso_utc(until)}
    browser.get(f"{stack.base}/queries?from={absolute['from']}&to={absolute['to']}")
    trace_id = stack.sent.slow_trace_id
    _click(browser, _first(f'#queries-examples a[href*="{trace_id}"]'), "the slow trace link")
    _wait(browser, lambda d: _query(d).get("trace") == trace_id, "the trace page")
    assert {k: v for k, v in _query(browser).items() if k in absolute} == absolute
    label = url_filters.describe(url_filters.absolute_value(since, until))
    _wait(browser, lambda d: _shown(d, "filter-range") == label, f"the range shown as {label}")
    _element(browser, "#traces-waterfall-graph", f"Trace {trace_id}")
    _no_errors(browser)


def test_the_queries_logs_and_traces_charts_span_the_chosen_range(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    now = datetime.now(UTC).replace(microsecond=0)
    # To the next second: the log records were sent (not backdated) as the module began.
    since, until = now - timedelta(minutes=55), now + timedelta(seconds=1)
    view = f"?from={url_filters.iso_utc(since)}&to={url_filters.iso_utc(until)}"

    def spans(graph: str) -> Callable[[WebDriver], bool]:
        # An empty chart's axis is numbers (-1 to 6): not times.
        expected = [since, until]
        return lambda d: [url_filters.parse_instant(str(v)) for v in _x_range(d, graph)] == expected

    browser.get(f"{stack.base}/logs{view}")
    _wait(browser, spans("logs-volume"), "the records per level over the chosen range")
    browser.get(f"{stack.base}/traces{view}")
    _wait(browser, spans("traces-scatter"), "the traces' durations over the chosen range")
    browser.get(f"{stack.base}/queries{view}")
    _click(browser, _holding("#queries-table td", ui_telemetry.SLOW_QUERY), "the slow query")
    _wait(browser, spans("queries-latency"), "the query's latency over the chosen range")
    _no_errors(browser)


def test_typed_from_and_to_times_set_an_absolute_range_and_a_bad_one_is_named(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    browser.get(f"{stack.base}/")
    _element(browser, "#overview-services", "vrp-api")
    _click(browser, lambda d: d.find_element(By.ID, "filter-custom-toggle"), "from-to")
    typed_from = browser.find_element(By.ID, "filter-from")
    _wait(browser, lambda d: typed_from.is_displayed(), "the from and to inputs")
    typed_from.send_keys("yesterday")
    browser.find_element(By.ID, "filter-to").send_keys("2026-12-07T05:00:00Z")
    _click(browser, lambda d: d.find_element(By.ID, "filter-apply"), "apply")
    _element(browser, "#filter-custom-error", "from: not a time")
    assert _query(browser) == {}
    now = datetime.now(UTC).replace(microsecond=0)
    since, until = now - timedelta(minutes=20), now - timedelta(minutes=10)
    for field, moment in (("filter-from", since), ("filter-to", until)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(url_filters.iso_utc(moment))
    browser.find_element(By.ID, "filter-to").send_keys(Keys.ENTER)  # Enter applies too
    _wait(
        browser,
        lambda d: (
            _query(d) == {"from": url_filters.iso_utc(since), "to": url_filters.iso_utc(until)}
        ),
        "the typed range in the URL",
    )
    assert browser.find_element(By.ID, "filter-custom-error").text == ""
    _wait(browser, lambda d: "over 10 min" in _card(d, "overview-card-requests"), "10 minutes")
    _no_errors(browser)


def test_compare_draws_the_previous_period_dashed_and_the_cards_show_the_change(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    # 15 minutes: the previous 15 (30 to 15 minutes ago) had traffic too.
    browser.get(f"{stack.base}/?range=15m")
    _element(browser, "#overview-services", "vrp-api")
    assert not [t for t in _traces(browser, "overview-rate") if "previous" in t["name"]]
    _click(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "label[for=overview-compare]"), "compare"
    )

    def previous(d: WebDriver) -> list[dict]:
        return [t for t in _traces(d, "overview-rate") if t["name"].endswith("previous period")]

    drawn = _wait(browser, previous, "the previous period on the rate chart")
    assert isinstance(drawn, list) and drawn[0]["dash"] == "longdash"
    low, high = (url_filters.parse_instant(v) for v in _x_range(browser, "overview-rate"))
    assert low is not None and high is not None
    shifted = [url_filters.parse_instant(str(x)) for x in drawn[0]["x"]]
    # Points are the starts of minute buckets: the first may begin up to a minute before.
    earliest = low - timedelta(minutes=1)
    assert all(x and earliest <= x <= high for x in shifted), "shifted onto the current period"
    assert any("p95 previous period" in t["name"] for t in _traces(browser, "overview-latency"))
    assert "vs previous" in _card(browser, "overview-card-requests")
    assert _query(browser) == {"range": "15m", "compare": "1"}, "the comparison is shareable"
    # On Requests too, beside its own charts; opened from a URL, the switch is on.
    browser.get(f"{stack.base}/requests?range=15m&compare=1")
    _element(browser, "#requests-table", "POST /api/recordings")
    _wait(
        browser,
        lambda d: [t for t in _traces(d, "requests-rate") if "previous period" in t["name"]],
        "the previous period on the Requests rate chart",
    )
    assert browser.find_element(By.ID, "requests-compare").is_selected()
    _no_errors(browser)


def _outside(driver: WebDriver, ids: tuple[str, ...]) -> dict[str, list[float]]:
    """The controls (by id) not wholly inside the window, with their rectangles."""
    return dict(
        driver.execute_script(
            "const w = window.innerWidth, h = window.innerHeight;"
            "return arguments[0].map(id => {"
            "  const e = document.getElementById(id);"
            "  if (!e) return [id, ['missing']];"
            "  const r = e.getBoundingClientRect();"
            "  return [id, [r.left, r.top, r.right, r.bottom]];"
            "}).filter(([id, r]) => r.length !== 4 || r[0] < 0 || r[1] < 0 || r[2] > w"
            "  || r[3] > h || r[2] - r[0] < 8);",
            list(ids),
        )
    )


def _screenshot(driver: WebDriver, name: str, width: int) -> None:
    """The whole page at ``width`` pixels into the screenshots folder (as the page tests do at
    1400), then the window back to ``width`` x 768."""
    time.sleep(1.0)  # let Plotly finish drawing
    chrome, height = driver.execute_script(
        "return [window.outerHeight - window.innerHeight,"
        " Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)];"
    )
    driver.set_window_size(width, max(700, min(int(height) + int(chrome), 4000)))
    try:
        time.sleep(0.5)  # the plots resize to the new window
        test_ui.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(test_ui.SCREENSHOTS / f"{name}.png"))
    finally:
        driver.set_window_size(width, 768)


@pytest.fixture(scope="module")
def protected(stack: Running) -> Iterator[str]:
    """The dashboard with a token (its navigation bar has a sign-out link too)."""
    runner, base = _serve(DashboardSettings(store_url=stack.store_url, token=TOKEN))
    yield base
    runner.stop()


def _sign_in(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login-submit").click()
    _wait(driver, lambda d: "/login" not in d.current_url, "signed in")


def test_every_navbar_control_is_inside_a_1024_pixel_window(
    chromium: WebDriver, protected: str
) -> None:
    browser = chromium
    _sign_in(browser, protected)
    browser.set_window_size(1024, 768)
    try:
        browser.get(f"{protected}/?range=15m&service=vrp-api")
        _element(browser, "#overview-services", "vrp-api")
        width = browser.execute_script("return window.innerWidth;")
        assert 1000 <= width <= 1024
        links = tuple(f"nav-{i}" for i in range(7))
        shown = tuple(c for c in NAV_CONTROLS if c != "filter-reset")
        assert _outside(browser, (*shown, *links)) == {}
        assert not browser.find_element(By.ID, "filter-reset").is_displayed(), "only when zoomed"
        sign_out = browser.find_element(By.CSS_SELECTOR, ".nav-signout")
        browser.execute_script("arguments[0].id = 'nav-signout';", sign_out)
        assert _outside(browser, ("nav-signout",)) == {}
        _screenshot(browser, "overview-1024", 1024)
        # With an absolute range, its longer label and the reset button still fit.
        browser.get(f"{protected}/?from=2026-12-07T04:00:00Z&to=2026-12-07T04:45:30Z")
        _wait(browser, lambda d: d.find_element(By.ID, "filter-reset").is_displayed(), "reset")
        assert _outside(browser, (*NAV_CONTROLS, *links)) == {}
        # The service selector is usable: it opens and offers the services.
        _choose(browser, "filter-service", "vrp-scheduler")
        _wait(browser, lambda d: _query(d).get("service") == "vrp-scheduler", "the service")
    finally:
        browser.set_window_size(1400, 1000)
        browser.delete_all_cookies()


def _luminance(css_color: str) -> float:
    """0 (black) to 1 (white) for ``rgb(..)``/``rgba(..)`` as the browser reports colours."""
    inside = css_color[css_color.index("(") + 1 : css_color.index(")")]
    red, green, blue = (float(part) for part in inside.split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_the_dark_theme_follows_the_system_colour_scheme(
    window_1400: WebDriver, stack: Running
) -> None:
    browser = window_1400
    dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", dark)
    try:
        browser.get(f"{stack.base}/?range=15m&compare=1")  # the screenshot shows both periods
        _element(browser, "#overview-services", "vrp-api")
        _wait(
            browser,
            lambda d: any("previous" in t["name"] for t in _traces(d, "overview-rate")),
            "the previous period",
        )
        colors = browser.execute_script(
            "const s = e => getComputedStyle(document.querySelector(e));"
            "return {body: s('body').backgroundColor, text: s('body').color,"
            " card: s('.stat-card').backgroundColor,"
            " cell: s('#overview-services td').backgroundColor,"
            " tick: s('#overview-rate .xtick text').fill,"
            " paper: s('#overview-rate .main-svg').backgroundColor};"
        )
        assert _luminance(colors["body"]) < 0.15, colors
        assert _luminance(colors["card"]) < 0.25, colors
        assert _luminance(colors["cell"]) < 0.15, colors
        assert _luminance(colors["text"]) > 0.7, colors
        assert _luminance(colors["tick"]) > 0.7, "chart text readable on the dark page"
        assert colors["paper"] in ("rgba(0, 0, 0, 0)", "transparent"), colors
        _screenshot(browser, "overview-dark", 1400)
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.get(f"{stack.base}/")
    _element(browser, "#overview-services", "vrp-api")
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor;")
    assert _luminance(light) > 0.9
