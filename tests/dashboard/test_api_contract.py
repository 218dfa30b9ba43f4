"""The API's contract: every endpoint of ``/api/openapi.json`` documents its body, and the real
bodies, read from a store that the real OpenTelemetry SDK filled over OTLP, match it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, validate

from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.conftest import Live, serve
from tests.dashboard.ui_telemetry import SLOW_QUERY, Sent, send_stack_telemetry

WAIT_S = 30
_PATH_PARAMETER = re.compile(r"\{([a-z_]{1,40})\}")
_RULE_PARAMETER = re.compile(r"<(?:[a-z]{1,20}:)?([a-z_]{1,40})>")


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Sent]]:
    """A dashboard on a real SQLite file holding fifty minutes of the stack's telemetry."""
    store = TelemetryStore(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'telemetry.db'}")
    store.upgrade()
    settings = DashboardSettings(store_url=store.url, max_body_bytes=4 * 1024 * 1024)
    try:
        for live in serve(settings, store):
            yield from _filled(live)
    finally:
        store.dispose()


def _filled(live: Live) -> Iterator[tuple[Live, Sent]]:
    sent = send_stack_telemetry(live.url)
    deadline = time.monotonic() + WAIT_S
    while not (
        live.get("/api/queries")["queries"]
        and live.get("/api/backups")["has_telemetry"]
        and live.get("/api/queries")["n_plus_one"]
    ):
        assert time.monotonic() < deadline, "the telemetry sent never became readable"
        time.sleep(0.2)
    yield live, sent


def _document(live: Live) -> dict[str, Any]:
    return live.get("/api/openapi.json")


def _endpoints(document: dict[str, Any]) -> list[str]:
    return sorted(
        path
        for path, operations in document["paths"].items()
        if path.startswith("/api/") and "get" in operations
    )


def _body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    """The documented 200 body of ``GET path``, resolvable on its own; fails without one."""
    answer = document["paths"][path]["get"]["responses"].get("200", {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    assert schema, f"GET {path} documents no response body schema in /api/openapi.json"
    return {**schema, "components": document["components"]}


def _calls(path: str, sent: Sent) -> list[tuple[str, dict[str, str]]]:
    """The requests that exercise ``path``: its plain call, and one per optional part."""
    concrete = _PATH_PARAMETER.sub(lambda _m: sent.n_plus_one_trace_id, path)
    calls = [(concrete, {})]
    extra = {
        "/api/queries": {"summary": SLOW_QUERY},
        "/api/logs": {"level": "warn", "offset": "3", "limit": "5"},
        "/api/summary": {"since": "24h"},
        "/api/backups": {"since": "7d"},
    }
    if path in extra:
        calls.append((concrete, extra[path]))
    return calls


def test_every_endpoint_documents_its_body_and_answers_with_it(
    filled: tuple[Live, Sent],
) -> None:
    live, sent = filled
    document = _document(live)
    endpoints = _endpoints(document)
    assert {"/api/logs", "/api/queries", "/api/traces/{trace_id}", "/api/backups"} <= set(endpoints)
    for path in endpoints:
        schema = _body_schema(document, path)
        for concrete, params in _calls(path, sent):
            body = live.get(concrete, **params)
            validate(body, schema, cls=OAS30Validator)


def test_a_body_with_an_undocumented_field_fails_the_contract(filled: tuple[Live, Sent]) -> None:
    live, _sent = filled
    document = _document(live)
    body = live.get("/api/queries")
    body["queries"][0]["undocumented"] = 1
    with pytest.raises(Exception, match="undocumented"):
        validate(body, _body_schema(document, "/api/queries"), cls=OAS30Validator)


def test_an_endpoint_without_a_body_schema_fails_the_contract(live: Live) -> None:
    document = _document(live)
    del document["paths"]["/api/pool"]["get"]["responses"]["200"]["content"]
    with pytest.raises(AssertionError, match="GET /api/pool documents no response body"):
        _body_schema(document, "/api/pool")


def test_every_route_under_api_is_in_the_document(filled: tuple[Live, Sent]) -> None:
    """A route added to /api/ outside the documented blueprint would escape the contract."""
    live, _sent = filled
    documented = set(_endpoints(_document(live)))
    routes = {
        _RULE_PARAMETER.sub(r"{\1}", rule.rule)
        for rule in live.app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and "GET" in (rule.methods or ())
    }
    assert routes - {"/api/openapi.json"} == documented
