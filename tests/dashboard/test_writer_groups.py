"""The group writer waits briefly for a request being decoded, so that groups are not small."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard import writer as writer_module
from dashboard.otlp import PROTOBUF, decode_traces
from dashboard.store import TelemetryStore
from dashboard.store import engine as store_engine
from dashboard.writer import GroupWriter
from tests.dashboard.otlp_bodies import request_trace, traces_request


class _Store:
    """Records the groups it is asked to write."""

    def __init__(self) -> None:
        self.groups: list[list[Any]] = []

    def write_logs(self, records: list[Any]) -> None:
        self.groups.append(list(records))

    def start_checkpoints(self) -> None:
        pass

    def stop_checkpoints(self) -> None:
        pass


def _writer() -> tuple[GroupWriter, _Store]:
    store = _Store()
    return GroupWriter(store), store  # type: ignore[arg-type]


def test_a_request_being_decoded_joins_the_group_of_the_one_before() -> None:
    writer, store = _writer()
    try:
        with writer.decode_slot():
            first = threading.Thread(target=writer.submit, args=("logs", ["a"]))
            first.start()
            time.sleep(writer_module.GROUP_LINGER_S / 4)
            pending = writer.prepare("logs", ["b"])
        writer.commit(pending)
        first.join(5)
        assert store.groups == [["a", "b"]]
    finally:
        writer.close()


def test_the_writer_waits_no_longer_than_the_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "GROUP_LINGER_S", 0.3)
    writer, store = _writer()
    try:
        with writer.decode_slot():
            started = time.monotonic()
            writer.submit("logs", ["a"])
            waited = time.monotonic() - started
        assert store.groups == [["a"]]
        assert 0.25 <= waited < 5
    finally:
        writer.close()


def test_with_nothing_being_decoded_a_request_is_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer_module, "GROUP_LINGER_S", 10.0)
    writer, store = _writer()
    try:
        started = time.monotonic()
        writer.submit("logs", ["a"])
        assert time.monotonic() - started < 5
        assert store.groups == [["a"]]
    finally:
        writer.close()


def test_a_receiver_store_checkpoints_its_wal_beside_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "CHECKPOINT_WAL_BYTES", 1)
    monkeypatch.setattr(store_engine, "CHECKPOINT_EVERY_S", 0.01)
    store = TelemetryStore(f"sqlite:///{tmp_path}/telemetry.db")
    store.upgrade()
    database = tmp_path / "telemetry.db"
    writer = GroupWriter(store)
    try:
        spans = request_trace(random.Random(1), time.time_ns())
        body = traces_request(spans).SerializeToString()
        # The commit alone stays far below the writer's own checkpoint threshold: the
        # database file grows only if the checkpoint thread copies the WAL into it.
        before = database.stat().st_size
        writer.submit("spans", decode_traces(body, PROTOBUF).records)
        deadline = time.monotonic() + 10
        while database.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert database.stat().st_size > before
        assert store._checkpointer is not None
    finally:
        writer.close()
        store.dispose()
    assert store._checkpointer is None
