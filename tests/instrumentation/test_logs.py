from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter

from instrumentation import redaction
from instrumentation.errors import ConfigurationError
from instrumentation.logs import configure_logging, shutdown_logging
from instrumentation.settings import LoggingSettings
from instrumentation.telemetry import OtlpLogHandler
from instrumentation.testing import InMemoryTelemetry, reset_for_tests

ISO_UTC_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|\+00:00)$")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    reset_for_tests()
    yield
    reset_for_tests()


def redirect_stderr(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> io.StringIO:
    # Inside the test body: pytest's own capture swaps sys.stderr between fixture setup and call.
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def file_settings(tmp_path: Path, **overrides: Any) -> LoggingSettings:
    return LoggingSettings(
        **{"log_dir": tmp_path, "stderr": False, "level": "INFO", "lean": True, **overrides}
    )


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_json_line_has_contract_keys_and_the_ids_of_the_current_span(tmp_path: Path) -> None:
    configure_logging(file_settings(tmp_path), service="vrp-api")
    tracer = InMemoryTelemetry().tracer_provider.get_tracer("test")

    with tracer.start_as_current_span("work") as span:
        logging.getLogger("vrp.test").info("stored %d recordings", 3)
    context = span.get_span_context()

    (line,) = json_lines(tmp_path / "vrp-api.log")
    assert ISO_UTC_MILLIS.match(line["timestamp"])
    assert line["level"] == "INFO"
    assert line["logger"] == "vrp.test"
    assert line["message"] == "stored 3 recordings"
    assert line["service"] == "vrp-api"
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])


def test_outside_a_span_trace_and_span_ids_are_null(tmp_path: Path) -> None:
    configure_logging(file_settings(tmp_path), service="vrp-api")

    logging.getLogger("vrp.test").warning("no span here")

    (line,) = json_lines(tmp_path / "vrp-api.log")
    assert line["trace_id"] is None
    assert line["span_id"] is None


def test_extra_fields_and_the_exception_are_part_of_the_line(tmp_path: Path) -> None:
    configure_logging(file_settings(tmp_path, file_name="app.jsonl"), service="vrp-api")

    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("vrp.test").exception(
            "lookup failed", extra={"recording_id": 7, "route": "/recordings/<id>"}
        )

    (line,) = json_lines(tmp_path / "app.jsonl")
    assert line["recording_id"] == 7
    assert line["route"] == "/recordings/<id>"
    assert line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in line["exception"]


def test_level_filters_records_below_it(tmp_path: Path) -> None:
    configure_logging(file_settings(tmp_path, level="warning"), service="vrp-api")

    logging.getLogger("vrp.test").info("hidden")
    logging.getLogger("vrp.test").warning("shown")

    assert [line["message"] for line in json_lines(tmp_path / "vrp-api.log")] == ["shown"]


def test_file_rotates_at_max_bytes_and_keeps_backup_count_files(tmp_path: Path) -> None:
    configure_logging(
        file_settings(tmp_path / "nested" / "logs", max_bytes=2000, backup_count=2),
        service="vrp-api",
    )
    log = logging.getLogger("vrp.test")

    for number in range(100):
        log.info("record %03d %s", number, "x" * 50)
    shutdown_logging()

    log_dir = tmp_path / "nested" / "logs"
    files = sorted(path.name for path in log_dir.iterdir())
    assert files == ["vrp-api.log", "vrp-api.log.1", "vrp-api.log.2"]
    for path in log_dir.iterdir():
        assert path.stat().st_size <= 2000
    newest = json_lines(log_dir / "vrp-api.log")
    assert newest[-1]["message"].startswith("record 099")
    kept = sum(len(json_lines(path)) for path in log_dir.iterdir())
    assert kept < 100


def test_configuring_twice_writes_each_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr_pipe = redirect_stderr(monkeypatch, io.StringIO())
    settings = file_settings(tmp_path, stderr=True, stderr_format="json")
    configure_logging(settings, service="vrp-api")
    configure_logging(settings, service="vrp-api")

    logging.getLogger("vrp.test").info("once")

    assert len(json_lines(tmp_path / "vrp-api.log")) == 1
    assert len(stderr_pipe.getvalue().splitlines()) == 1


def test_configure_and_shutdown_leave_foreign_handlers_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    try:
        configure_logging(file_settings(tmp_path), service="vrp-api")
        configure_logging(file_settings(tmp_path), service="vrp-api")
        logging.getLogger("vrp.test").warning("seen by caplog too")
        shutdown_logging()

        assert foreign in logging.getLogger().handlers
        assert caplog.handler in logging.getLogger().handlers
        assert [record.getMessage() for record in caplog.records] == ["seen by caplog too"]
    finally:
        logging.getLogger().removeHandler(foreign)


def test_without_lean_the_process_wide_logging_switches_stay_as_the_app_set_them(
    tmp_path: Path,
) -> None:
    switches = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    before = {name: getattr(logging, name) for name in switches}

    configure_logging(file_settings(tmp_path, lean=False), service="shop")
    during = {name: getattr(logging, name) for name in switches}
    logging.getLogger("shop").warning("written with its caller")
    shutdown_logging()

    assert during == before
    [line] = (tmp_path / "shop.log").read_text().splitlines()
    assert json.loads(line)["message"] == "written with its caller"


def test_an_apps_own_root_handler_keeps_its_output_beside_ours(tmp_path: Path) -> None:
    own = tmp_path / "own.log"
    handler = logging.FileHandler(own)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        configure_logging(file_settings(tmp_path, lean=False), service="shop")
        logging.getLogger("shop").warning("stock is low for item %d", 7)
        shutdown_logging()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()

    assert own.read_text() == "WARNING shop stock is low for item 7\n"
    [line] = (tmp_path / "shop.log").read_text().splitlines()
    assert json.loads(line)["message"] == "stock is low for item 7"


def test_shutdown_restores_the_root_level(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = root.level

    configure_logging(file_settings(tmp_path, level="DEBUG"), service="vrp-api")
    assert root.level == logging.DEBUG
    shutdown_logging()

    assert root.level == before


def test_stderr_is_readable_text_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = redirect_stderr(monkeypatch, FakeTerminal())
    configure_logging(LoggingSettings(log_dir=None, level="INFO"), service="vrp-api")

    logging.getLogger("vrp.test").info("hello %s", "there")

    line = terminal.getvalue().strip()
    assert re.fullmatch(r"\S+Z INFO\s+vrp\.test: hello there", line)


def test_stderr_is_json_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr_pipe = redirect_stderr(monkeypatch, io.StringIO())
    configure_logging(LoggingSettings(log_dir=None, level="INFO"), service="vrp-api")

    logging.getLogger("vrp.test").info("hello")

    assert json.loads(stderr_pipe.getvalue())["message"] == "hello"


@pytest.mark.parametrize(("forced", "terminal"), [("json", True), ("text", False)])
def test_stderr_format_can_be_forced(
    monkeypatch: pytest.MonkeyPatch, forced: str, terminal: bool
) -> None:
    stream = redirect_stderr(monkeypatch, FakeTerminal() if terminal else io.StringIO())
    configure_logging(
        LoggingSettings(log_dir=None, level="INFO", stderr_format=forced), service="vrp-api"
    )

    logging.getLogger("vrp.test").info("hello")

    output = stream.getvalue()
    if forced == "json":
        assert json.loads(output)["message"] == "hello"
    else:
        assert output.rstrip().endswith("vrp.test: hello")


def test_noisy_libraries_are_quieted_and_restored(tmp_path: Path) -> None:
    urllib3_logger = logging.getLogger("urllib3")
    urllib3_logger.setLevel(logging.NOTSET)

    configure_logging(file_settings(tmp_path), service="vrp-api")
    assert urllib3_logger.level == logging.WARNING
    shutdown_logging()

    assert urllib3_logger.level == logging.NOTSET


def test_a_level_set_by_the_application_is_kept(tmp_path: Path) -> None:
    werkzeug_logger = logging.getLogger("werkzeug")
    werkzeug_logger.setLevel(logging.INFO)
    try:
        configure_logging(file_settings(tmp_path), service="vrp-api")

        assert werkzeug_logger.level == logging.INFO
    finally:
        werkzeug_logger.setLevel(logging.NOTSET)


def test_unknown_level_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'LOUD'"):
        configure_logging(file_settings(tmp_path, level="LOUD"), service="vrp-api")


def test_unwritable_log_dir_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    with pytest.raises(ConfigurationError, match="cannot write logs"):
        configure_logging(file_settings(blocker / "logs"), service="vrp-api")


def test_file_stderr_and_otlp_get_the_same_masked_record_with_trace_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr_pipe = redirect_stderr(monkeypatch, io.StringIO())
    configure_logging(file_settings(tmp_path, stderr=True, stderr_format="json"), service="vrp")
    telemetry = InMemoryTelemetry()
    otlp = OtlpLogHandler(telemetry.logger_provider)
    logging.getLogger().addHandler(otlp)
    tracer = telemetry.tracer_provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("vrp.test").info(
                "connect %s", "postgresql://app:url-pw@db/x", extra={"token": "token=tok-1"}
            )
    finally:
        logging.getLogger().removeHandler(otlp)
    context = span.get_span_context()

    file_text = (tmp_path / "vrp.log").read_text(encoding="utf-8")
    assert stderr_pipe.getvalue() == file_text
    (exported,) = telemetry.logs()
    otlp_text = str(exported.log_record.body) + repr(dict(exported.log_record.attributes or {}))
    for text in (file_text, otlp_text):
        assert "url-pw" not in text
        assert "tok-1" not in text
    (line,) = json_lines(tmp_path / "vrp.log")
    assert line["message"] == "connect postgresql://app:***@db/x"
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert exported.log_record.trace_id == context.trace_id
    assert exported.log_record.body == line["message"]


@pytest.mark.parametrize("otlp_first", [False, True], ids=["file-first", "otlp-first"])
def test_the_batch_processor_exports_the_same_fields_the_json_line_has(
    tmp_path: Path, otlp_first: bool
) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    otlp = OtlpLogHandler(provider)
    root = logging.getLogger()
    if otlp_first:
        root.addHandler(otlp)
    configure_logging(file_settings(tmp_path), service="vrp")
    if not otlp_first:
        root.addHandler(otlp)
    tracer = InMemoryTelemetry().tracer_provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("vrp.test").info(
                "GET %s", "/x", extra={"http.route": "/x", "vrp.db.statements": 2, "tags": [1]}
            )
        provider.force_flush()
    finally:
        root.removeHandler(otlp)
        provider.shutdown()

    (exported,) = exporter.get_finished_logs()
    record = exported.log_record
    context = span.get_span_context()
    assert (record.trace_id, record.span_id) == (context.trace_id, context.span_id)
    assert record.trace_flags == context.trace_flags
    assert record.body == "GET /x"
    assert record.severity_text == "INFO"
    assert dict(record.attributes or {}) == {
        "http.route": "/x",
        "vrp.db.statements": 2,
        "tags": "[1]",
        **({} if otlp_first else {"request_id": None}),
    }
    (line,) = json_lines(tmp_path / "vrp.log")
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert [key for key in line if key in ("http.route", "vrp.db.statements", "tags")] == [
        "http.route",
        "vrp.db.statements",
        "tags",
    ]


def test_file_and_otlp_handlers_walk_the_record_once_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[str] = []
    walk = redaction._added_fields

    def counted(record: logging.LogRecord) -> Any:
        walks.append(record.name)
        return walk(record)

    monkeypatch.setattr(redaction, "_added_fields", counted)
    configure_logging(file_settings(tmp_path), service="vrp")
    otlp = OtlpLogHandler(InMemoryTelemetry().logger_provider)
    logging.getLogger().addHandler(otlp)
    try:
        logging.getLogger("vrp.test").info("once", extra={"http.route": "/x"})
    finally:
        logging.getLogger().removeHandler(otlp)

    assert walks == ["vrp.test"]


def test_only_warnings_and_above_pay_for_the_caller_lookup_at_info(tmp_path: Path) -> None:
    telemetry = InMemoryTelemetry()
    configure_logging(file_settings(tmp_path), service="vrp")
    otlp = OtlpLogHandler(telemetry.logger_provider)
    logging.getLogger().addHandler(otlp)
    try:
        logging.getLogger("vrp.test").info("routine")
        logging.getLogger("vrp.test").warning("worth locating")
    finally:
        logging.getLogger().removeHandler(otlp)

    info, warning = telemetry.logs()
    assert "code.line.number" not in (info.log_record.attributes or {})
    attributes = dict(warning.log_record.attributes or {})
    assert attributes["code.file.path"] == __file__
    assert attributes["code.function.name"] == (
        "test_only_warnings_and_above_pay_for_the_caller_lookup_at_info"
    )


def test_the_caller_setting_and_debug_level_keep_the_caller_of_every_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for settings in (file_settings(tmp_path, caller=True), file_settings(tmp_path, level="DEBUG")):
        configure_logging(settings, service="vrp")
        caplog.clear()
        logging.getLogger("vrp.test").info("located")
        assert caplog.records[0].funcName == (
            "test_the_caller_setting_and_debug_level_keep_the_caller_of_every_record"
        )
        shutdown_logging()


def test_a_saturated_servers_queue_warnings_pass_once_a_minute(tmp_path: Path) -> None:
    configure_logging(file_settings(tmp_path), service="vrp")
    queue = logging.getLogger("waitress.queue")
    for depth in range(100):
        queue.warning("Task queue depth is %d", depth)
    logging.getLogger("vrp.test").warning("Task queue depth is %d", 1)  # another logger

    lines = json_lines(tmp_path / "vrp.log")
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("waitress.queue", "Task queue depth is 0"),
        ("vrp.test", "Task queue depth is 1"),
    ]
    shutdown_logging()
    assert queue.filters == []
