"""Fixtures for the recorder (a migrated database, the app, its test client), shared with e2e."""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder import schema_version
from recorder.api import create_app
from recorder.config import Settings, load_settings
from recorder.storage import BlobStore


def make_wav(seconds: float = 0.5, rate: int = 8000, channels: int = 1, freq: float = 440) -> bytes:
    """A real PCM 16-bit WAV file holding a sine tone."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(frames))
    data = b"".join(struct.pack("<h", s) * channels for s in samples)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return buffer.getvalue()


@pytest.fixture
def settings_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "VRP_DATABASE_URL": database_url,
        "VRP_STORAGE_DIR": str(tmp_path / "recordings"),
        "VRP_LOG_DIR": str(tmp_path / "log"),
        "VRP_MAX_UPLOAD_BYTES": str(256 * 1024),
        "VRP_DB_POOL_TIMEOUT": "2",
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return load_settings(settings_env)


@pytest.fixture
def telemetry() -> Iterator[InMemoryTelemetry]:
    recorded = InMemoryTelemetry()
    yield recorded
    recorded.shutdown()


def migrated_database(settings: Settings, telemetry: InMemoryTelemetry) -> Database:
    database = Database(
        settings.database,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    schema_version.upgrade(database.engine)
    return database


def recorder_app(settings: Settings, db: Database, telemetry: InMemoryTelemetry) -> Flask:
    return create_app(
        settings,
        db=db,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )


@pytest.fixture
def db(settings: Settings, telemetry: InMemoryTelemetry) -> Iterator[Database]:
    database = migrated_database(settings, telemetry)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database, telemetry: InMemoryTelemetry) -> Flask:
    return recorder_app(settings, db, telemetry)


MakeClient = Callable[..., tuple[FlaskClient, Database]]


@pytest.fixture
def make_client(settings_env: dict[str, str], telemetry: InMemoryTelemetry) -> Iterator[MakeClient]:
    """Another app on the test database, with some ``VRP_*`` settings overridden."""
    opened: list[Database] = []

    def make(**overrides: str) -> tuple[FlaskClient, Database]:
        settings = load_settings({**settings_env, **overrides})
        database = migrated_database(settings, telemetry)
        opened.append(database)
        return recorder_app(settings, database, telemetry).test_client(), database

    yield make
    for database in opened:
        database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def stored_blobs(settings: Settings) -> list[str]:
    """The sha256 of every complete blob in the store (temporary files excluded)."""
    return list(BlobStore(settings.storage_dir, settings.max_upload_bytes).iter_blobs())


def upload(
    client: FlaskClient,
    payload: bytes | None = None,
    *,
    title: str = "hello",
    tags: list[str] | str | None = None,
    filename: str = "hello.wav",
) -> tuple[int, dict]:
    data: dict[str, object] = {
        "title": title,
        "file": (io.BytesIO(payload or make_wav()), filename),
    }
    if tags is not None:
        data["tags"] = tags
    response = client.post("/api/recordings", data=data, content_type="multipart/form-data")
    return response.status_code, response.get_json()
