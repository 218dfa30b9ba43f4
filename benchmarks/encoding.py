"""CPU time of encoding the recorder's spans and log records for OTLP: the SDK's encoder
against :mod:`instrumentation.otlp_wire`.

Run ``.venv/bin/python benchmarks/encoding.py`` (about 15 s). The spans and log records are the
real ones: 130 request cycles of ``overhead.py`` (create, get, list, update) on an app
instrumented as ``full``, captured in memory. The first 512 items of each kind (statement spans,
session and transaction spans, server spans, the access log record, every span; 512 is the
batch processors' default batch), all distinct, are encoded both ways, one batch at a time, the
wire encoder's caches emptied before each batch, timed with ``time.thread_time`` (CPU of this
thread only, which other processes inflate far less than wall time). Printed: microseconds per
item, median over the repeats, and the ratio. Both encoders' output is checked to be the same
bytes first.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from benchmarks import overhead
from instrumentation import otlp_wire

BATCH = 512


def capture(cycles: int) -> tuple[list[ReadableSpan], list[Any]]:
    """Spans and log records of ``cycles`` request cycles of ``overhead.py``'s ``full``."""
    spans = InMemorySpanExporter()
    records = InMemoryLogRecordExporter()
    with overhead.running_sink() as endpoint, tempfile.TemporaryDirectory() as root:
        target = overhead.build_target(
            "full", Path(root), endpoint, overhead.make_wav(), frozenset({"otlp"}), {}
        )
        pipelines = target.pipelines
        assert pipelines is not None
        pipelines.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        pipelines.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(records))
        overhead.use_logging(target)
        try:
            for _ in range(cycles):
                overhead.run_cycle(target)
        finally:
            overhead.use_logging(None)
            pipelines.shutdown()
            target.db.dispose()
    return list(spans.get_finished_spans()), list(records.get_finished_logs())


def _per_item_us(encode: Callable[[Sequence[Any]], bytes], batch: list[Any], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        # Values cached from the previous repeat (request ids, durations) would all hit: start
        # each batch with empty caches, a little worse than a running exporter's steady state.
        otlp_wire.clear_caches()
        started = time.thread_time_ns()
        encode(batch)
        samples.append((time.thread_time_ns() - started) / len(batch) / 1000)
    return statistics.median(samples)


def _batch_of(items: list[Any]) -> list[Any]:
    """The first BATCH items, repeated if fewer were captured (see ``--cycles``)."""
    return (items * (BATCH // len(items) + 1))[:BATCH]


def compare(
    label: str,
    items: list[Any],
    sdk: Callable[[Sequence[Any]], bytes],
    ours: Callable[[Sequence[Any]], bytes],
    repeats: int,
) -> None:
    if not items:
        print(f"{label:<34} (none captured)")
        return
    batch = _batch_of(items)
    if sdk(batch) != ours(batch):
        raise SystemExit(f"{label}: the encoders disagree")
    sdk_us = _per_item_us(sdk, batch, repeats)
    ours_us = _per_item_us(ours, batch, repeats)
    attributes = statistics.median(len(_attributes_of(item)) for item in items)
    print(
        f"{label:<34} {attributes:>6.0f} {sdk_us:>10.2f} {ours_us:>10.2f} {sdk_us / ours_us:>7.1f}x"
    )


def _attributes_of(item: Any) -> Any:
    if isinstance(item, ReadableSpan):
        return item.attributes or {}
    return item.log_record.attributes or {}


def _sdk_spans(batch: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(batch).SerializePartialToString()


def _sdk_logs(batch: Sequence[Any]) -> bytes:
    return encode_logs(batch).SerializeToString()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cycles",
        type=int,
        default=130,
        help="request cycles captured (130: 520 distinct access records)",
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed batches per encoder")
    options = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)
    spans, records = capture(options.cycles)
    access = [
        r for r in records if r.log_record.attributes and "http.route" in r.log_record.attributes
    ]
    by_kind = {
        "statement spans (CLIENT)": [s for s in spans if s.kind is SpanKind.CLIENT],
        "session/transaction spans": [s for s in spans if s.kind is SpanKind.INTERNAL],
        "server spans": [s for s in spans if s.kind is SpanKind.SERVER],
        "every span of a cycle": spans,
    }
    print(f"batches of {BATCH}, {options.repeats} repeats, CPU us per item (thread_time)")
    print(f"{'item':<34} {'attrs':>6} {'SDK':>10} {'ours':>10} {'ratio':>8}")
    for label, items in by_kind.items():
        compare(label, items, _sdk_spans, otlp_wire.encode_spans, options.repeats)
    compare("access log record", access, _sdk_logs, otlp_wire.encode_logs, options.repeats)
    compare("every log record", records, _sdk_logs, otlp_wire.encode_logs, options.repeats)


if __name__ == "__main__":
    main()
