"""``vrp scheduler`` as a real process on a real recorder database: SIGTERM, two schedulers, vrp up.

The database gets a filler table of incompressible bytes so that a run lasts long enough to be
caught in the middle (about a second here); nothing asserts on how long anything takes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from backup.catalog import Catalog
from backup.repository import open_repository
from backup.state import read_state

ROOT = Path(__file__).resolve().parents[2]
FILLER_MB = 24


def _env(cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        OTEL_SDK_DISABLED="true",
        VRP_LOG_FORMAT="json",
        VRP_BACKUP_DIR=str(cwd / "backups"),
        VRP_BACKUP_SCHEDULE="every 1 hour",
        **extra,
    )
    return env


def _vrp(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=_env(cwd, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


class Scheduler:
    """A ``vrp scheduler`` process whose JSON log lines (stderr) go to a file we can poll."""

    def __init__(self, cwd: Path, name: str) -> None:
        self.log = cwd / f"{name}.stderr.jsonl"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "recorder.cli", "scheduler"],
                cwd=cwd,
                env=_env(cwd, VRP_LOG_DIR=str(cwd / f"{name}-log")),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )

    def records(self) -> list[dict[str, object]]:
        return [
            json.loads(line)
            for line in self.log.read_text().splitlines()
            if line.startswith("{") and line.endswith("}")
        ]

    def messages(self) -> list[str]:
        return [str(r["message"]) for r in self.records()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process.kill()


@pytest.fixture
def recorder_home(tmp_path: Path) -> Path:
    """A migrated recorder database under ./var with a filler table of random bytes."""
    upgraded = _vrp(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    initialised = _vrp(tmp_path, "backup", "init")
    assert initialised.returncode == 0, initialised.stderr
    with sqlite3.connect(tmp_path / "var" / "vrp.db") as conn:
        conn.execute("CREATE TABLE filler (data BLOB)")
        conn.executemany(
            "INSERT INTO filler VALUES (?)", ((os.urandom(1 << 20),) for _ in range(FILLER_MB))
        )
    conn.close()
    return tmp_path


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigterm_during_a_run_lets_it_finish_then_exits_cleanly(recorder_home: Path) -> None:
    backups = recorder_home / "backups"
    scheduler = Scheduler(recorder_home, "only")
    try:
        _wait_for(
            lambda: (s := read_state(backups)) is not None and s.status == "running",
            "the catch-up run to start",
        )
        scheduler.process.send_signal(signal.SIGTERM)
        code = scheduler.process.wait(timeout=120)
    finally:
        scheduler.process.kill()
    messages = scheduler.messages()
    assert code == 0, messages[-5:]
    assert len(Catalog(backups).list()) == 1, messages
    [backup] = Catalog(backups).list()
    assert backup.verified and backup.trigger == "schedule"
    state = read_state(backups)
    assert state is not None
    assert (state.status, state.last_outcome, state.last_run_id) == (
        "stopped",
        "success",
        backup.id,
    )
    assert any(m.startswith(f"scheduled backup {backup.id} done") for m in messages)
    assert any("pruned: skipped" in m for m in messages), "no prune after a stop was asked for"
    assert messages[-1] == "scheduler stopped"
    assert {r["service"] for r in scheduler.records()} == {"vrp-scheduler"}
    status = _vrp(recorder_home, "backup", "status")
    assert status.returncode == 0, status.stderr
    assert f"scheduler: stopped (pid {scheduler.process.pid} stopped cleanly)" in status.stdout
    assert f"last run: success, {backup.id}" in status.stdout


def test_sigterm_while_waiting_stops_promptly_without_a_run(recorder_home: Path) -> None:
    first = _vrp(recorder_home, "backup", "run", "--no-verify")
    assert first.returncode == 0, first.stderr
    scheduler = Scheduler(recorder_home, "only")
    try:
        _wait_for(
            lambda: any("waiting for the next run" in m for m in scheduler.messages()),
            "the scheduler to wait for its first tick",
        )
        code = scheduler.stop()
    finally:
        scheduler.process.kill()
    assert code == 0
    assert len(Catalog(recorder_home / "backups").list()) == 1, "a recent backup: no catch-up"
    state = read_state(recorder_home / "backups")
    assert state is not None
    assert (state.status, state.last_outcome) == ("stopped", None)


def _runs(messages_and_times: list[dict[str, object]]) -> list[tuple[datetime, datetime, str]]:
    """(start, end, outcome) of every scheduled attempt in one process's log."""
    runs = []
    start: datetime | None = None
    for record in messages_and_times:
        message = str(record["message"])
        when = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
        if message == "scheduled backup starting":
            start = when
        elif start is not None and message.startswith("scheduled backup"):
            outcome = "success"
            for word in ("skipped", "failed"):
                if word in message:
                    outcome = word
            runs.append((start, when, outcome))
            start = None
    return runs


def _decided(scheduler: Scheduler) -> bool:
    """It waits for its next tick, having run, skipped or not needed its catch-up run."""
    messages = scheduler.messages()
    return any("waiting for the next run" in m for m in messages) or (
        len(_runs(scheduler.records())) >= 1
    )


def test_two_schedulers_on_one_folder_never_run_at_the_same_time(recorder_home: Path) -> None:
    backups = recorder_home / "backups"
    schedulers = [Scheduler(recorder_home, f"s{i}") for i in range(2)]
    try:
        for scheduler in schedulers:
            _wait_for(lambda s=scheduler: _decided(s), "each scheduler's start-up decision")
        codes = [s.stop() for s in schedulers]
    finally:
        for s in schedulers:
            s.process.kill()
    assert codes == [0, 0]
    runs = [run for s in schedulers for run in _runs(s.records())]
    assert all(outcome != "failed" for _, _, outcome in runs), runs
    successes = sorted((start, end) for start, end, outcome in runs if outcome == "success")
    assert len(successes) == len(Catalog(backups).list()) >= 1
    for (_, end), (start, _) in itertools.pairwise(successes):
        assert start >= end, f"two runs overlapped: {successes}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_vrp_up_runs_the_scheduler_which_catches_up_at_once(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    ports = ("--port", str(_free_port()), "--dashboard-port", str(_free_port()))
    with (tmp_path / "up.stderr").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", "up", *ports],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait_for(
            lambda: (s := read_state(backups)) is not None and s.last_outcome == "success",
            "the scheduler under vrp up to take its first backup",
        )
        announced = json.loads((tmp_path / "var" / "vrp-up.json").read_text())
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        process.kill()
    assert code == 0, (tmp_path / "up.stderr").read_text()[-3000:]
    [backup] = Catalog(backups).list()
    assert backup.trigger == "schedule"
    state = read_state(backups)
    assert state is not None and state.status == "stopped"
    assert open_repository(backups).id  # vrp up made the named folder a repository itself
    # vrp up made a token for its dashboard, printed it, and hands it to commands run by hand.
    token = announced.pop("token")
    assert len(token) >= 32 and token in (tmp_path / "up.stderr").read_text()
    assert announced == {"pid": process.pid, "otlp_endpoint": f"http://127.0.0.1:{ports[3]}"}
    assert not (tmp_path / "var" / "vrp-up.json").exists()


def test_a_backup_folder_that_is_a_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "backups").write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "scheduler"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (result.returncode, result.stderr.splitlines()) == (
        2,
        [
            f"vrp: invalid configuration: VRP_BACKUP_DIR='{tmp_path / 'backups'}': exists and is "
            "not a folder; set it to a backup repository (`vrp backup init` makes one)"
        ],
    )
    assert not (tmp_path / "var").exists()
