"""``VRP_STEP_SPANS``: on by default; ``false`` leaves the request's step spans out and keeps
everything else (the server span, the database spans, the response)."""

from __future__ import annotations

import io

from flask.testing import FlaskClient
from opentelemetry.trace import SpanKind

from instrumentation import conventions
from instrumentation.testing import InMemoryTelemetry
from recorder.config import load_settings
from tests.recorder.fixtures import MakeClient, make_wav

STEP_SPANS = frozenset(
    {
        conventions.HTTP_REQUEST_ROUTE_SPAN,
        conventions.HTTP_REQUEST_PARSE_SPAN,
        conventions.AUDIO_PROBE_SPAN,
        conventions.STORAGE_WRITE_SPAN,
        conventions.STORAGE_LOCK_SPAN,
        conventions.HTTP_RESPONSE_SERIALIZE_SPAN,
        conventions.HTTP_RESPONSE_FINALIZE_SPAN,
    }
)


def _create_and_get(client: FlaskClient, telemetry: InMemoryTelemetry) -> list[str]:
    """Upload then read one recording; the names of the spans the two requests made."""
    telemetry.clear()
    created = client.post(
        "/api/recordings",
        data={"title": "standup", "file": (io.BytesIO(make_wav()), "standup.wav")},
        content_type="multipart/form-data",
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    got = client.get(f"/api/recordings/{created.get_json()['id']}")
    assert got.status_code == 200 and got.get_json()["title"] == "standup"
    return [span.name for span in telemetry.spans()]


def test_step_spans_are_on_by_default() -> None:
    assert load_settings({}).step_spans is True
    assert load_settings({"VRP_STEP_SPANS": "false"}).step_spans is False


def test_without_step_spans_a_request_keeps_its_server_and_database_spans_only(
    make_client: MakeClient, telemetry: InMemoryTelemetry
) -> None:
    with_steps, _ = make_client()
    without_steps, _ = make_client(VRP_STEP_SPANS="false")

    on = _create_and_get(with_steps, telemetry)
    assert set(on) >= STEP_SPANS, f"step spans missing by default: {sorted(set(on))}"

    off = _create_and_get(without_steps, telemetry)
    assert not STEP_SPANS & set(off), f"step spans left with VRP_STEP_SPANS=false: {off}"
    servers = [s for s in telemetry.spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == [
        "POST /api/recordings",
        "GET /api/recordings/<uuid:recording_id>",
    ]
    assert off.count("db.session") == on.count("db.session") > 0
    assert sorted(name for name in on if name not in STEP_SPANS) == sorted(off)
    # A create has 9 step spans (route, 3 parse, probe, write, lock, serialize, finalize), a get 3.
    assert len(on) - len(off) == 12
