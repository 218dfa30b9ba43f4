"""What the instrumentation costs the recorder API, against the OpenTelemetry SDK's own floor.

Run ``.venv/bin/python benchmarks/overhead.py`` (``--quick`` for a smoke run of a few seconds).
Everything is measured in one process run, so the ratios compare like with like.

What is measured
    1. The recorder API request mix through the Flask test client, one cycle being: create (a
       multipart upload of a 0.1 s, 8 kHz mono WAV), get, list (``page_size=20``), update
       (PATCH of the title with ``If-Match``). Every upload differs in its last samples, so every
       create stores a new blob (fsync included), as distinct recordings would. Five
       configurations, each with its own app, its own SQLite file database (WAL) and its own
       blob and log directories in a temp dir:

       * ``off``: no-op tracer and meter providers (what ``OTEL_SDK_DISABLED=true`` gives), the
         root logger at WARNING and no handler of ours: the app with nothing of ours switched on;
       * ``full``: what ``vrp api`` runs with and every request sampled - SDK providers sending
         spans, metrics and log records over OTLP/HTTP to a local sink, JSON log file at INFO
         (no stderr), OTLP log handler on the root logger, sampler ``always_on``;
       * ``ratio10``: as ``full`` with the sampler ``parentbased_traceidratio`` at 0.1. Metrics
         and log records are still produced for every request; only spans are sampled;
       * ``replay`` and ``replay10``: the app of ``off`` with the telemetry of ``full`` /
         ``ratio10`` replayed around each request straight through the SDK (the same span
         trees with the same attributes, the same metric points, the app's own log records
         through the same handlers at the same level; see ``benchmarks/replay.py``). They cost
         what the telemetry contract costs with no logic of ours, so ``full`` - ``replay`` is
         the part of the overhead our instrumentation is responsible for. The templates are
         captured once per run, before the rounds, from an app instrumented as ``full``;
       * ``nosteps`` (with ``--no-steps``): ``full`` with ``VRP_STEP_SPANS=false``, the
         request's step spans left out (5.25 fewer spans per request): what they cost, and a
         figure comparable with those taken before they existed.

       Rounds interleave the configurations (off, full, ratio10, replay, replay10, off, ...) so
       that machine noise hits all of them alike; each app is warmed up untimed first. Every
       request is timed alone with ``perf_counter_ns``; the telemetry the phase left queued is
       flushed after the phase, outside the per-request times (it is in the ``mean+flush``
       column, see below). The OTLP sink is a separate process (``benchmarks/sink.py``), so
       receiving costs us nothing.
    2. The SDK's floor: empty spans through an SDK ``TracerProvider`` with a
       ``BatchSpanProcessor`` exporting to the same sink, as a ``with start_as_current_span``
       block and as ``start_span()`` / ``end()``, 20,000 of each in one batch per variant after
       every round (so the floor sees the same machine as the requests). Per batch the
       caller-side time (the loop) and the export time (the flush that follows: encoding and the
       HTTP POST) are taken apart; the processor's batch is as large as the loop, so no export
       runs during the loop. The figures are medians over the batches.
    3. Spans and log records emitted per request (counting processors on the providers), and
       from them the extra time per emitted span:
       ``(median full - median off) / spans per request``. ``full`` and ``ratio10`` differ in
       sampling only, so ``(median full - median ratio10) / (spans per request full - ratio10)``
       is the marginal cost of one sampled span of ours; the rest of the gap to ``off`` is paid
       per request whatever the sampler decides (metrics, log records, unsampled spans).
    4. The contract's price and ours: ``replay / off`` is what the spans, metric points and log
       records cost by themselves; ``full / replay`` and ``full - replay`` per request and per
       span started are what our instrumentation adds on top of them. The target for our own
       logic is ``(full - replay) / spans`` at most half the floor's ``with_block`` span.
    5. ``--contrib`` (in ``.venv-contrib``, see ``benchmarks/contrib.py``): ``contrib`` and
       ``contrib10``, the app of ``off`` instrumented by opentelemetry-instrumentation-flask and
       -sqlalchemy instead, every span / 10 % sampled, same exporters and sink, no log records.
       Ours should cost less at both samplings while emitting more (sessions, transactions, the
       canonical log line). Every configuration prints spans, metric points (synchronous
       measurements) and log records per request.
    6. ``--logs``: the cost of one log record through the handlers in use, in CPU time
       (``thread_time``, which other processes on the machine do not inflate): a record shaped
       like the access record in a tight loop, the handlers writing those records out after
       the loop, the export of those records (the flush after the loop: protobuf encoding and
       the POST); and the app's own records inside ``full``'s timed requests: the logging call
       (making the record and queueing it, see ``instrumentation/logbuffer.py``) and, apart,
       their handlers as the log writer ran them during the phases. "In a request, written
       and exported" is the sum of those two and the export; its target is 120 us.

How to read it
    ``median`` and ``p90`` are over every timed request of a configuration (the four request
    kinds mixed); ``rounds`` is the median of the per-round medians, a check that one noisy
    round did not move the result. The kinds differ by two to three times in cost, so the
    all-request median sits where the faster half meets the slower; ``cycle/4`` (the median
    cycle of one request of each kind, over four) weighs every kind alike, and the per-operation
    table shows where the extra time lands. Background export runs in bursts (every 512 spans,
    on a thread sharing the interpreter lock), so it lands on a few requests and barely moves
    the median: ``mean+flush`` (wall time of the timed phases, flush included, per request) is
    the figure that carries every cost. Hence two comparisons with the floor: the median-based
    extra per span against the caller-side floor (the target), and the mean-based one against
    the floor including export. ``gc`` is the time the cyclic garbage collector ran during the
    requests, per request (telemetry allocates, and objects queued for export outlive the
    request, which brings on full collections). The targets are printed with PASS or MISS; the
    exit status is 0 either way, this is a measurement and not a test. The last line gives the
    load average (the run itself adds about 1): when other processes shared the CPUs the
    absolute figures are noisy, the ratios less so, as the configurations are interleaved. The
    sink's counts close the report: every span and log record emitted should have arrived. The
    benchmark ignores ``OTEL_*`` environment variables: it pins every choice itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import logging
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from flask.testing import FlaskClient
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from werkzeug.test import TestResponse

from benchmarks import contrib, replay, sdkcalls
from instrumentation import direct, logbuffer, logs
from instrumentation.bound import BoundHistogram
from instrumentation.database import Database
from instrumentation.exporters import WireLogExporter, WireSpanExporter
from instrumentation.settings import TelemetrySettings
from instrumentation.telemetry import (
    OtlpLogHandler,
    PeriodicMetricReader,
    default_exemplar_filter,
    duration_histogram_views,
)
from recorder import __version__, schema_version
from recorder.api import create_app
from recorder.config import Settings, load_settings

SERVICE = "vrp-api"
SINK_SCRIPT = Path(__file__).with_name("sink.py")
OPERATIONS = ("create", "get", "list", "update")
REQUESTS_PER_CYCLE = len(OPERATIONS)
CONFIGURATIONS = ("off", "full", "ratio10", "replay", "replay10")
# --no-steps: full with VRP_STEP_SPANS=false (the request's step spans left out).
NO_STEPS = "nosteps"
# The configurations instrumented by us, with the SDK's pipelines.
OURS = ("full", "ratio10", NO_STEPS)
# --contrib: the app instrumented by the OpenTelemetry contrib packages (benchmarks/contrib.py).
CONTRIB_CONFIGURATIONS = ("contrib", "contrib10")
# Sampling of each configuration that has SDK pipelines (replays use their original's).
SAMPLED = {"full": "all", "ratio10": "10%", NO_STEPS: "all", "contrib": "all", "contrib10": "10%"}
# Configurations whose app is the un-instrumented one with the captured telemetry replayed.
REPLAYED = {"replay": "full", "replay10": "ratio10"}
FLOOR_SPANS = 20_000
# The exporter and batch settings vrp api uses (instrumentation.settings.TelemetrySettings).
TELEMETRY_DEFAULTS = TelemetrySettings(service_name=SERVICE)
# Where the instrumented configurations send log records; --logs narrows it to measure a part.
LOG_SINKS = frozenset({"file", "otlp"})
LOG_CHOICES = {"all": LOG_SINKS, "file": frozenset({"file"}), "otlp": frozenset({"otlp"})}
LOG_CHOICES["none"] = frozenset()
TARGET_OURS_PER_SPAN = 0.5
TARGET_FULL = 1.25
TARGET_RATIO10 = 1.10
TARGET_RECORD_US = 120.0
# A record shaped like the access record: its message arguments and extra fields.
RECORD_ARGS = ("GET", "/api/recordings/x", 200)
RECORD_FIELDS: dict[str, Any] = {
    "request_id": "0af7651916cd43dd8448eb211c80319c",
    "http.request.method": "GET",
    "http.route": "/api/recordings/<recording_id>",
    "url.path": "/api/recordings/0af7651916cd43dd",
    "http.response.status_code": 200,
    "duration_ms": 1.234,
    "client.address": "127.0.0.1",
    "user_agent.original": "werkzeug/3.1",
    "vrp.db.sessions": 1,
    "vrp.db.transactions": 1,
    "vrp.db.transactions.commit": 1,
    "vrp.db.transactions.rollback": 0,
    "vrp.db.transactions.error": 0,
    "vrp.db.attempts": 1,
    "vrp.db.retries": 0,
    "vrp.db.statements": 2,
    "vrp.db.duration_ms": 0.321,
}
RECORD_LOGGER = "benchmarks.record"
# Copied before each record of --logs' cold loop: more than the CPU's caches hold.
EVICTION_BYTES = 32 * 1024 * 1024


# --- payload ---------------------------------------------------------------------------------


def make_wav(seconds: float = 0.1, rate: int = 8000, freq: float = 440.0) -> bytes:
    """A mono PCM 16-bit WAV file holding a sine tone."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def unique_payload(base: bytes, serial: int) -> bytes:
    """``base`` with its last four samples replaced by ``serial``: still valid audio, new hash."""
    return base[:-8] + struct.pack("<q", serial)


# --- the OTLP sink process -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sink_stats(endpoint: str) -> dict[str, dict[str, int | None]]:
    """The sink's per-signal counts (see ``benchmarks/sink.py``)."""
    with _no_proxy_opener().open(f"{endpoint}/stats", timeout=5) as response:
        stats: dict[str, dict[str, int | None]] = json.load(response)
    return stats


@contextmanager
def running_sink(timeout: float = 10.0) -> Iterator[str]:
    """Start ``sink.py`` on a free port, wait until it answers, yield its base URL, stop it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, str(SINK_SCRIPT), "--port", str(port)], stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_sink(process, endpoint, timeout)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_sink(process: subprocess.Popen[bytes], endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the OTLP sink exited with status {process.returncode}")
        try:
            sink_stats(endpoint)
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OTLP sink did not answer on {endpoint}") from None
            time.sleep(0.05)


# --- telemetry pipelines ---------------------------------------------------------------------


class SpanCounter(SpanProcessor):
    """Counts ended (that is, sampled) spans."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


class LogRecordCounter(LogRecordProcessor):
    """Counts log records emitted through the OTLP log handler."""

    def __init__(self) -> None:
        self.emitted = 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.emitted += 1

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class MeasurementCounter:
    """Counts the measurements (metric points) recorded through one ``MeterProvider``.

    It wraps the provider's measurement consumer, the one call every synchronous instrument of
    the SDK makes per ``add`` / ``record`` (a private attribute, read once here), and counts the
    points of :class:`~instrumentation.bound.BoundHistogram` that skip it (a class-wide wrapper,
    installed once); observable instruments, collected on the export schedule, are not counted.
    """

    _by_consumer: ClassVar[dict[int, MeasurementCounter]] = {}

    def __init__(self, meter_provider: MeterProvider) -> None:
        self.recorded = 0
        consumer = meter_provider._measurement_consumer
        consume = consumer.consume_measurement

        def counted(*args: Any, **kwargs: Any) -> None:
            self.recorded += 1
            consume(*args, **kwargs)

        consumer.consume_measurement = counted
        if not MeasurementCounter._by_consumer:
            _count_bound_points(MeasurementCounter._by_consumer)
        MeasurementCounter._by_consumer[id(consumer)] = self


def _count_bound_points(by_consumer: dict[int, MeasurementCounter]) -> None:
    record = BoundHistogram.record

    def counted(point: BoundHistogram, value: float, context: Any = None) -> None:
        record(point, value, context)
        counter = by_consumer.get(id(point._consumer))
        if counter is not None and point.fast:
            counter.recorded += 1

    BoundHistogram.record = counted  # type: ignore[method-assign]


def resource() -> Resource:
    return Resource.create(
        {
            "service.name": SERVICE,
            "service.version": __version__,
            "deployment.environment.name": "benchmark",
        }
    )


def batch_span_processor(
    endpoint: str,
    meter_provider: MeterProvider | None,
    exporter_class: type[OTLPSpanExporter] = WireSpanExporter,
    **batch: Any,
) -> BatchSpanProcessor:
    """A batch processor exporting to the sink, with vrp api's settings unless overridden.

    The exporter is vrp api's (the SDK's with the hand-written encoder) unless ``exporter_class``
    says otherwise; the floor uses the SDK's own.
    """
    settings = TELEMETRY_DEFAULTS
    timeout = settings.export_timeout_ms / 1000
    exporter = exporter_class(
        endpoint=f"{endpoint}/v1/traces", timeout=timeout, meter_provider=meter_provider
    )
    options: dict[str, Any] = {
        "max_queue_size": settings.max_queue_size,
        "schedule_delay_millis": settings.schedule_delay_ms,
        "max_export_batch_size": settings.max_export_batch_size,
        "export_timeout_millis": settings.export_timeout_ms,
        **batch,
    }
    return BatchSpanProcessor(exporter, meter_provider=meter_provider, **options)


@dataclass
class Pipelines:
    """The SDK providers of one instrumented configuration, wired as ``vrp api`` wires them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    log_handler: OtlpLogHandler
    spans: SpanCounter
    log_records: LogRecordCounter
    points: MeasurementCounter

    def flush(self) -> None:
        logbuffer.write_pending()
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


def build_pipelines(endpoint: str, sampler: Sampler) -> Pipelines:
    settings = TELEMETRY_DEFAULTS
    timeout = settings.export_timeout_ms / 1000
    shared = resource()
    reader = PeriodicMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout),
        export_interval_millis=settings.metric_export_interval_ms,
        export_timeout_millis=settings.export_timeout_ms,
    )
    meter_provider = MeterProvider(
        metric_readers=[reader],
        resource=shared,
        shutdown_on_exit=False,
        exemplar_filter=default_exemplar_filter(),
        views=duration_histogram_views(),
    )
    points = MeasurementCounter(meter_provider)
    tracer_provider = TracerProvider(resource=shared, sampler=sampler, shutdown_on_exit=False)
    tracer_provider.add_span_processor(batch_span_processor(endpoint, meter_provider))
    spans = SpanCounter()
    tracer_provider.add_span_processor(spans)
    logger_provider = LoggerProvider(resource=shared, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            WireLogExporter(
                endpoint=f"{endpoint}/v1/logs", timeout=timeout, meter_provider=meter_provider
            ),
            schedule_delay_millis=settings.schedule_delay_ms,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_ms,
            max_queue_size=settings.max_queue_size,
            meter_provider=meter_provider,
        )
    )
    log_records = LogRecordCounter()
    logger_provider.add_log_record_processor(log_records)
    return Pipelines(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        log_handler=OtlpLogHandler(logger_provider),
        spans=spans,
        log_records=log_records,
        points=points,
    )


# --- one configuration: app, database, samples ------------------------------------------------


@dataclass
class Target:
    """One configuration under test and what was measured on it."""

    name: str
    settings: Settings
    db: Database
    client: FlaskClient
    pipelines: Pipelines | None
    base_payload: bytes
    log_sinks: frozenset[str] = LOG_SINKS
    uploads: int = 0
    samples: dict[str, list[int]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    cycles: list[int] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    phase_ns: int = 0
    spans: int = 0
    log_records: int = 0
    points: int = 0
    gc_ns: int = 0

    @property
    def all_samples(self) -> list[int]:
        return [ns for op in OPERATIONS for ns in self.samples[op]]

    def next_payload(self) -> bytes:
        self.uploads += 1
        return unique_payload(self.base_payload, self.uploads)


def _sampler(name: str) -> Sampler | None:
    sampled = SAMPLED.get(REPLAYED.get(name, name))
    if sampled is None:
        return None
    return ALWAYS_ON if sampled == "all" else ParentBased(TraceIdRatioBased(0.1))


def _settings(name: str, root: Path) -> Settings:
    directory = root / name
    env = {
        "VRP_DATABASE_URL": f"sqlite:///{directory / 'vrp.db'}",
        "VRP_STORAGE_DIR": str(directory / "recordings"),
        "VRP_LOG_DIR": str(directory / "log"),
        "VRP_LOG_LEVEL": "INFO",
        "VRP_LOG_FORMAT": "json",
        "OTEL_SDK_DISABLED": "false" if name in OURS else "true",
        "VRP_STEP_SPANS": "false" if name == NO_STEPS else "true",
    }
    return load_settings(env, service_name=SERVICE)


def _app(
    settings: Settings,
    tracer_provider: trace_api.TracerProvider,
    meter_provider: metrics_api.MeterProvider,
) -> tuple[Database, FlaskClient]:
    db = Database(settings.database, tracer_provider=tracer_provider, meter_provider=meter_provider)
    schema_version.upgrade(db.engine)
    app = create_app(
        settings, db=db, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return db, app.test_client()


def operation_of(environ: dict[str, Any]) -> str:
    """Which request of the mix ``environ`` is (see :func:`run_cycle`)."""
    method = environ["REQUEST_METHOD"]
    if method == "POST":
        return "create"
    if method == "PATCH":
        return "update"
    return "list" if "page_size" in environ.get("QUERY_STRING", "") else "get"


def capture_templates(root: Path, payload: bytes) -> dict[str, replay.Template]:
    """One request of each kind on an app instrumented as ``full``, taped (see replay.py).

    The last of a few cycles is kept, so that one-off start-up work is not in the templates.
    """
    settings = _settings("capture", root)
    recorder = replay.Recorder.create()
    db, client = _app(settings, recorder.tracer_provider, recorder.meter_provider)
    target = Target("capture", settings, db, client, None, payload)
    templates: dict[str, replay.Template] = {}

    def tape(operation: str, call: Callable[[], TestResponse]) -> tuple[int, TestResponse]:
        templates[operation], response = recorder.take(call)
        return 0, response

    try:
        for _ in range(3):
            run_cycle(target, tape)
    finally:
        db.dispose()
    return templates


def build_target(
    name: str,
    root: Path,
    endpoint: str,
    payload: bytes,
    log_sinks: frozenset[str],
    templates: dict[str, replay.Template],
) -> Target:
    """An app on its own SQLite file, migrated, instrumented as configuration ``name`` says."""
    settings = _settings(name, root)
    sampler = _sampler(name)
    pipelines = None if sampler is None else build_pipelines(endpoint, sampler)
    ours = name in OURS
    if pipelines is None or not ours:
        db, client = _app(settings, trace_api.NoOpTracerProvider(), metrics_api.NoOpMeterProvider())
    else:
        db, client = _app(settings, pipelines.tracer_provider, pipelines.meter_provider)
    if pipelines is not None and name in CONTRIB_CONFIGURATIONS:
        contrib.instrument(
            client.application, db.engine, pipelines.tracer_provider, pipelines.meter_provider
        )
        # Like off: the contrib packages emit no log records, and the app's own are below WARNING.
        log_sinks = frozenset()
    if pipelines is not None and name in REPLAYED:
        app = client.application
        replayer = replay.Replayer(pipelines.tracer_provider, pipelines.meter_provider)
        replayer.listen(db.engine)
        app.wsgi_app = replay.ReplayMiddleware(app.wsgi_app, replayer, templates, operation_of)
    return Target(name, settings, db, client, pipelines, payload, log_sinks)


# --- process-global logging, switched per phase ----------------------------------------------

_otlp_handlers: list[logging.Handler] = []


def use_logging(target: Target | None) -> None:
    """Route the root logger as ``target`` wants it: JSON file and OTLP handler when it is
    instrumented, else (``off``, or ``None`` between phases) WARNING and no handler of ours."""
    root = logging.getLogger()
    logs.shutdown_logging()
    while _otlp_handlers:
        root.removeHandler(_otlp_handlers.pop())
    if target is None or target.pipelines is None:
        root.setLevel(logging.WARNING)
        return
    root.setLevel(logging.INFO if target.log_sinks else logging.WARNING)
    if "file" in target.log_sinks:
        settings = dataclasses.replace(target.settings.logging, stderr=False)
        logs.configure_logging(settings, service=SERVICE)
    if "otlp" in target.log_sinks:
        root.addHandler(target.pipelines.log_handler)
        _otlp_handlers.append(target.pipelines.log_handler)


# --- the request mix ------------------------------------------------------------------------


Timer = Callable[[str, Callable[[], TestResponse]], tuple[int, TestResponse]]


def _timed(operation: str, call: Callable[[], TestResponse]) -> tuple[int, TestResponse]:
    started = time.perf_counter_ns()
    response = call()
    return time.perf_counter_ns() - started, response


def _expect(response: TestResponse, status: int, operation: str) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{operation} answered {response.status_code}, expected {status}: "
            f"{response.get_data(as_text=True)[:300]}"
        )


def run_cycle(target: Target, timed: Timer = _timed) -> dict[str, int]:
    """Create, get, list, update one recording; returns nanoseconds per operation.

    ``timed(operation, call)`` makes each request and says how long it took.
    """
    client = target.client
    form = {"title": "benchmark", "file": (io.BytesIO(target.next_payload()), "bench.wav")}
    created_ns, response = timed(
        "create",
        lambda: client.post("/api/recordings", data=form, content_type="multipart/form-data"),
    )
    _expect(response, 201, "create")
    path = f"/api/recordings/{response.get_json()['id']}"

    get_ns, response = timed("get", lambda: client.get(path))
    _expect(response, 200, "get")
    headers = {"If-Match": response.headers["ETag"]}

    list_ns, response = timed("list", lambda: client.get("/api/recordings?page_size=20"))
    _expect(response, 200, "list")

    title = {"title": f"renamed {target.uploads}"}
    update_ns, response = timed("update", lambda: client.patch(path, json=title, headers=headers))
    _expect(response, 200, "update")
    return {"create": created_ns, "get": get_ns, "list": list_ns, "update": update_ns}


class GcClock:
    """Time spent in the cyclic garbage collector since construction, read via ``gc.callbacks``.

    The collector runs on whichever thread allocates when a threshold is crossed, so most of it
    lands inside requests; this says how much of their time it was.
    """

    def __init__(self) -> None:
        self.total_ns = 0
        self._started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.total_ns += time.perf_counter_ns() - self._started

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)


def _counts(target: Target) -> tuple[int, int, int]:
    pipelines = target.pipelines
    if pipelines is None:
        return 0, 0, 0
    return pipelines.spans.ended, pipelines.log_records.emitted, pipelines.points.recorded


def run_phase(target: Target, cycles: int, gc_clock: GcClock, *, timed: bool) -> None:
    """``cycles`` request cycles on ``target``, then a flush of what its telemetry queued.

    The collector is left alone between phases, as in a server that runs for days: objects that
    outlive a request (queued telemetry) trigger full collections later, and those must land
    where they occur rather than in an untimed ``gc.collect()``.
    """
    use_logging(target)
    spans_before, logs_before, points_before = _counts(target)
    gc_before = gc_clock.total_ns
    phase: list[int] = []
    started = time.perf_counter_ns()
    for _ in range(cycles):
        times = run_cycle(target)
        phase.extend(times.values())
        if timed:
            target.cycles.append(sum(times.values()))
            for operation, ns in times.items():
                target.samples[operation].append(ns)
    # The access records still queued (instrumentation.logbuffer) count in this phase.
    logbuffer.write_pending()
    spans_after, logs_after, points_after = _counts(target)
    gc_ns = gc_clock.total_ns - gc_before
    if target.pipelines is not None:
        target.pipelines.flush()
    elapsed = time.perf_counter_ns() - started
    use_logging(None)
    if timed:
        target.phase_ns += elapsed
        target.round_medians.append(statistics.median(phase))
        target.spans += spans_after - spans_before
        target.log_records += logs_after - logs_before
        target.points += points_after - points_before
        target.gc_ns += gc_ns


def _us(ns: float) -> float:
    return ns / 1000


# --- the SDK floor --------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """Microseconds per empty span, on the caller and in the export that follows."""

    with_block_us: float
    start_end_us: float
    export_us: float

    @property
    def total_us(self) -> float:
        return self.with_block_us + self.export_us


def _with_block_spans(tracer: trace_api.Tracer, count: int) -> None:
    for _ in range(count):
        with tracer.start_as_current_span("x"):
            pass


def _start_end_spans(tracer: trace_api.Tracer, count: int) -> None:
    for _ in range(count):
        tracer.start_span("x").end()


FLOOR_VARIANTS: dict[str, Callable[[trace_api.Tracer, int], None]] = {
    "with_block": _with_block_spans,
    "start_end": _start_end_spans,
}


class FloorMeter:
    """Empty spans through an SDK provider exporting to the sink, one batch per variant a round.

    The processor's batch is as large as a measured batch and its timer never fires, so no
    export runs during the loop: the loop times the caller alone, the flush after it the export.
    """

    def __init__(self, endpoint: str, batch: int) -> None:
        self.batch = batch
        self.sent = 0
        self._provider = TracerProvider(
            resource=resource(), sampler=ALWAYS_ON, shutdown_on_exit=False
        )
        self._provider.add_span_processor(
            batch_span_processor(
                endpoint,
                None,
                OTLPSpanExporter,
                max_queue_size=batch,
                max_export_batch_size=batch,
                schedule_delay_millis=3_600_000,
            )
        )
        self._tracer = self._provider.get_tracer("benchmarks.floor")
        self._caller: dict[str, list[float]] = {name: [] for name in FLOOR_VARIANTS}
        self._export: list[float] = []

    def run_round(self, *, timed: bool = True) -> None:
        for name, emit in FLOOR_VARIANTS.items():
            started = time.perf_counter_ns()
            emit(self._tracer, self.batch)
            emitted = time.perf_counter_ns()
            self._provider.force_flush()
            flushed = time.perf_counter_ns()
            self.sent += self.batch
            if timed:
                self._caller[name].append(_us(emitted - started) / self.batch)
                self._export.append(_us(flushed - emitted) / self.batch)

    def result(self) -> Floor:
        """Medians over the timed batches."""
        return Floor(
            with_block_us=statistics.median(self._caller["with_block"]),
            start_end_us=statistics.median(self._caller["start_end"]),
            export_us=statistics.median(self._export),
        )

    def shutdown(self) -> None:
        self._provider.shutdown()


# --- report ---------------------------------------------------------------------------------


def _p90(values: list[int]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


@dataclass(frozen=True)
class Summary:
    """The figures of one configuration, in microseconds per request unless named otherwise."""

    name: str
    requests: int
    median_us: float
    p90_us: float
    rounds_us: float
    cycle_us: float
    mean_flush_us: float
    gc_us: float
    per_operation_us: dict[str, float]
    spans_per_request: float
    log_records_per_request: float
    points_per_request: float


def summarise(target: Target) -> Summary:
    values = target.all_samples
    requests = len(values)
    return Summary(
        name=target.name,
        requests=requests,
        median_us=_us(statistics.median(values)),
        p90_us=_us(_p90(values)),
        rounds_us=_us(statistics.median(target.round_medians)),
        cycle_us=_us(statistics.median(target.cycles) / REQUESTS_PER_CYCLE),
        mean_flush_us=_us(target.phase_ns / requests),
        gc_us=_us(target.gc_ns / requests),
        per_operation_us={op: _us(statistics.median(target.samples[op])) for op in OPERATIONS},
        spans_per_request=target.spans / requests,
        log_records_per_request=target.log_records / requests,
        points_per_request=target.points / requests,
    )


def _verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "MISS"


def print_requests(summaries: list[Summary]) -> None:
    off = summaries[0]
    print("\nRecorder API request mix (create, get, list, update) through the Flask test client")
    print(
        "microseconds per request; 'x off' is the ratio to the same column of off; 'gc' is the"
        " garbage collector's share, per request"
    )
    print(
        f"{'config':<8}{'requests':>9}{'median':>8}{'p90':>8}{'rounds':>8}{'x off':>7}"
        f"{'cycle/4':>9}{'x off':>7}{'mean+flush':>12}{'x off':>7}{'gc':>6}{'spans/req':>10}"
        f"{'points/req':>11}{'logs/req':>9}"
    )
    for s in summaries:
        print(
            f"{s.name:<8}{s.requests:>9}{s.median_us:>8.0f}{s.p90_us:>8.0f}{s.rounds_us:>8.0f}"
            f"{s.median_us / off.median_us:>7.3f}{s.cycle_us:>9.0f}"
            f"{s.cycle_us / off.cycle_us:>7.3f}{s.mean_flush_us:>12.0f}"
            f"{s.mean_flush_us / off.mean_flush_us:>7.3f}{s.gc_us:>6.0f}"
            f"{s.spans_per_request:>10.2f}{s.points_per_request:>11.2f}"
            f"{s.log_records_per_request:>9.2f}"
        )
    print("\nmedian microseconds per operation (extra over off)")
    print(f"{'config':<8}" + "".join(f"{op:>16}" for op in OPERATIONS))
    for s in summaries:
        cells = "".join(
            f"{s.per_operation_us[op]:>9.0f} ({s.per_operation_us[op] - base:+4.0f})"
            for op, base in off.per_operation_us.items()
        )
        print(f"{s.name:<8}{cells}")


def print_floor(floor: Floor) -> None:
    print("\nSDK floor: empty spans, BatchSpanProcessor to the sink, median of per-round batches")
    print(f"  with start_as_current_span   {floor.with_block_us:7.2f} us/span on the caller")
    print(f"  start_span() + end()         {floor.start_end_us:7.2f} us/span on the caller")
    print(f"  export (encode + POST)       {floor.export_us:7.2f} us/span")


@dataclass(frozen=True)
class PerSpan:
    """Extra microseconds of ``full`` over ``off`` per span ``full`` emits, three ways, and the
    marginal cost of a sampled span: ``full`` and ``ratio10`` differ in sampling only."""

    median: float
    cycle: float
    mean_flush: float
    marginal: float


def _per(amount: float, count: float) -> float:
    return amount / count if count > 0 else math.nan


def extra_per_span(off: Summary, full: Summary, ratio10: Summary) -> PerSpan:
    spans = full.spans_per_request
    sampled_more = full.spans_per_request - ratio10.spans_per_request
    return PerSpan(
        median=_per(full.median_us - off.median_us, spans),
        cycle=_per(full.cycle_us - off.cycle_us, spans),
        mean_flush=_per(full.mean_flush_us - off.mean_flush_us, spans),
        marginal=_per(full.median_us - ratio10.median_us, sampled_more),
    )


def print_per_span(per_span: PerSpan, full: Summary, floor: Floor) -> None:
    print(
        f"\nfull emits {full.spans_per_request:.2f} spans and "
        f"{full.log_records_per_request:.2f} log records per request; extra us per span:"
    )
    with_block, start_end = floor.with_block_us, floor.start_end_us
    print(
        f"  from the medians      {per_span.median:7.2f} = {per_span.median / with_block:.2f}x"
        f" the with-block floor ({per_span.median / start_end:.2f}x start/end)"
    )
    print(
        f"  from cycle/4          {per_span.cycle:7.2f} = {per_span.cycle / with_block:.2f}x"
        f" the with-block floor ({per_span.cycle / start_end:.2f}x start/end)"
    )
    print(
        f"  from mean+flush       {per_span.mean_flush:7.2f} = "
        f"{per_span.mean_flush / floor.total_us:.2f}x the floor with export "
        f"({floor.total_us:.2f} us)"
    )
    print(
        f"  marginal, sampled     {per_span.marginal:7.2f} = {per_span.marginal / with_block:.2f}x"
        " the with-block floor (full - ratio10 medians, per extra sampled span)"
    )


def print_targets(
    by_name: dict[str, Summary], floor: Floor, record: RecordCost | None = None
) -> None:
    off, full, ratio10 = by_name["off"], by_name["full"], by_name["ratio10"]
    ours_per_span = _per(full.median_us - by_name["replay"].median_us, full.spans_per_request)
    rows = [
        ("full / off", full.median_us / off.median_us, TARGET_FULL),
        ("ratio10 / off", ratio10.median_us / off.median_us, TARGET_RATIO10),
        (
            "ours per span (full-replay) / floor",
            ours_per_span / floor.with_block_us,
            TARGET_OURS_PER_SPAN,
        ),
    ]
    if "contrib" in by_name:
        rows.append(
            (
                "full / contrib (below 1: ours cheaper)",
                full.median_us / by_name["contrib"].median_us,
                1.0,
            )
        )
        rows.append(
            ("ratio10 / contrib10", ratio10.median_us / by_name["contrib10"].median_us, 1.0)
        )
    if NO_STEPS in by_name:
        lean = by_name[NO_STEPS]
        rows.append(
            ("nosteps / off (full, no step spans)", lean.median_us / off.median_us, TARGET_FULL)
        )
        if "contrib" in by_name:
            rows.append(("nosteps / contrib", lean.median_us / by_name["contrib"].median_us, 1.0))
    if record is not None:
        rows.append(
            ("one record in a request, export incl., us", record.in_request_us, TARGET_RECORD_US)
        )
    print("\ntargets (medians over all timed requests; the record in CPU time)")
    for label, value, limit in rows:
        print(f"  {label:<44}{value:>8.3f}  <= {limit:<5} {_verdict(value, limit)}")


def print_delivery(stats: dict[str, dict[str, int | None]], spans: int, records: int) -> None:
    traces, log_stats = stats["traces"], stats["logs"]
    posts = ", ".join(
        f"{name} {values['requests']} POSTs / {(values['bytes'] or 0) / 1e6:.1f} MB"
        for name, values in stats.items()
    )
    print(
        f"\nsink received spans {traces['items']} of {spans} ended, "
        f"log records {log_stats['items']} of {records} emitted; {posts}"
    )


def print_contract(
    off: Summary, pairs: list[tuple[Summary, Summary]], started: float, floor: Floor
) -> None:
    """Each instrumented configuration against the replay of its own telemetry.

    ``started`` is the number of spans a request starts (sampled or not: our listeners run for
    each), so ``ours us/span`` is our logic's cost per span it handles.
    """
    print(
        "\nthe contract's price and ours (replay: the same spans, metric points and log records"
        " replayed through the SDK\nand the same log handlers on the un-instrumented app; see"
        " benchmarks/replay.py), medians"
    )
    print(
        f"  {'config':<9}{'replay/off':>11}{'config/off':>11}{'config/replay':>14}"
        f"{'ours us/req':>12}{'ours us/span':>13}{'x floor':>8}"
    )
    for config, replayed in pairs:
        ours = config.median_us - replayed.median_us
        per_span = _per(ours, started)
        print(
            f"  {config.name:<9}{replayed.median_us / off.median_us:>11.3f}"
            f"{config.median_us / off.median_us:>11.3f}"
            f"{config.median_us / replayed.median_us:>14.3f}{ours:>12.0f}"
            f"{per_span:>13.2f}{per_span / floor.with_block_us:>8.2f}"
        )


def print_contrib(by_name: dict[str, Summary]) -> None:
    """Ours against the contrib instrumentations, per sampling, with what each emits."""
    off = by_name["off"]
    print(
        "\nours against the contrib Flask + SQLAlchemy instrumentations (same app, exporters,"
        " sink), medians"
    )
    print(
        f"  {'pair':<20}{'extra us/req':>13}{'x off':>7}{'spans':>7}{'points':>8}{'logs':>6}"
        f"{'ours/contrib':>13}"
    )
    for ours, theirs in (("full", "contrib"), ("ratio10", "contrib10")):
        for name in (ours, theirs):
            s = by_name[name]
            ratio = by_name[ours].median_us / by_name[theirs].median_us
            print(
                f"  {name:<20}{s.median_us - off.median_us:>13.0f}"
                f"{s.median_us / off.median_us:>7.3f}{s.spans_per_request:>7.2f}"
                f"{s.points_per_request:>8.2f}{s.log_records_per_request:>6.2f}"
                + (f"{ratio:>13.3f}" if name == ours else "")
            )


@dataclass(frozen=True)
class RecordCost:
    """``--logs``: CPU microseconds of one log record through the handlers in use.

    ``loop_*``: a record shaped like the access record, in a tight loop: the logging call
    (``loop_caller_us``), the handlers that write the queued records in a row
    (``loop_written_us``, :mod:`instrumentation.logbuffer`; 0 when records are handled as they
    are made) and ``export_us``, the CPU time of the flush that follows, per record (protobuf
    encoding and the HTTP POST, on the flushing thread). ``request_us``: the app's own records
    inside ``full``'s timed requests, the logging call (from ``makeRecord`` to queueing the
    record, or to the last handler for a record handled at once); ``written_us``: the handlers
    of those records, as the buffer's writer ran them during ``full``'s phases, per record.
    ``cold_us``: the loop's logging call with the CPU's caches evicted before each one, as a
    request's own work evicts them; ``cold_floor_us``: the least a JSON log line costs so,
    ``orjson.dumps`` of the same fields and one ``os.write``. CPU time (``thread_time``), not
    wall time, so that other processes on the machine do not count.
    """

    loop_caller_us: float
    loop_written_us: float
    export_us: float
    request_us: float
    written_us: float
    records_per_request: float
    handlers: str
    cold_us: float
    cold_floor_us: float

    @property
    def in_request_us(self) -> float:
        """One record made inside a request, written and exported."""
        return self.request_us + self.written_us + self.export_us


def print_record_cost(cost: RecordCost) -> None:
    print(f"\none log record through {cost.handlers}, CPU time (thread_time)")
    print(f"  in a loop, on the caller            {cost.loop_caller_us:8.1f} us")
    print(f"  in a loop, its handlers, queued     {cost.loop_written_us:8.1f} us")
    print(f"  its export (encoding + POST)        {cost.export_us:8.1f} us")
    print(
        f"  in full's requests, on the caller   {cost.request_us:8.1f} us"
        f" ({cost.records_per_request:.2f} records per request)"
    )
    print(f"  their handlers, by the log writer   {cost.written_us:8.1f} us")
    print(f"  in a request, written and exported  {cost.in_request_us:8.1f} us")
    print(f"  in a loop, caches evicted before each {cost.cold_us:8.1f} us (on the caller)")
    print(
        f"  the least a JSON line costs so        {cost.cold_floor_us:8.1f} us"
        " (orjson.dumps + os.write, no OTLP)"
    )


def report(summaries: list[Summary], floor: Floor, record: RecordCost | None = None) -> None:
    by_name = {summary.name: summary for summary in summaries}
    off, full, ratio10 = by_name["off"], by_name["full"], by_name["ratio10"]
    print_requests(summaries)
    print_floor(floor)
    per_span = extra_per_span(off, full, ratio10)
    print_per_span(per_span, full, floor)
    pairs = [(by_name[name], by_name[r]) for r, name in REPLAYED.items()]
    print_contract(off, pairs, full.spans_per_request, floor)
    if "contrib" in by_name:
        print_contrib(by_name)
    if record is not None:
        print_record_cost(record)
    print_targets(by_name, floor, record)


# --- main -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rounds: int
    cycles_per_round: int
    warmup_cycles: int
    floor_spans: int
    log_sinks: frozenset[str] = LOG_SINKS
    sdk_calls: bool = False
    contrib: bool = False
    no_steps: bool = False
    record_cost: bool = False
    record_loop: int = 2_000
    record_cold: int = 200

    @property
    def configurations(self) -> tuple[str, ...]:
        names = CONFIGURATIONS
        if self.no_steps:
            names += (NO_STEPS,)
        if self.contrib:
            names += CONTRIB_CONFIGURATIONS
        return names

    @property
    def floor_batch(self) -> int:
        """Spans per floor batch: one batch per variant per round makes ``floor_spans`` each."""
        return max(1, self.floor_spans // self.rounds)


def parse_plan(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        description="Instrumentation overhead on the recorder API against the SDK's floor."
    )
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument(
        "--requests-per-round",
        type=int,
        default=300,
        help="timed requests per configuration per round, rounded up to whole cycles of "
        f"{REQUESTS_PER_CYCLE} (default 300)",
    )
    parser.add_argument(
        "--warmup-cycles", type=int, default=50, help="untimed cycles per app first (default 50)"
    )
    parser.add_argument("--quick", action="store_true", help="a few rounds, for a smoke check")
    parser.add_argument(
        "--logs",
        nargs="?",
        const="all",
        choices=sorted(LOG_CHOICES),
        help="where the configurations other than off send log records: all (file and OTLP, "
        "what vrp api does; the default), file, otlp, or none; given at all, it also reports "
        "the cost of one log record through those handlers, in a loop and inside a request "
        "(the app's own records in full's requests, timed)",
    )
    parser.add_argument(
        "--contrib",
        action="store_true",
        help="add contrib and contrib10: the app instrumented by opentelemetry-instrumentation-"
        "flask and -sqlalchemy instead of ours (needs .venv-contrib: make bench-contrib)",
    )
    parser.add_argument(
        "--no-steps",
        action="store_true",
        help="add nosteps: full with VRP_STEP_SPANS=false, to see what the request's step spans "
        "cost (and compare with figures taken before they existed)",
    )
    parser.add_argument(
        "--sdk-calls",
        action="store_true",
        help="also time the SDK's calls inside full's requests and in a loop (see "
        "benchmarks/sdkcalls.py; the timers slow full down a little)",
    )
    args = parser.parse_args(argv)
    log_sinks = LOG_CHOICES[args.logs or "all"]
    record_cost = args.logs is not None and bool(log_sinks)
    if args.quick:
        return Plan(
            rounds=2,
            cycles_per_round=10,
            warmup_cycles=10,
            floor_spans=4_000,
            log_sinks=log_sinks,
            sdk_calls=args.sdk_calls,
            contrib=args.contrib,
            no_steps=args.no_steps,
            record_cost=record_cost,
            record_loop=300,
            record_cold=20,
        )
    if args.rounds < 1 or args.requests_per_round < 1 or args.warmup_cycles < 0:
        parser.error("--rounds and --requests-per-round must be positive, --warmup-cycles >= 0")
    return Plan(
        rounds=args.rounds,
        cycles_per_round=-(-args.requests_per_round // REQUESTS_PER_CYCLE),
        warmup_cycles=args.warmup_cycles,
        floor_spans=FLOOR_SPANS,
        log_sinks=log_sinks,
        sdk_calls=args.sdk_calls,
        contrib=args.contrib,
        no_steps=args.no_steps,
        record_cost=record_cost,
    )


def _isolate_environment() -> None:
    """Drop ``OTEL_*`` (every choice is pinned here) and keep proxies away from the sink."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, (os.environ.get(name), "127.0.0.1")))


@dataclass(frozen=True)
class Measured:
    summaries: list[Summary]
    floor: Floor
    spans: int
    records: int
    calls: SdkCalls | None
    record: RecordCost | None


@dataclass(frozen=True)
class SdkCalls:
    """``--sdk-calls``: microseconds per call and calls per request inside ``full``'s requests,
    and microseconds per call in a loop."""

    in_requests: dict[str, tuple[float, float]]
    in_loop: dict[str, float]


def _sdk_calls(times: sdkcalls.CallTimes, requests: int, target: Target) -> SdkCalls:
    pipelines = target.pipelines
    if pipelines is None:
        raise RuntimeError("the SDK calls are timed on an instrumented configuration")
    use_logging(target)
    pipelines.flush()
    try:
        in_loop = sdkcalls.loop_costs(pipelines.meter_provider, pipelines.tracer_provider)
    finally:
        use_logging(None)
    in_requests = {
        label: (times.ns[label] / times.calls[label] / 1000, times.calls[label] / requests)
        for label in times.calls
    }
    return SdkCalls(in_requests, in_loop)


def record_loop_cost(target: Target, count: int) -> tuple[float, float, float]:
    """One record shaped like the access record, ``count`` times in a loop inside a span,
    through ``target``'s handlers: CPU microseconds per record on the caller (this thread's CPU
    time), in the handlers writing the queued records out right after the loop (this thread's
    CPU time; the loop is far shorter than the flush interval), and in their export (the
    process's CPU time over the loop and the flushes after it, less the other two: the batch
    processor's worker exports full batches while the loop runs, the flush the rest). Medians
    of three batches."""
    pipelines = target.pipelines
    if pipelines is None:
        raise RuntimeError("the cost of a record is measured on an instrumented configuration")
    log = logging.getLogger(RECORD_LOGGER)
    tracer = pipelines.tracer_provider.get_tracer(RECORD_LOGGER)
    caller: list[float] = []
    written: list[float] = []
    export: list[float] = []
    use_logging(target)
    try:
        pipelines.flush()
        for _ in range(3):
            with tracer.start_as_current_span("loop"):
                process_started = time.process_time_ns()
                started = time.thread_time_ns()
                for _ in range(count):
                    # As the app logs its access record (see instrumentation.flask).
                    direct.log(log, logging.INFO, "%s %s %d", RECORD_ARGS, RECORD_FIELDS)
                emitted = time.thread_time_ns()
            logbuffer.write_pending()
            handled = time.thread_time_ns()
            pipelines.logger_provider.force_flush()
            process_total = time.process_time_ns() - process_started
            caller.append(_us(emitted - started) / count)
            written.append(_us(handled - emitted) / count)
            export.append(_us(process_total - (handled - started)) / count)
    finally:
        use_logging(None)
    return statistics.median(caller), statistics.median(written), statistics.median(export)


def record_cold_cost(target: Target, count: int) -> tuple[float, float]:
    """The record of :func:`record_loop_cost` with the CPU's caches evicted before each one (a
    copy of :data:`EVICTION_BYTES`), and, evicted the same way, the least a JSON log line costs:
    ``orjson.dumps`` of the record's fields and one ``os.write`` to a file. Medians of CPU
    microseconds on the caller, ``count`` of each."""
    pipelines = target.pipelines
    if pipelines is None:
        raise RuntimeError("the cost of a record is measured on an instrumented configuration")
    log = logging.getLogger(RECORD_LOGGER)
    tracer = pipelines.tracer_provider.get_tracer(RECORD_LOGGER)
    evictor = memoryview(bytearray(EVICTION_BYTES))
    records: list[int] = []
    lines: list[int] = []
    use_logging(target)
    try:
        with tempfile.TemporaryFile() as scratch, tracer.start_as_current_span("cold"):
            for _ in range(count):
                bytes(evictor)
                started = time.thread_time_ns()
                direct.log(log, logging.INFO, "%s %s %d", RECORD_ARGS, RECORD_FIELDS)
                records.append(time.thread_time_ns() - started)
                bytes(evictor)
                started = time.thread_time_ns()
                os.write(scratch.fileno(), orjson.dumps(RECORD_FIELDS) + b"\n")
                lines.append(time.thread_time_ns() - started)
        pipelines.flush()
    finally:
        use_logging(None)
    return _us(statistics.median(records)), _us(statistics.median(lines))


@dataclass
class LogCallTimes:
    """CPU nanoseconds spent in logging calls (``Logger._log``) while ``active``, and in
    handing queued records to their handlers (``written_ns``, ``written`` records)."""

    ns: int = 0
    calls: int = 0
    written_ns: int = 0
    written: int = 0
    active: bool = False


@contextmanager
def timing_log_calls(times: LogCallTimes) -> Iterator[None]:
    """Time every logging call while active: ``Logger._log`` (making the record and every
    handler) and :func:`instrumentation.direct.log` (the access record's path), a record that
    the direct path hands on to ``Logger._log`` counted once; and apart, every queued record
    handed to its handlers (:func:`instrumentation.direct.hand_over` outside a logging call,
    by the log writer or a flush)."""
    original_log = logging.Logger._log
    original_direct = direct.log
    original_hand_over = direct.hand_over
    inside = threading.local()

    def timing(call: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any, **kwargs: Any) -> None:
            if not times.active or getattr(inside, "now", False):
                return call(*args, **kwargs)
            inside.now = True
            started = time.thread_time_ns()
            try:
                return call(*args, **kwargs)
            finally:
                times.ns += time.thread_time_ns() - started
                times.calls += 1
                inside.now = False

        return timed

    def timed_hand_over(record: logging.LogRecord, handlers: Any) -> None:
        if not times.active or getattr(inside, "now", False):
            return original_hand_over(record, handlers)
        started = time.thread_time_ns()
        try:
            return original_hand_over(record, handlers)
        finally:
            times.written_ns += time.thread_time_ns() - started
            times.written += 1

    logging.Logger._log = timing(original_log)  # type: ignore[method-assign]
    direct.log = timing(original_direct)
    direct.hand_over = timed_hand_over
    try:
        yield
    finally:
        logging.Logger._log = original_log  # type: ignore[method-assign]
        direct.log = original_direct
        direct.hand_over = original_hand_over


def _record_cost(
    plan: Plan, log_calls: LogCallTimes, requests: int, loop: tuple[float, ...] | None
) -> RecordCost | None:
    if loop is None or not log_calls.calls:
        return None
    names = {"file": "the JSON file", "otlp": "OTLP"}
    return RecordCost(
        loop_caller_us=loop[0],
        loop_written_us=loop[1],
        export_us=loop[2],
        request_us=_us(log_calls.ns / log_calls.calls),
        written_us=_us(log_calls.written_ns / log_calls.written) if log_calls.written else 0.0,
        records_per_request=log_calls.calls / requests,
        handlers=" + ".join(names[sink] for sink in sorted(plan.log_sinks)),
        cold_us=loop[3],
        cold_floor_us=loop[4],
    )


def measure(plan: Plan, endpoint: str, root: Path) -> Measured:
    """Run the plan; return the summaries, the floor, the spans and log records emitted."""
    payload = make_wav()
    templates = capture_templates(root, payload)
    targets = [
        build_target(name, root, endpoint, payload, plan.log_sinks, templates)
        for name in plan.configurations
    ]
    floor = FloorMeter(endpoint, plan.floor_batch)
    gc_clock = GcClock()
    times = sdkcalls.CallTimes()
    log_calls = LogCallTimes()
    calls = None
    loop = None
    try:
        with (
            sdkcalls.installed(times) if plan.sdk_calls else nullcontext(),
            timing_log_calls(log_calls) if plan.record_cost else nullcontext(),
        ):
            for target in targets:
                run_phase(target, plan.warmup_cycles, gc_clock, timed=False)
            floor.run_round(timed=False)
            # As `vrp api` does before serving: start-up objects stay out of later collections.
            gc.collect()
            gc.freeze()
            for done in range(plan.rounds):
                for target in targets:
                    timing = plan.sdk_calls and target.name == "full"
                    log_calls.active = target.name == "full"
                    with sdkcalls.timing(times) if timing else nullcontext():
                        run_phase(target, plan.cycles_per_round, gc_clock, timed=True)
                    log_calls.active = False
                floor.run_round()
                print(f"\rround {done + 1}/{plan.rounds}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
        if plan.sdk_calls:
            full = next(target for target in targets if target.name == "full")
            calls = _sdk_calls(times, len(full.all_samples), full)
        if plan.record_cost:
            full = next(target for target in targets if target.name == "full")
            loop = (
                *record_loop_cost(full, plan.record_loop),
                *record_cold_cost(full, plan.record_cold),
            )
    finally:
        gc_clock.close()
        use_logging(None)
        floor.shutdown()
        for target in targets:
            target.db.dispose()
            if target.pipelines is not None:
                target.pipelines.shutdown()
    instrumented = [target.pipelines for target in targets if target.pipelines is not None]
    spans = floor.sent + sum(pipelines.spans.ended for pipelines in instrumented)
    records = sum(pipelines.log_records.emitted for pipelines in instrumented)
    summaries = [summarise(target) for target in targets]
    full_requests = next(s.requests for s in summaries if s.name == "full")
    record = _record_cost(plan, log_calls, full_requests, loop)
    return Measured(summaries, floor.result(), spans, records, calls, record)


def print_sdk_calls(calls: SdkCalls, floor: Floor) -> None:
    print("\nSDK calls inside full's requests (--sdk-calls; the timers slow full a little)")
    print(f"  {'call':<28}{'us/call':>9}{'calls/req':>11}{'us/req':>9}{'in a loop':>11}")
    loop = {**calls.in_loop, "start_span": floor.start_end_us}
    for label, (per_call, per_request) in sorted(calls.in_requests.items()):
        looped = loop.get(label)
        cell = "" if looped is None else f"{looped:.2f}"
        print(
            f"  {label:<28}{per_call:>9.2f}{per_request:>11.2f}{per_call * per_request:>9.1f}"
            f"{cell:>11}"
        )
    print(
        "  (in a loop: start_span is the floor's start_span() + end() of an empty span; the log"
        " record includes making it)"
    )


def main(argv: list[str] | None = None) -> int:
    plan = parse_plan(argv)
    if plan.contrib:
        try:
            contrib.check_available()
        except contrib.ContribUnavailableError as exc:
            print(f"overhead.py --contrib: {exc}", file=sys.stderr)
            return 2
    _isolate_environment()
    print(
        f"{plan.rounds} rounds x {plan.cycles_per_round * REQUESTS_PER_CYCLE} requests per "
        f"configuration after {plan.warmup_cycles} warm-up cycles; floor: {plan.floor_batch} "
        "spans per variant per round",
        file=sys.stderr,
    )
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with running_sink() as endpoint, tempfile.TemporaryDirectory(prefix="vrp-bench-") as tmp:
        measured = measure(plan, endpoint, Path(tmp))
        report(measured.summaries, measured.floor, measured.record)
        if measured.calls is not None:
            print_sdk_calls(measured.calls, measured.floor)
        print_delivery(sink_stats(endpoint), measured.spans, measured.records)
    load_after = os.getloadavg()[0]
    # This run keeps about one CPU busy itself (and a run just before it leaves ~1 behind).
    busy = load_before > 1.25 or load_after > 1.75
    note = " (other processes shared the CPUs: expect noise)" if busy else ""
    print(
        f"\ntook {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs; 1-minute load "
        f"average {load_before:.2f} before, {load_after:.2f} after{note}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
