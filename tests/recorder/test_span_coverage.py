"""Every route's server span is explained by its children: at most 10 % of its time is a gap.

The routes are read from the app's ``url_map``, so a new route fails here until it has a
realistic request below. Each is sent :data:`REQUESTS_PER_ROUTE` times against a database of
some thousands of recordings (uploads are a real WAV of a few hundred KiB, each distinct, so
every one stores and fsyncs a new blob), its spans read from the in-memory exporter, and the
median share of the server span covered by the union of its direct children's intervals must
reach :data:`MIN_COVERAGE` (the median keeps a preemption on this shared machine from
deciding the outcome).
"""

from __future__ import annotations

import io
import statistics
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from werkzeug.test import TestResponse

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder.config import Settings, load_settings
from recorder.models import Recording, RecordingStatus, Tag, recording_tags, utcnow
from tests.recorder.fixtures import make_wav, migrated_database, recorder_app

MIN_COVERAGE = 0.90
REQUESTS_PER_ROUTE = 7
SEEDED_RECORDINGS = 3000
SEEDED_TAGS = ("work", "personal", "music", "meeting", "idea", "draft")
# About 310 KiB: 20 s of 8 kHz mono 16-bit PCM.
UPLOAD_SECONDS = 20.0
# Routes that are not traced on purpose (see recorder.api.app): they must answer, and emit no
# server span.
UNTRACED = frozenset({"/healthz", "/metrics"})


@dataclass
class Scene:
    """The app under test, its database, and recordings made for the requests to use."""

    client: FlaskClient
    db: Database
    telemetry: InMemoryTelemetry
    wav: bytes
    ids: list[str] = field(default_factory=list)
    serial: int = 0

    def fresh_upload(self) -> bytes:
        """The WAV with its last samples changed: a blob the store does not hold yet."""
        self.serial += 1
        return self.wav[:-8] + self.serial.to_bytes(8, "little")

    def upload(self, payload: bytes | None = None, **headers: str) -> TestResponse:
        return self.client.post(
            "/api/recordings",
            data={
                "title": f"interview {self.serial}",
                "tags": "work, interview",
                "file": (io.BytesIO(payload or self.fresh_upload()), "interview.wav"),
            },
            content_type="multipart/form-data",
            headers=headers,
        )

    def new_recording(self) -> str:
        response = self.upload()
        assert response.status_code == 201, response.get_data(as_text=True)
        recording_id: str = response.get_json()["id"]
        return recording_id

    def etag(self, recording_id: str) -> str:
        return self.client.get(f"/api/recordings/{recording_id}").headers["ETag"]


# One request of each (URL rule, method): a setup step whose spans are not measured, then the
# request. Every route of the app must be here (or in UNTRACED).
Prepared = Callable[[], TestResponse]
ROUTE_REQUESTS: dict[tuple[str, str], Callable[[Scene], Prepared]] = {
    ("/api/recordings", "GET"): lambda scene: (
        lambda: scene.client.get(
            "/api/recordings?page_size=50&tag=work&sort=title&order=asc&page=3"
        )
    ),
    ("/api/recordings", "POST"): lambda scene: (
        lambda payload: lambda: scene.upload(payload, **{"Idempotency-Key": uuid.uuid4().hex * 2})
    )(scene.fresh_upload()),
    ("/api/recordings/<uuid:recording_id>", "GET"): lambda scene: (
        lambda: scene.client.get(f"/api/recordings/{scene.ids[0]}")
    ),
    ("/api/recordings/<uuid:recording_id>", "PATCH"): lambda scene: (
        lambda etag: (
            lambda: scene.client.patch(
                f"/api/recordings/{scene.ids[1]}",
                json={"title": f"renamed {uuid.uuid4().hex[:8]}", "tags": ["work", "edited"]},
                headers={"If-Match": etag},
            )
        )
    )(scene.etag(scene.ids[1])),
    ("/api/recordings/<uuid:recording_id>", "DELETE"): lambda scene: (
        lambda recording_id: (
            lambda: scene.client.delete(f"/api/recordings/{recording_id}?purge=true")
        )
    )(scene.new_recording()),
    ("/api/recordings/<uuid:recording_id>/audio", "GET"): lambda scene: (
        lambda: scene.client.get(
            f"/api/recordings/{scene.ids[0]}/audio", headers={"Range": "bytes=0-65535"}
        )
    ),
    ("/api/tags", "GET"): lambda scene: lambda: scene.client.get("/api/tags"),
    ("/readyz", "GET"): lambda scene: lambda: scene.client.get("/readyz"),
    ("/api/openapi.json", "GET"): lambda scene: lambda: scene.client.get("/api/openapi.json"),
    ("/healthz", "GET"): lambda scene: lambda: scene.client.get("/healthz"),
    ("/metrics", "GET"): lambda scene: lambda: scene.client.get("/metrics"),
}
# Soft deletion, the other behaviour of DELETE, measured as a route of its own.
SOFT_DELETE = ("/api/recordings/<uuid:recording_id> (soft)", "DELETE")
ROUTE_REQUESTS[SOFT_DELETE] = lambda scene: (
    lambda recording_id: lambda: scene.client.delete(f"/api/recordings/{recording_id}")
)(scene.new_recording())


def _seed(db: Database, sha256: str, size: int, count: int) -> None:
    """``count`` recordings sharing one stored blob, each with two of the tags."""
    now = utcnow()
    with db.engine.begin() as conn:
        tag_ids = {
            name: conn.execute(sa.insert(Tag).values(name=name).returning(Tag.id)).scalar_one()
            for name in SEEDED_TAGS
            if conn.execute(sa.select(Tag.id).where(Tag.name == name)).scalar() is None
        }
        tag_ids |= {name: tag_id for name, tag_id in conn.execute(sa.select(Tag.name, Tag.id))}
        rows = [
            {
                "public_id": uuid.uuid4(),
                "title": f"recording {index:05d}",
                "original_filename": f"recording-{index}.wav",
                "sha256": sha256,
                "mime_type": "audio/wav",
                "audio_format": "wav",
                "size_bytes": size,
                "duration_seconds": UPLOAD_SECONDS,
                "sample_rate": 8000,
                "channels": 1,
                "status": RecordingStatus.ACTIVE,
                "created_at": now - timedelta(minutes=index),
                "updated_at": now - timedelta(minutes=index),
                "version": 1,
            }
            for index in range(count)
        ]
        before = conn.execute(sa.select(sa.func.max(Recording.id))).scalar() or 0
        conn.execute(sa.insert(Recording), rows)
        ids = (
            conn.execute(
                sa.select(Recording.id).where(Recording.id > before).order_by(Recording.id)
            )
            .scalars()
            .all()
        )
        links = [
            {"recording_id": recording_id, "tag_id": tag_ids[SEEDED_TAGS[(index + step) % 6]]}
            for index, recording_id in enumerate(ids)
            for step in (0, 3)
        ]
        conn.execute(sa.insert(recording_tags).prefix_with("OR IGNORE", dialect="sqlite"), links)


@pytest.fixture
def scene(
    settings_env: dict[str, str], telemetry: InMemoryTelemetry, tmp_path: Path
) -> Iterator[Scene]:
    settings: Settings = load_settings(
        {
            **settings_env,
            "VRP_MAX_UPLOAD_BYTES": str(1024 * 1024),
            "VRP_API_METRICS_ENABLED": "true",
        }
    )
    database = migrated_database(settings, telemetry)
    app: Flask = recorder_app(settings, database, telemetry)
    scene = Scene(app.test_client(), database, telemetry, make_wav(seconds=UPLOAD_SECONDS))
    for _ in range(2):
        scene.ids.append(scene.new_recording())
    first = scene.client.get(f"/api/recordings/{scene.ids[0]}").get_json()
    _seed(database, first["sha256"], first["size_bytes"], SEEDED_RECORDINGS)
    yield scene
    database.dispose()


def _covered(server: ReadableSpan, children: list[ReadableSpan]) -> float:
    """The share of ``server``'s duration inside the union of ``children``'s intervals."""
    start, end = server.start_time or 0, server.end_time or 0
    intervals = sorted(
        (max(start, child.start_time or 0), min(end, child.end_time or 0)) for child in children
    )
    covered, reached = 0, start
    for low, high in intervals:
        low = max(low, reached)
        if high > low:
            covered += high - low
            reached = high
    return covered / max(1, end - start)


def _gaps(server: ReadableSpan, children: list[ReadableSpan]) -> str:
    """The children and the gaps between them, in microseconds from the server span's start."""
    start = server.start_time or 0
    parts = [
        f"{child.name} {((child.start_time or 0) - start) // 1000}"
        f"+{((child.end_time or 0) - (child.start_time or 0)) // 1000}us"
        for child in sorted(children, key=lambda span: span.start_time or 0)
    ]
    total = ((server.end_time or 0) - start) // 1000
    return f"{total}us: " + ", ".join(parts)


def _measure(scene: Scene, prepare: Callable[[Scene], Prepared]) -> list[tuple[float, str]]:
    """Coverage and a description of each of the route's requests."""
    measured = []
    for _ in range(REQUESTS_PER_ROUTE):
        send = prepare(scene)
        scene.telemetry.clear()
        response = send()
        assert response.status_code < 400, response.get_data(as_text=True)[:500]
        spans = scene.telemetry.spans()
        servers = [span for span in spans if span.kind is SpanKind.SERVER]
        assert len(servers) <= 1
        if not servers:
            measured.append((1.0, "untraced"))
            continue
        server = servers[0]
        children = [
            span
            for span in spans
            if span.parent is not None and span.parent.span_id == server.context.span_id
        ]
        measured.append((_covered(server, children), _gaps(server, children)))
    return measured


def test_every_route_spends_at_least_90_percent_of_its_time_in_child_spans(
    scene: Scene,
) -> None:
    app_routes = {
        (rule.rule, method)
        for rule in scene.client.application.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    missing = app_routes - set(ROUTE_REQUESTS)
    assert not missing, f"routes without a request in ROUTE_REQUESTS: {sorted(missing)}"
    failures = []
    for route, prepare in sorted(ROUTE_REQUESTS.items()):
        measured = _measure(scene, prepare)
        if route[0] in UNTRACED:
            assert all(text == "untraced" for _, text in measured), (route, measured)
            continue
        median = statistics.median(coverage for coverage, _ in measured)
        if median < MIN_COVERAGE:
            ranked = sorted(measured)
            failures.append(
                f"{route[1]} {route[0]}: median {median:.0%} covered; "
                f"median request {ranked[len(ranked) // 2][1]}; worst {ranked[0][1]}"
            )
    assert not failures, "\n".join(failures)
