"""``/api/traces``: search by span attribute, operation in any case, paging past 100 traces.

Traces go in as OTLP protobuf to the real receiver of a dashboard listening on a socket, on a
SQLite file and on the real PostgreSQL server; the searches are read over HTTP.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import requests
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from dashboard import trace_search
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard import otlp_bodies
from tests.dashboard.conftest import Live, serve

SERVER, INTERNAL = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_INTERNAL
TRACES = 270
NOT_FOUND_EVERY = 9  # every ninth trace answered 404: 30 of 270


@pytest.fixture
def any_live(database_url: str) -> Iterator[Live]:
    store = TelemetryStore(database_url)
    store.upgrade()
    try:
        yield from serve(
            DashboardSettings(store_url=database_url, max_body_bytes=8 * 1024 * 1024), store
        )
    finally:
        store.dispose()


def _request_id(index: int) -> str:
    return f"req-{index:04d}-0123456789abcdef0123456789"


def _send_requests(live: Live) -> dict[str, list[str]]:
    """270 requests of the last 20 minutes, as SERVER span + db.session: every ninth a 404 whose
    session carries ``error.type=NotFoundError``. Returns trace ids by kind of answer."""
    rng = random.Random(21)
    now = time.time_ns()
    spans = []
    sent: dict[str, list[str]] = {"404": [], "200": [], "all": []}
    for index in range(TRACES):
        trace_id, root, session = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
        start = now - 20 * 60 * 10**9 + index * 4 * 10**9
        not_found = index % NOT_FOUND_EVERY == 0
        status = 404 if not_found else 200
        spans.append(
            otlp_bodies.span(
                trace_id,
                root,
                "GET /api/recordings/{id}",
                start,
                (1 + index) * 100_000,
                kind=SERVER,
                attributes={
                    "http.request.method": "GET",
                    "http.route": "/api/recordings/{id}",
                    "http.response.status_code": status,
                    "vrp.request.id": _request_id(index),
                },
            )
        )
        session_attributes: dict[str, str | int | float | bool] = {"db.system.name": "sqlite"}
        if not_found:
            session_attributes["error.type"] = "NotFoundError"
        spans.append(
            otlp_bodies.span(
                trace_id,
                session,
                "db.session",
                start + 10_000,
                50_000,
                parent=root,
                kind=INTERNAL,
                attributes=session_attributes,
            )
        )
        sent[str(status)].append(trace_id.hex())
        sent["all"].append(trace_id.hex())
    # One request with the header recorded as OpenTelemetry does: a string array.
    header_trace = rng.randbytes(16)
    spans.append(
        otlp_bodies.span(
            header_trace,
            rng.randbytes(8),
            "POST /api/recordings",
            now - 60 * 10**9,
            3_000_000,
            kind=SERVER,
            attributes={"http.response.status_code": 201},
        )
    )
    spans[-1].attributes.append(otlp_bodies.array_kv("http.request.header.x-request-id", ["abc"]))
    sent["header"] = [header_trace.hex()]
    sent["all"].append(header_trace.hex())
    response = requests.post(
        f"{live.url}/v1/traces",
        data=otlp_bodies.traces_request(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return sent


def _ids(document: dict) -> list[str]:
    return [row["trace_id"] for row in document["traces"]]


def test_attribute_search_finds_the_traces_of_each_example(any_live: Live) -> None:
    sent = _send_requests(any_live)
    by_status = any_live.get("/api/traces", attribute="http.response.status_code=404", limit=1000)
    assert sorted(_ids(by_status)) == sorted(sent["404"])
    assert by_status["search"] == {
        "attributes": ["http.response.status_code=404"],
        "scan_limit_spans": trace_search.SCAN_SPANS,
        "searched_since": None,
    }
    # error.type is on the db.session span, not the root: the trace matches all the same.
    by_error = any_live.get("/api/traces", attribute="error.type=NotFoundError", limit=1000)
    assert sorted(_ids(by_error)) == sorted(sent["404"])
    by_request = any_live.get("/api/traces", attribute=f"vrp.request.id={_request_id(18)}")
    assert _ids(by_request) == [sent["all"][18]]
    by_header = any_live.get("/api/traces", attribute="http.request.header.x-request-id=abc")
    assert _ids(by_header) == sent["header"]
    header_exists = any_live.get("/api/traces", attribute="http.request.header.x-request-id")
    assert _ids(header_exists) == sent["header"]
    key_exists = any_live.get("/api/traces", attribute="error.type", limit=1000)
    assert sorted(_ids(key_exists)) == sorted(sent["404"])
    assert any_live.get("/api/traces", attribute="http.response.status_code=4")["traces"] == []


def test_several_attributes_must_all_match(any_live: Live) -> None:
    sent = _send_requests(any_live)
    with any_live.app.test_client() as client:
        both = client.get(
            "/api/traces",
            query_string=[
                ("attribute", "error.type=NotFoundError"),
                ("attribute", f"vrp.request.id={_request_id(9)}"),
            ],
        ).get_json()
        neither = client.get(
            "/api/traces",
            query_string=[
                ("attribute", "error.type=NotFoundError"),
                ("attribute", f"vrp.request.id={_request_id(10)}"),
            ],
        ).get_json()
    assert _ids(both) == [sent["all"][9]]
    assert neither["traces"] == []


def test_operation_matches_in_any_case_and_is_suggested(any_live: Live) -> None:
    sent = _send_requests(any_live)
    found = any_live.get("/api/traces", operation="get /API/recordings/{ID}", limit=1000)
    assert sorted(_ids(found)) == sorted(sent["200"] + sent["404"])
    assert {"GET /api/recordings/{id}", "POST /api/recordings"} <= set(found["operations"])
    assert "db.session" not in found["operations"]


def test_pages_of_100_cover_every_trace_once_and_say_when_more_exist(any_live: Live) -> None:
    sent = _send_requests(any_live)
    seen: list[str] = []
    durations: list[float] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = any_live.get("/api/traces", limit=100, offset=offset)
        pages += 1
        seen.extend(_ids(page))
        durations.extend(row["duration_ms"] for row in page["traces"])
        assert page["has_more"] == (page["next_offset"] is not None)
        offset = page["next_offset"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == TRACES + 1
    assert set(seen) == set(sent["all"])
    assert durations == sorted(durations, reverse=True)
    last = any_live.get("/api/traces", limit=100, offset=200)
    assert len(last["traces"]) == TRACES + 1 - 200
    assert last["has_more"] is False


def test_a_search_over_more_spans_than_it_reads_says_from_when_it_searched(
    any_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _send_requests(any_live)
    monkeypatch.setattr(trace_search, "SCAN_SPANS", 100)
    found = any_live.get("/api/traces", attribute="error.type=NotFoundError", limit=1000)
    # The newest 100 spans are the last 50 requests (two spans each) and the header request.
    newest = set(sent["all"][TRACES - 50 :])
    assert set(_ids(found)) == set(sent["404"]) & newest
    assert found["search"]["scan_limit_spans"] == 100
    assert found["search"]["searched_since"] is not None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"attribute": "=404"}, "attribute"),
        ({"attribute": "http status=404"}, "attribute"),
        ({"attribute": 'key"quoted=1'}, "attribute"),
        ({"attribute": "a=" + "x" * 1025}, "attribute"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "many"}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"attribtue": "error.type"}, "attribtue"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_search_parameters_are_422s_naming_the_field(
    live: Live, params: dict[str, str], field: str
) -> None:
    with live.app.test_client() as client:
        response = client.get("/api/traces", query_string=params)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in response.get_json()["errors"]["query"]


def test_more_attribute_conditions_than_allowed_are_a_422(live: Live) -> None:
    conditions = [("attribute", f"k{i}=v") for i in range(trace_search.MAX_CONDITIONS + 1)]
    with live.app.test_client() as client:
        response = client.get("/api/traces", query_string=conditions)
    assert response.status_code == 422
    assert "attribute" in response.get_json()["errors"]["query"]


def test_many_matching_traces_are_tested_as_a_set_with_the_same_answer(
    any_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LOOKUP_UP_TO matching traces, SQLite walks the roots and tests each against the
    set instead of looking each one up: the page is the same."""
    _send_requests(any_live)
    looked_up = any_live.get("/api/traces", attribute="http.route", limit=100, offset=100)
    monkeypatch.setattr(trace_search, "LOOKUP_UP_TO", 10)
    walked = any_live.get("/api/traces", attribute="http.route", limit=100, offset=100)
    assert len(looked_up["traces"]) == 100
    assert walked == looked_up
