from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from instrumentation.database import Database
from instrumentation.statements import ParsedStatement, error_type, parse_statement
from instrumentation.testing import InMemoryTelemetry
from tests.instrumentation.conftest import MakeDatabase, create_recordings

SENTINEL = "sentinel-7f3a9c"


def all_recorded_text(telemetry: InMemoryTelemetry) -> str:
    """Every name, attribute, event and status text of every span and metric point, joined."""
    parts: list[str] = []
    for span in telemetry.spans():
        parts += [span.name, repr(dict(span.attributes)), str(span.status.description)]
        for event in span.events:
            parts += [event.name, repr(dict(event.attributes))]
    data = telemetry.metric_reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                parts += [repr(dict(p.attributes)) for p in metric.data.data_points]
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "SELECT recordings.id, recordings.title FROM recordings WHERE recordings.id = ?",
            ParsedStatement("SELECT", "recordings"),
        ),
        (
            "SELECT count(*) AS count_1 FROM (SELECT recordings.id FROM recordings) AS anon_1",
            ParsedStatement("SELECT", "recordings"),
        ),
        (
            "SELECT EXTRACT(year FROM recordings.created) FROM recordings",
            ParsedStatement("SELECT", "recordings"),
        ),
        ("SELECT 'FROM fake' FROM tags", ParsedStatement("SELECT", "tags")),
        (
            'INSERT INTO "Recording Tags" (name) VALUES (%(name)s) RETURNING id',
            ParsedStatement("INSERT", "Recording Tags"),
        ),
        ("insert or replace into tags values (?)", ParsedStatement("INSERT", "tags")),
        (
            "UPDATE public.recordings SET title=%(title)s",
            ParsedStatement("UPDATE", "public.recordings"),
        ),
        ("UPDATE OR IGNORE recordings SET title=?", ParsedStatement("UPDATE", "recordings")),
        ("DELETE FROM recordings WHERE id = ?", ParsedStatement("DELETE", "recordings")),
        (
            "CREATE TABLE IF NOT EXISTS recordings (id INTEGER REFERENCES users ON DELETE CASCADE)",
            ParsedStatement("CREATE", "recordings"),
        ),
        (
            "CREATE UNIQUE INDEX ix_title ON recordings (title)",
            ParsedStatement("CREATE", "recordings"),
        ),
        ("DROP TABLE IF EXISTS recordings", ParsedStatement("DROP", "recordings")),
        ("TRUNCATE TABLE recordings", ParsedStatement("TRUNCATE", "recordings")),
        ("  -- why\n/* how */ (SELECT 1)", ParsedStatement("SELECT", None)),
        ("BEGIN IMMEDIATE", ParsedStatement("BEGIN", None)),
        ("SAVEPOINT sa_savepoint_1", ParsedStatement("SAVEPOINT", None)),
        ("PRAGMA journal_mode", ParsedStatement("PRAGMA", None)),
        ("", ParsedStatement(None, None)),
    ],
)
def test_parse_statement_finds_the_operation_and_first_collection(
    statement: str, expected: ParsedStatement
) -> None:
    assert parse_statement(statement) == expected


def test_query_summary_is_operation_and_collection_or_operation_alone() -> None:
    assert parse_statement("SELECT * FROM recordings").summary == "SELECT recordings"
    assert parse_statement("SELECT 1").summary == "SELECT"
    assert parse_statement("").summary is None


def test_parse_statement_is_cached_per_statement_string() -> None:
    statement = "SELECT title FROM cached_recordings"
    parse_statement(statement)
    hits = parse_statement.cache_info().hits

    parse_statement(statement)

    assert parse_statement.cache_info().hits == hits + 1


def test_error_type_prefers_the_driver_code_then_the_driver_class() -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", {}, ValueError("x"))

    assert error_type(wrapped) == "ValueError"
    assert error_type(KeyError("k")) == "KeyError"
    assert error_type(sa.exc.TimeoutError()) == "sqlalchemy.exc.TimeoutError"


def test_statement_span_has_exactly_the_contract_attributes_and_no_parameter_values(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        session.execute(
            sa.text("INSERT INTO recordings (id, title) VALUES (:id, :title)"),
            {"id": 1, "title": SENTINEL},
        )
        session.commit()

    span = telemetry.span_named("INSERT recordings")
    assert span.kind is SpanKind.CLIENT
    expected = {
        "db.system.name": db.system,
        "db.namespace": "test.db" if db.system == "sqlite" else db.engine.url.database,
        "db.operation.name": "INSERT",
        "db.collection.name": "recordings",
    }
    if db.system == "postgresql":
        expected |= {"server.address": "127.0.0.1", "server.port": 5432}
    query_text = span.attributes["db.query.text"]
    assert {k: v for k, v in span.attributes.items() if k != "db.query.text"} == expected
    assert query_text.startswith("INSERT INTO recordings (id, title) VALUES (")
    assert "%(title)s" in query_text or "?" in query_text
    assert SENTINEL not in all_recorded_text(telemetry)


def test_failed_statement_records_error_type_and_status_code_but_no_values(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    insert = sa.text("INSERT INTO recordings (id, title) VALUES (:id, :title)")
    with db.session() as session:
        session.execute(insert, {"id": 1, "title": "first"})
        session.commit()
    telemetry.clear()

    with pytest.raises(sa.exc.IntegrityError), db.session() as session:
        session.execute(insert, {"id": 1, "title": SENTINEL})

    expected_code = "SQLITE_CONSTRAINT_PRIMARYKEY" if db.system == "sqlite" else "23505"
    span = telemetry.span_named("INSERT recordings")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == expected_code
    assert span.attributes["db.response.status_code"] == expected_code
    assert not span.events
    [point] = [
        p
        for p in telemetry.metric_points("db.client.operation.duration")
        if p.attributes.get("error.type")
    ]
    assert point.attributes["db.query.summary"] == "INSERT recordings"
    assert point.attributes["error.type"] == expected_code
    assert SENTINEL not in all_recorded_text(telemetry)


def test_duration_histogram_has_the_contract_attributes(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)

    with db.session() as session:
        for _ in range(3):
            session.execute(sa.text("SELECT title FROM recordings WHERE id = :id"), {"id": 1})

    [point] = [
        p
        for p in telemetry.metric_points("db.client.operation.duration")
        if p.attributes.get("db.query.summary") == "SELECT recordings"
    ]
    assert dict(point.attributes) == {
        "db.system.name": db.system,
        "db.operation.name": "SELECT",
        "db.collection.name": "recordings",
        "db.query.summary": "SELECT recordings",
    }
    assert point.count == 3
    assert 0 < point.sum < 3


@pytest.fixture
def unsampled() -> Iterator[InMemoryTelemetry]:
    """Telemetry whose tracer provider samples nothing."""
    recorded = InMemoryTelemetry()
    recorded.tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    recorded.span_exporter = InMemorySpanExporter()
    recorded.tracer_provider.add_span_processor(SimpleSpanProcessor(recorded.span_exporter))
    yield recorded
    recorded.shutdown()


def test_histogram_gets_a_point_per_statement_when_the_sampler_drops_every_span(
    database_url: str, make_database: MakeDatabase, unsampled: InMemoryTelemetry
) -> None:
    db = make_database(database_url, telemetry_=unsampled)

    with db.session() as session:
        for _ in range(5):
            session.execute(sa.text("SELECT 1"))

    assert unsampled.spans() == []
    [point] = [
        p
        for p in unsampled.metric_points("db.client.operation.duration")
        if p.attributes["db.operation.name"] == "SELECT"
    ]
    assert point.count == 5


def test_statement_span_is_a_child_of_the_current_span(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")

    with tracer.start_as_current_span("request"), db.session() as session:
        session.execute(sa.text("SELECT 1"))

    statement = telemetry.span_named("SELECT")
    session_span = telemetry.span_named("db.session")
    request = telemetry.span_named("request")
    assert statement.parent.span_id == session_span.context.span_id
    assert session_span.parent.span_id == request.context.span_id
    assert statement.context.trace_id == request.context.trace_id


def test_executemany_is_one_span_and_one_histogram_point(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    create_recordings(db)
    telemetry.clear()

    with db.session() as session:
        session.execute(
            sa.text("UPDATE recordings SET title = :title WHERE id = :id"),
            [{"id": i, "title": SENTINEL} for i in range(10)],
        )

    assert len(telemetry.spans("UPDATE recordings")) == 1
    [point] = [
        p
        for p in telemetry.metric_points("db.client.operation.duration")
        if p.attributes.get("db.operation.name") == "UPDATE"
    ]
    assert point.count == 1
    assert SENTINEL not in all_recorded_text(telemetry)


def test_statement_span_falls_back_to_the_system_name_when_the_text_has_no_keyword(
    db: Database, telemetry: InMemoryTelemetry
) -> None:
    with db.session() as session:
        session.connection().exec_driver_sql(";SELECT 1")

    span = telemetry.span_named(db.system)
    assert span.attributes["db.query.text"] == ";SELECT 1"
    assert "db.operation.name" not in span.attributes


class ExplodingProcessor(SpanProcessor):
    """A span processor that fails on every span, as a broken exporter pipeline might."""

    def on_start(self, span: object, parent_context: object = None) -> None:
        raise RuntimeError("exporter on fire")

    def on_end(self, span: object) -> None:
        raise RuntimeError("exporter on fire")


def test_a_failing_span_pipeline_never_breaks_the_session_or_its_statements(
    database_url: str, make_database: MakeDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    # One WARNING per place and minute (instrumentation.failures).
    caplog.set_level(logging.WARNING, logger="instrumentation")
    broken = InMemoryTelemetry()
    broken.tracer_provider.add_span_processor(ExplodingProcessor())
    db = make_database(database_url, telemetry_=broken)

    with db.session() as session:
        assert session.execute(sa.text("SELECT 41 + 1")).scalar_one() == 42

    messages = [r.getMessage() for r in caplog.records]
    assert any("telemetry failed in db.session span start" in m for m in messages)
    assert any("telemetry failed in statement start_span" in m for m in messages)
    assert db.pool_status().checked_out == 0
    [point] = [
        p
        for p in broken.metric_points("db.client.operation.duration")
        if p.attributes["db.operation.name"] == "SELECT"
    ]
    assert point.count == 1
    broken.shutdown()


def test_metrics_use_the_meter_provider_given_to_the_database(
    database_url: str, make_database: MakeDatabase
) -> None:
    reader = InMemoryMetricReader()
    recorded = InMemoryTelemetry()
    recorded.meter_provider = MeterProvider(metric_readers=[reader])
    db = make_database(database_url, telemetry_=recorded)

    db.ping()

    names = {
        metric.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert {"db.client.operation.duration", "db.client.connection.count"} <= names
    recorded.shutdown()
