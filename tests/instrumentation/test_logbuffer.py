"""The direct path's records, queued and written in a row: when, in what order, with what
context, and that none is lost on the way out (see :mod:`instrumentation.logbuffer`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instrumentation import direct, logbuffer
from instrumentation.logs import configure_logging, shutdown_logging
from instrumentation.requestid import REQUEST_ID
from instrumentation.settings import LoggingSettings
from instrumentation.telemetry import OtlpLogHandler
from instrumentation.testing import InMemoryTelemetry, only_package_handlers, reset_for_tests

REPO = Path(__file__).resolve().parents[2]
ACCESS = logging.getLogger("vrp.access")
# Longer than any test takes: nothing is written by the writer thread unless a test waits.
NEVER_MS = 60_000


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    reset_for_tests()
    yield
    reset_for_tests()


def configure(tmp_path: Path, flush_ms: int) -> None:
    settings = LoggingSettings(
        log_dir=tmp_path, stderr=False, level="INFO", flush_ms=flush_ms, lean=True
    )
    configure_logging(settings, service="vrp")


def lines(tmp_path: Path) -> list[dict[str, Any]]:
    """The file's lines of the tests' own loggers (a background thread left by an earlier test,
    such as a telemetry exporter, may log to the root too)."""
    path = tmp_path / "vrp.log"
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in found if line["logger"].startswith("vrp.")]


def access(path: str) -> None:
    direct.log(ACCESS, logging.INFO, "GET %s", (path,), {"url.path": path})


def test_a_queued_record_is_written_by_the_writer_within_the_interval(tmp_path: Path) -> None:
    configure(tmp_path, flush_ms=50)
    with only_package_handlers():
        access("/a")
    deadline = time.monotonic() + 10
    while not lines(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)

    assert [line["message"] for line in lines(tmp_path)] == ["GET /a"]
    active = logbuffer.active()
    assert active is not None and active.pending() == 0


def test_the_line_carries_the_span_and_request_id_it_was_made_in_not_the_writers(
    tmp_path: Path,
) -> None:
    configure(tmp_path, flush_ms=NEVER_MS)
    telemetry = InMemoryTelemetry()
    otlp = OtlpLogHandler(telemetry.logger_provider)
    logging.getLogger().addHandler(otlp)
    tracer = telemetry.tracer_provider.get_tracer("test")
    token = REQUEST_ID.set("req-1")
    try:
        with only_package_handlers(), tracer.start_as_current_span("request") as span:
            direct.log(ACCESS, logging.INFO, "GET /a", (), {})
    finally:
        REQUEST_ID.reset(token)
        logging.getLogger().removeHandler(otlp)
    assert lines(tmp_path) == []  # queued, not written yet

    with tracer.start_as_current_span("elsewhere"):
        logbuffer.write_pending()

    context = span.get_span_context()
    (line,) = lines(tmp_path)
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert line["request_id"] == "req-1"
    (exported,) = telemetry.logs()
    assert exported.log_record.trace_id == context.trace_id
    assert exported.log_record.span_id == context.span_id


def test_a_warning_writes_the_queued_records_first(tmp_path: Path) -> None:
    configure(tmp_path, flush_ms=NEVER_MS)
    with only_package_handlers():
        access("/first")
        access("/second")
        logging.getLogger("vrp.test").warning("then this")

    assert [line["message"] for line in lines(tmp_path)] == [
        "GET /first",
        "GET /second",
        "then this",
    ]


def test_a_handler_flush_and_shutdown_write_the_queue(tmp_path: Path) -> None:
    configure(tmp_path, flush_ms=NEVER_MS)
    with only_package_handlers():
        access("/a")
        for handler in logging.getLogger().handlers:
            handler.flush()
        assert [line["message"] for line in lines(tmp_path)] == ["GET /a"]
        access("/b")
    shutdown_logging()

    assert [line["message"] for line in lines(tmp_path)] == ["GET /a", "GET /b"]
    assert logbuffer.active() is None


def test_with_flush_ms_zero_each_record_is_written_as_it_is_made(tmp_path: Path) -> None:
    configure(tmp_path, flush_ms=0)
    with only_package_handlers():
        access("/a")
        assert logbuffer.active() is None
        assert [line["message"] for line in lines(tmp_path)] == ["GET /a"]


def test_a_full_queue_is_written_by_the_thread_that_logs() -> None:
    delivered: list[tuple[str, str]] = []

    def deliver(record: logging.LogRecord, handlers: Any) -> None:
        delivered.append((record.getMessage(), threading.current_thread().name))

    buffer = logbuffer.RecordBuffer(NEVER_MS / 1000, deliver, max_pending=3)
    try:
        for index in range(3):
            buffer.put(logging.makeLogRecord({"msg": f"r{index}"}), ())
        me = threading.current_thread().name
        assert delivered == [("r0", me), ("r1", me), ("r2", me)]
        assert buffer.pending() == 0
    finally:
        buffer.close()


def test_a_handler_that_logs_while_the_queue_is_written_does_not_wait_for_itself() -> None:
    delivered: list[str] = []
    buffers: list[logbuffer.RecordBuffer] = []

    def deliver(record: logging.LogRecord, handlers: Any) -> None:
        delivered.append(record.getMessage())
        buffers[0].write()  # as a handler logging a warning does: returns at once

    buffer = logbuffer.RecordBuffer(NEVER_MS / 1000, deliver)
    buffers.append(buffer)
    buffer.put(logging.makeLogRecord({"msg": "a"}), ())
    buffer.put(logging.makeLogRecord({"msg": "b"}), ())
    buffer.close()

    assert delivered == ["a", "b"]
    buffer.put(logging.makeLogRecord({"msg": "c"}), ())  # closed: delivered at once
    assert delivered == ["a", "b", "c"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_starts_with_an_empty_queue_and_the_parent_writes_its_own(
    tmp_path: Path,
) -> None:
    configure(tmp_path, flush_ms=NEVER_MS)
    with only_package_handlers():
        access("/parent")
        pid = os.fork()
        if pid == 0:  # the child: report what it would write, never run pytest's teardown
            active = logbuffer.active()
            os._exit(0 if active is not None and active.pending() == 0 else 1)
        _, status = os.waitpid(pid, 0)
        logbuffer.write_pending()

    assert os.waitstatus_to_exitcode(status) == 0
    assert [line["message"] for line in lines(tmp_path)] == ["GET /parent"]


def test_a_process_that_exits_writes_its_queued_records(tmp_path: Path) -> None:
    script = f"""
import logging
from pathlib import Path
from instrumentation import direct
from instrumentation.logs import configure_logging
from instrumentation.settings import LoggingSettings

configure_logging(
    LoggingSettings(log_dir=Path({str(tmp_path)!r}), stderr=False, flush_ms={NEVER_MS}, lean=True),
    service="vrp",
)
direct.log(logging.getLogger("vrp.access"), logging.INFO, "GET /last", (), {{}})
"""
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)

    assert [line["message"] for line in lines(tmp_path)] == ["GET /last"]


def test_a_batch_reaches_the_file_and_stderr_with_one_write_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = LoggingSettings(
        log_dir=tmp_path,
        stderr=True,
        stderr_format="json",
        level="INFO",
        flush_ms=NEVER_MS,
        lean=True,
    )
    configure_logging(settings, service="vrp")
    writes: list[tuple[str, int]] = []
    outputs = [handler for handler in logging.getLogger().handlers if hasattr(handler, "end_batch")]
    for handler in outputs:
        real_write = handler._write  # type: ignore[attr-defined]

        def spy(data: Any, name: str = type(handler).__name__, real: Any = real_write) -> None:
            writes.append((name, len(data.splitlines())))
            real(data)

        monkeypatch.setattr(handler, "_write", spy)

    with only_package_handlers():
        for path in ("/a", "/b", "/c"):
            access(path)
        assert writes == []
        logbuffer.write_pending()
        logging.getLogger("vrp.test").warning("then this")

    assert sorted(writes) == [
        ("SizeRotatingFileHandler", 1),
        ("SizeRotatingFileHandler", 3),
        ("_JsonStreamHandler", 1),
        ("_JsonStreamHandler", 3),
    ]
    expected = ["GET /a", "GET /b", "GET /c", "then this"]
    assert [line["message"] for line in lines(tmp_path)] == expected
    printed = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in printed if line["logger"].startswith("vrp.")] == expected


def test_a_batch_that_crosses_the_size_limit_rotates_where_its_line_would_cross_it(
    tmp_path: Path,
) -> None:
    settings = LoggingSettings(
        log_dir=tmp_path,
        stderr=False,
        level="INFO",
        flush_ms=NEVER_MS,
        max_bytes=2000,
        lean=True,
    )
    configure_logging(settings, service="vrp")
    with only_package_handlers():
        for number in range(20):
            access(f"/{number:02d}/{'x' * 100}")
        logbuffer.write_pending()
    shutdown_logging()

    newest, older = tmp_path / "vrp.log", tmp_path / "vrp.log.1"
    assert older.exists()
    assert older.stat().st_size <= 2000 and newest.stat().st_size <= 2000
    assert older.stat().st_size + len(newest.read_bytes().splitlines()[0]) + 1 >= 2000
    numbers = [
        json.loads(line)["url.path"][1:3]
        for path in sorted(tmp_path.glob("vrp.log*"), reverse=True)
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert numbers == sorted(numbers) and numbers[-1] == "19"


def test_records_queued_by_many_threads_at_once_are_all_written_by_the_writer() -> None:
    delivered: list[str] = []
    buffer = logbuffer.RecordBuffer(0.001, lambda record, _: delivered.append(record.msg))
    threads, each = 8, 300
    switch_interval = sys.getswitchinterval()
    # Thread switches between any two bytecodes, so puts interleave at every point they can.
    sys.setswitchinterval(1e-6)
    try:

        def put(worker: int) -> None:
            for index in range(each):
                buffer.put(logging.makeLogRecord({"msg": f"{worker}-{index}"}), ())

        workers = [threading.Thread(target=put, args=(worker,)) for worker in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch_interval)
    deadline = time.monotonic() + 10
    while len(delivered) < threads * each and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert len(delivered) == threads * each, f"{buffer.pending()} records never written"
    finally:
        buffer.close()
