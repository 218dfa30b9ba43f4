"""Property-based fuzzing of the API from its own OpenAPI document: no input may cause a 5xx.

Schemathesis generates valid and invalid requests for every operation; each one goes through
the real app and database. The cases are counted so that the test proves the run really
covered at least ``MIN_CASES`` of them on each backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis import GenerationMode

from instrumentation.database import Database
from instrumentation.testing import InMemoryTelemetry
from recorder import schema_version
from recorder.api import create_app
from recorder.config import load_settings
from tests.conftest import reset_postgres
from tests.fuzzing import fuzz_operation

MIN_CASES = 500
EXAMPLES_PER_OPERATION = 60


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


def test_no_input_causes_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Valid and invalid cases for every operation; pytest's own schemathesis plugin is not
    used because it does not work with pytest 9 (it writes ``Function._nodeid``)."""
    seen: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, seen, examples=EXAMPLES_PER_OPERATION)
    assert len(seen) >= MIN_CASES, f"only {len(seen)} cases generated"
