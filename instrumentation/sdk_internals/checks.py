"""Run every self-test of :mod:`instrumentation.sdk_internals` at once and say what fell back.

``python -m instrumentation.sdk_internals.checks`` prints one line per concern (``fast`` or the
problem found) and exits 0 either way: a fallback is slower, not wrong. ``.ci/run`` prints it
for the newest SDK release; an operator can run it after upgrading the SDK by hand.
"""

from __future__ import annotations

import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrumentation import bound, sdk_internals
from instrumentation.exporters import WireLogExporter, WireSpanExporter
from instrumentation.sdk_internals import batching, exporters, histograms, logs, prometheus

__all__ = ["CONCERNS", "check_all", "main"]

CONCERNS = (
    histograms.CONCERN,
    batching.CONCERN,
    logs.CONCERN,
    exporters.EXPORT_CONCERN,
    exporters.PREFERENCES_CONCERN,
    prometheus.CONCERN,
)

# Exporters built for their state only: nothing is ever sent to this address.
_UNUSED_ENDPOINT = "http://127.0.0.1:9/v1/unused"


def check_all() -> dict[str, str]:
    """Every concern's verdict on the installed SDK: ``"fast"`` or the problem found."""
    bound._sdk_checked()
    processor = BatchSpanProcessor(InMemorySpanExporter())
    batching.count_drops(processor, lambda _: None)
    processor.shutdown()
    logs.check_sdk()
    for made in (
        WireSpanExporter(endpoint=_UNUSED_ENDPOINT),
        WireLogExporter(endpoint=_UNUSED_ENDPOINT),
    ):
        made.shutdown()
    metric_exporter = OTLPMetricExporter(endpoint=_UNUSED_ENDPOINT)
    exporters.metric_preferences(metric_exporter)
    metric_exporter.shutdown()
    prometheus.check()
    found = sdk_internals.fallbacks()
    return {concern: found.get(concern, "fast") for concern in CONCERNS}


def main() -> int:
    sys.stdout.write(f"opentelemetry-sdk {sdk_internals.sdk_version()}\n")
    for concern, verdict in check_all().items():
        sys.stdout.write(f"  {concern}: {verdict}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
