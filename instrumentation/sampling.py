"""Child spans of an unsampled trace are not started: the parent's sampler already dropped them.

Under the SDK's parent-based samplers (the default, and every ``parentbased_*`` value of
``OTEL_TRACES_SAMPLER``), a span whose local parent was not sampled is not sampled either:
``Tracer.start_span`` asks the sampler, builds a span context with a fresh span id and returns
a non-recording span that records nothing and is never exported. At 10 % sampling nine
requests in ten pay that for each session, transaction and statement span (32-36 us of CPU
each inside ``benchmarks/overhead.py``'s requests, six per request). :func:`unsampled_parent`
tells the instrumentation when it may use the current non-recording span in the child's place
instead: what the child would have been is invisible (no attributes, events or status, never
exported), the trace id of log records made under it is the same, and only their span id is
the parent's rather than the unexported child's.

It does so only for a tracer whose sampler is known to drop such children: a ``ParentBased``
sampler whose ``localParentNotSampled`` delegate is ``AlwaysOffSampler``, read from its
description (the public ``get_description``). Any other sampler - one that might sample a
child of an unsampled parent - gets every child span started as before.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import Span

_DROPS_UNSAMPLED_CHILDREN = "localParentNotSampled:AlwaysOffSampler}"


def drops_unsampled_children(tracer: Any) -> bool:
    """Whether ``tracer``'s sampler never samples a span whose local parent was not sampled."""
    sampler = getattr(tracer, "sampler", None)
    if not isinstance(sampler, ParentBased):
        return False
    return bool(sampler.get_description().endswith(_DROPS_UNSAMPLED_CHILDREN))


def unsampled_parent(drops_children: bool) -> Span | None:
    """The current span if it is a local, valid, unsampled one whose children may be skipped.

    ``drops_children`` is :func:`drops_unsampled_children` of the tracer that would start the
    child. ``None`` means: start the child span as usual.
    """
    if not drops_children:
        return None
    parent = trace.get_current_span()
    if parent.is_recording():
        return None
    context = parent.get_span_context()
    if not context.is_valid or context.is_remote or context.trace_flags.sampled:
        return None
    return parent
