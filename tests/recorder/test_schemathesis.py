"""Property-based fuzzing of the API from its own OpenAPI document: no input may cause a 5xx.

Schemathesis generates valid and invalid requests for every operation; each one goes through
the real app and database. The cases are counted per backend so that the final test can prove
the run really covered at least ``MIN_CASES`` of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder import schema_version
from recorder.api import create_app
from recorder.config import load_settings
from tests.conftest import reset_postgres

MIN_CASES = 500
EXAMPLES_PER_OPERATION = 120
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return request.param


@pytest.fixture(scope="module")
def api_schema(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    root: Path = tmp_path_factory.mktemp(f"schemathesis-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{root / 'fuzz.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
    settings_ = load_settings(
        {
            "VRP_DATABASE_URL": url,
            "VRP_STORAGE_DIR": str(root / "recordings"),
            "VRP_LOG_DIR": str(root / "log"),
            "VRP_MAX_UPLOAD_BYTES": str(64 * 1024),
        }
    )
    telemetry = InMemoryTelemetry()
    db = Database(settings_.database, tracer_provider=telemetry.tracer_provider)
    schema_version.upgrade(db.engine)
    app = create_app(settings_, db=db, tracer_provider=telemetry.tracer_provider)
    yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    db.dispose()
    telemetry.shutdown()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(case: schemathesis.Case, backend: str) -> None:
    CASES[backend] += 1
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )


def test_enough_cases_were_generated(backend: str) -> None:
    assert CASES[backend] >= MIN_CASES, dict(CASES)
