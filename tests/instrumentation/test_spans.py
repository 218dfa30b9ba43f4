"""Step spans (instrumentation.spans): children of the current span, cheap when unsampled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from instrumentation.spans import Steps
from instrumentation.testing import InMemoryTelemetry


class RefusedError(Exception):
    client_error: ClassVar[bool] = True


@pytest.fixture
def telemetry() -> Iterator[InMemoryTelemetry]:
    recorded = InMemoryTelemetry()
    yield recorded
    recorded.shutdown()


def test_a_step_is_an_internal_child_of_the_current_span_and_current_inside(
    telemetry: InMemoryTelemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("t")
    steps = Steps(tracer)

    with tracer.start_as_current_span("GET /x") as parent, steps("storage.write") as step:
        assert trace.get_current_span() is step

    span = telemetry.span_named("storage.write")
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.status.status_code is StatusCode.UNSET


def test_a_failed_step_carries_the_error_type_and_an_error_status_for_a_server_error_only(
    telemetry: InMemoryTelemetry,
) -> None:
    steps = Steps(telemetry.tracer_provider.get_tracer("t"))

    with pytest.raises(OSError), steps("storage.write"):
        raise OSError("disk full")
    with pytest.raises(RefusedError), steps("audio.probe"):
        raise RefusedError("not audio")

    failed = telemetry.span_named("storage.write")
    assert failed.attributes["error.type"] == "OSError"
    assert failed.status.status_code is StatusCode.ERROR
    refused = telemetry.span_named("audio.probe")
    assert refused.attributes["error.type"].endswith("RefusedError")
    assert refused.status.status_code is StatusCode.UNSET


class CountingSampler(ParentBased):
    """Parent-based, dropping children of unsampled parents; counts the spans asked about."""

    def __init__(self) -> None:
        super().__init__(ALWAYS_OFF)
        self.asked: list[str] = []

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.asked.append(args[2])
        return super().should_sample(*args, **kwargs)


def test_no_step_span_is_started_in_a_trace_the_sampler_dropped() -> None:
    sampler = CountingSampler()
    tracer = TracerProvider(sampler=sampler, shutdown_on_exit=False).get_tracer("t")
    steps = Steps(tracer)

    with tracer.start_as_current_span("GET /x") as request:
        with steps("storage.write") as step:
            assert step is request
        assert steps.start("http.response.serialize") is request

    assert sampler.asked == ["GET /x"]


def test_disabled_steps_start_no_span_and_leave_the_callers_span_current(
    telemetry: InMemoryTelemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("t")
    steps = Steps(tracer, enabled=False)

    with tracer.start_as_current_span("GET /x") as parent, steps("storage.write") as step:
        assert not step.is_recording()
        assert trace.get_current_span() is parent
    with pytest.raises(OSError), steps("storage.write"):
        raise OSError("disk full")
    steps.start("http.response.serialize").end()

    assert [span.name for span in telemetry.spans()] == ["GET /x"]
