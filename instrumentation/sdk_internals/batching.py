"""Counting the telemetry a batch processor drops, through its private metrics hook.

opentelemetry-sdk 1.45's ``BatchProcessor`` (behind ``BatchSpanProcessor`` and
``BatchLogRecordProcessor``, attribute ``_batch_processor``) calls
``self._metrics.drop_items(count, error_type)`` for each item it discards (queue full, or
already shut down) and nothing extra otherwise, so a stand-in for that hook counts drops at no
cost on the normal path. The public API offers no drop count. :func:`count_drops` installs the
stand-in; a self-test, run once per process, checks that a throw-away processor reports an item
emitted after its shutdown through the hook. Where the hook is missing or silent, drops go
uncounted (the spans and records themselves are unaffected) and one WARNING says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from instrumentation import sdk_internals

__all__ = ["CONCERN", "count_drops"]

CONCERN = "batch processor drop counting"

# Where the hook is: the processor's BatchProcessor, and its metrics hook.
_BATCH = "_batch_processor"
_HOOK = "_metrics"


class DropCountingMetrics:
    """Stands in for a batch processor's metrics hook and counts drops through it.

    The SDK's queue-full test is not atomic, so under contention a drop can be reported that a
    concurrent export made unnecessary; the count is then a few high, never low. Whatever else
    the SDK asks of the hook goes to the one it replaced.
    """

    def __init__(self, inner: Any, on_drop: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_drop = on_drop

    def drop_items(self, count: int, *args: Any, **kwargs: Any) -> None:
        self._on_drop(count)
        self._inner.drop_items(count, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def count_drops(processor: Any, on_drop: Callable[[int], None]) -> bool:
    """Call ``on_drop(count)`` whenever ``processor`` drops items; whether that could be done."""
    if not _check_sdk():
        return False
    return _install(processor, on_drop)


def _install(processor: Any, on_drop: Callable[[int], None]) -> bool:
    batch = getattr(processor, _BATCH, None)
    hook = getattr(batch, _HOOK, None)
    if hook is None or not callable(getattr(hook, "drop_items", None)):
        sdk_internals.fall_back(
            CONCERN, "the batch processor has no metrics hook", "dropped telemetry is not counted"
        )
        return False
    setattr(batch, _HOOK, DropCountingMetrics(hook, on_drop))
    return True


class _NoExport(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _self_test() -> bool:
    dropped: list[int] = []
    processor = BatchSpanProcessor(_NoExport())
    try:
        if not _install(processor, dropped.append):
            return False
        processor.shutdown()
        provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        provider.get_tracer(__name__).start_span("self-test").end()
    except Exception as exc:  # any surprise in the SDK's internals: drops go uncounted
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if dropped == [1]:
            return True
        problem = f"a span ended after shutdown was reported as {dropped!r} dropped"
    sdk_internals.fall_back(CONCERN, problem, "dropped telemetry is not counted")
    return False


_check_sdk = sdk_internals.SelfTest(_self_test)
reset_check = _check_sdk.reset
