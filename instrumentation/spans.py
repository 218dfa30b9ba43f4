"""INTERNAL spans for the steps of a request that are not database work.

A server span whose children are only ``db.session`` leaves the rest of the request unexplained:
reading and parsing the body, probing a file, hashing and writing it, waiting for a lock,
serialising the response. :class:`Steps` gives an application one cheap way to put each of
those under a span of its own, named from :mod:`instrumentation.conventions`::

    steps = Steps(tracer)
    with steps(conventions.STORAGE_WRITE_SPAN):
        store.put(stream)

What callers can rely on
    * The span is INTERNAL, a child of the current span, and current inside the block (log
      records made there carry its span id).
    * In a trace the sampler dropped, no span is started: the current non-recording span
      stands in (see :mod:`instrumentation.sampling`), so an unsampled request pays a few
      attribute reads per step, not a span.
    * An exception leaving the block sets ``error.type`` (the qualified class name); the status
      is ERROR unless the exception is a client error
      (:func:`instrumentation.errors.is_client_error`), as for the database spans. The
      exception propagates unchanged; the server span records it.
    * Telemetry never breaks the step: a span that fails to start is logged and the block runs
      untraced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from instrumentation import conventions
from instrumentation.errors import is_client_error
from instrumentation.sampling import drops_unsampled_children, unsampled_parent

__all__ = ["Steps"]

_log = logging.getLogger(__name__)


class Steps:
    """Starts INTERNAL step spans from one tracer; call it with a span name (see module doc).

    ``enabled=False`` starts none (an application that wants fewer spans per request): every
    step runs under its caller's span, as if it were untraced.
    """

    __slots__ = ("_drops_unsampled_children", "_enabled", "_tracer")

    def __init__(self, tracer: trace.Tracer, *, enabled: bool = True) -> None:
        self._tracer = tracer
        self._enabled = enabled
        self._drops_unsampled_children = drops_unsampled_children(tracer)

    def start(self, name: str, attributes: Mapping[str, Any] | None = None) -> Span:
        """Start a step span without making it current; the caller ends it.

        For a step that begins in one function and ends in another (see
        :meth:`__call__` for the usual block form). Returns the current non-recording span in an
        unsampled trace, and ``INVALID_SPAN`` if the span could not be started: ending either is
        harmless.
        """
        if not self._enabled:
            return trace.INVALID_SPAN
        try:
            parent = unsampled_parent(self._drops_unsampled_children)
            if parent is not None:
                return parent
            return self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        except Exception:
            _log.warning(
                "step span %s failed to start; the step runs untraced", name, exc_info=True
            )
            return trace.INVALID_SPAN

    @contextmanager
    def __call__(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        span = self.start(name, attributes)
        if not span.is_recording():
            # The stand-in parent (or no span at all): nothing to make current or to end.
            yield span
            return
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        except BaseException as exc:
            span.set_attribute(conventions.ERROR_TYPE, _qualified_name(type(exc)))
            if not is_client_error(exc):
                span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            otel_context.detach(token)
            span.end()


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
