"""Children of an unsampled trace are not started when the sampler would drop them anyway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from sqlalchemy.orm import Session

from instrumentation.database import Database
from instrumentation.sampling import drops_unsampled_children, unsampled_parent
from instrumentation.settings import DatabaseSettings

SELECT_ONE = sa.text("SELECT 1")


def select_one(session: Session) -> int:
    return int(session.execute(SELECT_ONE).scalar_one())


@pytest.mark.parametrize(
    ("sampler", "drops"),
    [
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(TraceIdRatioBased(0.1)), True),
        (ParentBased(ALWAYS_ON, local_parent_not_sampled=ALWAYS_ON), False),
        (TraceIdRatioBased(0.1), False),
        (ALWAYS_ON, False),
        (ALWAYS_OFF, False),
    ],
    ids=["parentbased", "parentbased-ratio", "parentbased-sampling-children", "ratio", "on", "off"],
)
def test_only_samplers_known_to_drop_children_of_unsampled_parents_allow_skipping(
    sampler: Sampler, drops: bool
) -> None:
    tracer = TracerProvider(sampler=sampler, shutdown_on_exit=False).get_tracer("t")

    assert drops_unsampled_children(tracer) is drops


def test_a_tracer_that_is_not_the_sdks_never_skips() -> None:
    assert not drops_unsampled_children(trace.NoOpTracer())
    assert not drops_unsampled_children(trace.ProxyTracer("t"))


def test_no_parent_a_recording_parent_or_a_sampled_remote_one_start_children() -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    assert unsampled_parent(True) is None
    with tracer.start_as_current_span("recording"):
        assert unsampled_parent(True) is None
    remote = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
    with trace.use_span(trace.NonRecordingSpan(remote)):
        assert unsampled_parent(True) is None  # a remote parent has its own delegate


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the spans the SDK was asked to start."""
    names: list[str] = []
    start = Tracer.start_span

    def counted(self: Tracer, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        names.append(name)
        return start(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counted)
    return names


@contextmanager
def database(tmp_path: Path, sampler: Sampler) -> Iterator[tuple[Database, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db = Database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'x.db'}"), tracer_provider=provider)
    try:
        yield db, exporter
    finally:
        db.dispose()


def test_under_an_unsampled_request_span_no_session_transaction_or_statement_span_starts(
    tmp_path: Path, started: list[str]
) -> None:
    with database(tmp_path, ParentBased(TraceIdRatioBased(0.0))) as (db, exporter):
        with db.tracer.start_as_current_span("GET /x") as request:
            assert not request.is_recording()
            assert db.run_transaction(select_one) == 1
            with db.session() as session:
                assert select_one(session) == 1
            assert trace.get_current_span() is request

        assert started == ["GET /x"]
        assert exporter.get_finished_spans() == ()


def test_under_a_sampled_request_span_every_child_span_is_started_and_exported(
    tmp_path: Path, started: list[str]
) -> None:
    with database(tmp_path, ParentBased(ALWAYS_ON)) as (db, exporter):
        with db.tracer.start_as_current_span("GET /x"):
            db.run_transaction(select_one)

        names = [span.name for span in exporter.get_finished_spans()]
        assert {"db.session", "db.transaction", "SELECT", "GET /x"} <= set(names)
        assert set(started) == set(names)


def test_a_sampler_that_may_sample_children_gets_every_child_started(
    tmp_path: Path, started: list[str]
) -> None:
    sampler = ParentBased(ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON)
    with database(tmp_path, sampler) as (db, exporter):
        with db.tracer.start_as_current_span("GET /x"):
            db.run_transaction(select_one)

        assert "db.transaction" in started
        assert "db.transaction" in [span.name for span in exporter.get_finished_spans()]
