"""Property-based fuzzing of the dashboard's ``/api/`` from its own OpenAPI document: no query,
valid or not, may cause a 5xx.

Schemathesis generates query strings for every operation and sends them to the real app over a
real SQLite store holding a small day of telemetry sent by the SDK's exporters. Extra explicit
examples pin the values that once gave 500s (``0m``, ``3000000d``, far past and future dates).
The cases are counted so that the test proves the run covered every operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.conftest import Live, serve
from tests.dashboard.ui_telemetry import send_stack_telemetry
from tests.fuzzing import fuzz_operation

EXAMPLES_PER_OPERATION = 40
RANGE_PANELS = (
    "/api/summary",
    "/api/operations",
    "/api/queries",
    "/api/pool",
    "/api/transactions",
    "/api/logs",
    "/api/traces",
    "/api/backups",
)
# What a user (or a script) might type into since/until: relative intervals of any size, dates
# of any year and zone, and noise.
_INSTANTS = st.one_of(
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(0, 10**30),
        st.sampled_from(["s", "m", "h", "d"]),
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)


@pytest.fixture(scope="module")
def live_with_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("api-fuzz")
    store = TelemetryStore(f"sqlite:///{root / 'telemetry.db'}")
    store.upgrade()
    settings_ = DashboardSettings(store_url=store.url, max_body_bytes=4 * 1024 * 1024)
    for live in serve(settings_, store):
        send_stack_telemetry(live.url)
        yield live
    store.dispose()


def test_no_generated_query_causes_a_server_error(live_with_data: Live) -> None:
    api_schema = schemathesis.openapi.from_wsgi("/api/openapi.json", live_with_data.app)
    seen: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= len(RANGE_PANELS) + 2
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, seen, examples=EXAMPLES_PER_OPERATION)
    covered = {line.split()[1] for line in seen}
    assert set(RANGE_PANELS) <= covered, covered


@given(path=st.sampled_from(RANGE_PANELS), since=_INSTANTS, until=st.none() | _INSTANTS)
@example(path="/api/summary", since="0m", until=None)
@example(path="/api/pool", since="3000000d", until=None)
@example(path="/api/traces", since="1000-01-01T00:00:00Z", until=None)
@example(path="/api/logs", since="0001-01-01T00:00:00+14:00", until="9999-12-31T23:59:59-14:00")
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_since_or_until_value_causes_a_server_error(
    live_with_data: Live, path: str, since: str, until: str | None
) -> None:
    query = {"since": since} if until is None else {"since": since, "until": until}
    with live_with_data.app.test_client() as client:
        response = client.get(path, query_string=query)
    assert response.status_code in (200, 422), (query, response.get_data(as_text=True)[:500])
    if response.status_code == 422:
        assert set(response.get_json()["errors"]["query"]) <= set(query)
