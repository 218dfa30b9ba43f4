"""The view in the URL (range and service), and the numbers' units: no browser needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import components as ui
from dashboard import url_filters as uf
from dashboard.pages import overview

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def test_a_preset_and_a_service_read_from_the_url_and_back() -> None:
    chosen = uf.from_query("?range=6h&service=vrp-api")
    assert chosen == uf.Filters("6h", "vrp-api")
    assert uf.to_query(chosen) == "?range=6h&service=vrp-api"
    assert uf.window(chosen.range_value, chosen.service) == {"since": "6h", "service": "vrp-api"}


def test_an_absolute_range_reads_from_the_url_as_an_interval_of_utc_times() -> None:
    chosen = uf.from_query("?from=2026-12-07T05:00:00%2B01:00&to=2026-12-07T04:30:00Z")
    assert chosen.range_value == "2026-12-07T04:00:00Z/2026-12-07T04:30:00Z"
    assert chosen.absolute == (
        datetime(2026, 12, 7, 4, 0, tzinfo=UTC),
        datetime(2026, 12, 7, 4, 30, tzinfo=UTC),
    )
    assert uf.to_query(chosen) == "?from=2026-12-07T04%3A00%3A00Z&to=2026-12-07T04%3A30%3A00Z"
    assert uf.window(chosen.range_value, None) == {
        "since": "2026-12-07T04:00:00Z",
        "until": "2026-12-07T04:30:00Z",
        "service": None,
    }
    assert uf.describe(chosen.range_value) == "Dec 07 04:00-04:30 UTC"
    assert (
        uf.describe("2026-12-07T23:00:00Z/2026-12-08T01:00:30Z") == "Dec 07 23:00-Dec 08 01:00 UTC"
    )


def test_the_default_view_needs_no_query_string_and_a_page_keeps_its_own_parameters() -> None:
    assert uf.to_query(uf.Filters()) == ""
    trace = "?trace=" + "ab" * 16
    assert uf.to_query(uf.Filters("15m"), trace + "&range=6h") == trace + "&range=15m"
    assert uf.with_view("/", uf.from_query(trace + "&service=api")) == "/?service=api"


def test_a_link_to_another_page_carries_the_view_and_keeps_its_own_parameters() -> None:
    trace = "/traces?trace=" + "ab" * 16 + "&span=" + "cd" * 8
    assert uf.with_view(trace, uf.Filters("6h", "vrp-api")) == trace + "&range=6h&service=vrp-api"
    absolute = uf.from_query("?from=2026-12-07T04:00:00Z&to=2026-12-07T04:30:00Z")
    assert uf.with_view("/traces?operation=GET+%2Fx", absolute) == (
        "/traces?operation=GET+%2Fx&from=2026-12-07T04%3A00%3A00Z&to=2026-12-07T04%3A30%3A00Z"
    )
    assert uf.with_view("/logs?trace=ab", uf.Filters()) == "/logs?trace=ab", "the default view"
    # An alert's link to its service's Overview keeps that service, and takes the range.
    assert uf.with_view("/?service=vrp-api", uf.Filters("24h", "vrp-worker")) == (
        "/?range=24h&service=vrp-api"
    )


@pytest.mark.parametrize(
    "search",
    [
        "?range=2y",
        "?from=yesterday&to=2026-12-07T04:30:00Z",
        "?from=2026-12-07T05:00:00Z&to=2026-12-07T04:00:00Z",
        "?from=2026-12-07T05:00:00Z",
        "?range=" + "1" * 5000,
    ],
)
def test_a_range_cut_short_or_misspelt_opens_the_default_range(search: str) -> None:
    assert uf.from_query(search).range_value == uf.DEFAULT_RANGE


def test_a_service_name_with_control_characters_or_too_long_is_ignored() -> None:
    assert uf.from_query("?service=a%0Ab").service == uf.ALL_SERVICES
    assert uf.from_query("?service=" + "s" * 256).service == uf.ALL_SERVICES
    assert uf.from_query("?service=" + "s" * 255).service == "s" * 255


def test_the_previous_period_is_as_long_and_ends_where_the_chosen_one_begins() -> None:
    params, shift = uf.previous_window("1h", "api", NOW)
    assert shift == timedelta(hours=1)
    assert params == {
        "since": "2026-12-07T03:00:00Z",
        "until": "2026-12-07T04:00:00Z",
        "service": "api",
    }
    params, shift = uf.previous_window("2026-12-07T04:00:00Z/2026-12-07T04:20:00.500Z", None)
    assert shift == timedelta(minutes=20, milliseconds=500)
    assert params["since"] == "2026-12-07T03:39:59.500Z"
    assert params["until"] == "2026-12-07T04:00:00Z"


def test_durations_read_as_people_say_them() -> None:
    texts = [
        uf.duration_text(timedelta(seconds=s)) for s in (60, 90, 900, 3600, 5400, 86400, 604800)
    ]
    assert texts == ["1 min", "90 s", "15 min", "1 h", "90 min", "1 day", "7 days"]


def _specifier(column: dict) -> str:
    return str(column["format"].to_plotly_json()["specifier"])


def test_a_byte_column_names_its_unit_and_never_shows_a_small_run_as_zero() -> None:
    column, size = ui.bytes_column("stored", "s", [40 * 1024, 52 * 1024, None])
    assert (column["name"], size, _specifier(column)) == ("stored KiB", 1024, ".2f")
    column, size = ui.bytes_column("stored", "s", [12 * 1024**2, 3 * 1024])
    assert (column["name"], size) == ("stored MiB", 1024**2)
    assert f"{3 * 1024 / size:{_specifier(column)}}" == "0.0029"
    column, size = ui.bytes_column("stored", "s", [0, 700])
    assert (column["name"], size, _specifier(column)) == ("stored B", 1, ".0f")


def test_the_rate_card_shows_the_last_whole_minute_not_the_range_average() -> None:
    minute = [
        {"t": f"2026-12-07T04:{m:02d}:00+00:00", "service": s, "rate_per_s": r}
        for m in range(0, 60)
        for s, r in (("api", 3.0 if m == 58 else 0.1), ("worker", 0.5))
    ]
    until = datetime(2026, 12, 7, 4, 59, 30)
    step = overview.bucket_seconds(minute, timedelta(hours=1))
    assert step == 60
    assert overview.current_rate(minute, until, step) == (3.5, datetime(2026, 12, 7, 4, 58))
    assert overview.bucket_seconds(minute[:1], timedelta(hours=24)) == 3600


def test_a_page_switch_lives_in_the_url_beside_the_view() -> None:
    search = uf.with_flag("?range=15m", "compare", True)
    assert search == "?range=15m&compare=1" and uf.flag(search, "compare")
    assert uf.with_flag(search, "compare", False) == "?range=15m"
    assert uf.with_flag("?compare=1", "compare", False) == ""
    assert not uf.flag("?compare=yes", "compare")
    # The navigation bar's links carry the view, not a page's switch.
    assert uf.with_view("/requests", uf.from_query(search)) == "/requests?range=15m"


def test_the_same_parameters_in_another_order_are_the_same_query() -> None:
    assert uf.same_query("?range=15m&compare=1", "?compare=1&range=15m")
    assert uf.same_query("", None)
    assert not uf.same_query("?range=15m&compare=1", "?range=15m")
