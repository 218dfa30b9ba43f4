"""The direct log path writes what the ordinary path writes, and is taken only when it may be.

pytest's logging plugin keeps handlers of its own on the root logger during every test, which
would (rightly) send every record down the ordinary path;
:func:`~instrumentation.testing.only_package_handlers` takes them off around the calls that need
the direct path, as in a running service.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instrumentation import direct, logbuffer
from instrumentation.logs import configure_logging
from instrumentation.settings import LoggingSettings
from instrumentation.telemetry import OtlpLogHandler
from instrumentation.testing import InMemoryTelemetry, only_package_handlers, reset_for_tests

FIELDS = {
    "request_id": "r-1",
    "http.route": "/x/<id>",
    "url.path": "/x/1?token=tok-secret",
    "http.response.status_code": 200,
    "vrp.db.statements": 3,
    "duration_ms": 1.25,
    "client.address": None,
}


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    reset_for_tests()
    yield
    reset_for_tests()


@pytest.fixture
def telemetry() -> InMemoryTelemetry:
    return InMemoryTelemetry()


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


@pytest.fixture(params=[200, 0], ids=["queued", "at-once"])
def service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    telemetry: InMemoryTelemetry,
    stderr: io.StringIO,
) -> Iterator[OtlpLogHandler]:
    """``vrp api``'s logging: a JSON file, JSON on stderr and OTLP, at INFO; the direct path's
    records queued (the default, see :mod:`instrumentation.logbuffer`) or handled at once."""
    settings = LoggingSettings(
        log_dir=tmp_path,
        level="INFO",
        stderr=True,
        stderr_format="json",
        flush_ms=request.param,
        lean=True,
    )
    configure_logging(settings, service="vrp")
    otlp = OtlpLogHandler(telemetry.logger_provider)
    logging.getLogger().addHandler(otlp)
    yield otlp
    logging.getLogger().removeHandler(otlp)


@pytest.fixture
def made_records(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the records made by the ordinary path (``Logger.makeRecord``)."""
    made: list[str] = []
    make = logging.Logger.makeRecord

    def counted(self: logging.Logger, name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(name)
        return make(self, name, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    return made


def lines(tmp_path: Path) -> list[dict[str, Any]]:
    """The file's lines once the queued records are written, as a reader sees them a moment
    after they are made."""
    logbuffer.write_pending()
    text = (tmp_path / "vrp.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def without_times(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key != "timestamp"}


def exported(telemetry: InMemoryTelemetry) -> list[tuple[Any, ...]]:
    return [
        (
            data.log_record.body,
            data.log_record.severity_text,
            data.log_record.severity_number,
            data.log_record.trace_id,
            data.log_record.span_id,
            dict(data.log_record.attributes or {}),
            data.instrumentation_scope.name if data.instrumentation_scope else None,
        )
        for data in telemetry.logs()
    ]


@pytest.mark.usefixtures("service")
def test_the_direct_path_writes_the_file_stderr_and_otlp_records_the_ordinary_path_writes(
    tmp_path: Path, telemetry: InMemoryTelemetry, stderr: io.StringIO, made_records: list[str]
) -> None:
    logger = logging.getLogger("vrp.access")
    tracer = telemetry.tracer_provider.get_tracer("test")
    with only_package_handlers(), tracer.start_as_current_span("request"):
        logger.info("GET %s %d", "/x/1?token=tok-secret", 200, extra=dict(FIELDS))
        direct.log(logger, logging.INFO, "GET %s %d", ("/x/1?token=tok-secret", 200), dict(FIELDS))

    assert made_records == ["vrp.access"]  # the second record took the direct path
    ordinary, direct_line = lines(tmp_path)
    assert without_times(direct_line) == without_times(ordinary)
    assert list(direct_line) == list(ordinary)  # the same keys in the same order
    assert "tok-secret" not in json.dumps(direct_line)
    assert direct_line["trace_id"] is not None
    first, second = stderr.getvalue().splitlines()
    assert without_times(json.loads(second)) == without_times(json.loads(first))
    ordinary_record, direct_record = exported(telemetry)
    assert direct_record == ordinary_record
    assert "tok-secret" not in repr(direct_record)


@pytest.mark.usefixtures("service")
def test_a_lone_mapping_argument_formats_the_message_as_the_ordinary_path_does(
    tmp_path: Path,
) -> None:
    logger = logging.getLogger("vrp.access")
    with only_package_handlers():
        logger.info("%(method)s %(path)s", {"method": "GET", "path": "/x"})
        args = ({"method": "GET", "path": "/x"},)
        direct.log(logger, logging.INFO, "%(method)s %(path)s", args, {})

    assert [line["message"] for line in lines(tmp_path)] == ["GET /x", "GET /x"]


@pytest.mark.usefixtures("service")
def test_a_record_below_the_level_is_not_made_at_all(
    tmp_path: Path, telemetry: InMemoryTelemetry, made_records: list[str]
) -> None:
    with only_package_handlers():
        direct.log(logging.getLogger("vrp.access"), logging.DEBUG, "hidden", (), {})

    assert made_records == []
    assert lines(tmp_path) == []
    assert not telemetry.logs()


def test_another_handler_on_the_root_gets_the_record_by_the_ordinary_path(
    service: OtlpLogHandler, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.INFO):
        direct.log(logging.getLogger("vrp.access"), logging.INFO, "GET %s", ("/x",), dict(FIELDS))

    (record,) = [r for r in caplog.records if r.name == "vrp.access"]
    assert record.getMessage() == "GET /x"
    assert record.__dict__["http.route"] == "/x/<id>"
    assert [line["message"] for line in lines(tmp_path)] == ["GET /x"]


@pytest.mark.parametrize(
    "change",
    ["filter on the logger", "handler on the logger", "handler on a parent", "filter on a handler"],
)
@pytest.mark.usefixtures("service")
def test_a_filter_or_handler_added_anywhere_sends_records_the_ordinary_way(
    change: str, tmp_path: Path, made_records: list[str]
) -> None:
    logger = logging.getLogger("vrp.access.sub")
    parent = logging.getLogger("vrp.access")
    ours = next(h for h in logging.getLogger().handlers if hasattr(h, "direct_filters"))
    seen: list[str] = []

    def note(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return True

    extra = logging.Handler()
    extra.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    targets = {
        "filter on the logger": (logger.addFilter, logger.removeFilter, note),
        "handler on the logger": (logger.addHandler, logger.removeHandler, extra),
        "handler on a parent": (parent.addHandler, parent.removeHandler, extra),
        "filter on a handler": (ours.addFilter, ours.removeFilter, note),
    }
    add, remove, thing = targets[change]
    add(thing)  # type: ignore[operator]
    try:
        with only_package_handlers():
            direct.log(logger, logging.INFO, "GET %s", ("/x",), {})
    finally:
        remove(thing)  # type: ignore[operator]

    assert made_records == ["vrp.access.sub"]
    assert "GET /x" in seen
    assert [line["message"] for line in lines(tmp_path)] == ["GET /x"]


@pytest.mark.usefixtures("service")
def test_warnings_take_the_ordinary_path_and_keep_their_caller(
    telemetry: InMemoryTelemetry, made_records: list[str]
) -> None:
    with only_package_handlers():
        direct.log(logging.getLogger("vrp.access"), logging.WARNING, "slow", (), {})

    assert made_records == ["vrp.access"]
    (record,) = exported(telemetry)
    assert "code.function.name" in record[5]


@pytest.mark.usefixtures("service")
def test_logging_disable_silences_the_direct_path(tmp_path: Path, made_records: list[str]) -> None:
    logging.disable(logging.INFO)
    try:
        with only_package_handlers():
            direct.log(logging.getLogger("vrp.access"), logging.INFO, "GET %s", ("/x",), {})
    finally:
        logging.disable(logging.NOTSET)

    assert lines(tmp_path) == []


def test_with_caller_lookup_configured_records_take_the_ordinary_path(
    tmp_path: Path, stderr: io.StringIO, made_records: list[str]
) -> None:
    configure_logging(
        LoggingSettings(log_dir=tmp_path, level="INFO", stderr=False, caller=True), service="vrp"
    )
    with only_package_handlers():
        direct.log(logging.getLogger("vrp.access"), logging.INFO, "GET %s", ("/x",), {})

    assert made_records == ["vrp.access"]
    assert [line["message"] for line in lines(tmp_path)] == ["GET /x"]


def test_a_field_named_like_a_record_attribute_is_refused_as_extra_refuses_it(
    service: OtlpLogHandler,
) -> None:
    with pytest.raises(KeyError, match="msg"):
        direct.log(logging.getLogger("vrp.access"), logging.INFO, "x", (), {"msg": "clash"})
