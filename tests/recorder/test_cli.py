"""The ``vrp`` command: exit codes and messages as a user sees them, in a real subprocess."""

from __future__ import annotations

import ast
import gc
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from instrumentation.database import Database
    from recorder.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    clean.update(env)
    clean["PYTHONPATH"] = str(ROOT)
    return clean


def _vrp(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["api"], ["up"], ["db", "upgrade"]])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, command: list[str]) -> None:
    result = _vrp(command, tmp_path, VRP_DB_POOL_SIZE="lots")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["vrp: invalid configuration: VRP_DB_POOL_SIZE='lots': Not a valid integer."]


@pytest.mark.parametrize(
    "command",
    [["backup", "list"], ["backup", "status"], ["db", "current"], ["dashboard"], ["scheduler"]],
)
@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("VRP_TYPO", "1", "VRP_TYPO: unknown setting; see the Configuration section of the README"),
        ("VRP_API_PORT", "abc", "VRP_API_PORT='abc': Not a valid integer."),
        ("VRP_DASHBOARD_PORT", "x", "VRP_DASHBOARD_PORT='x': Not a valid integer."),
    ],
)
def test_every_command_refuses_any_bad_variable_with_the_same_line(
    tmp_path: Path, command: list[str], variable: str, value: str, line: str
) -> None:
    result = _vrp(command, tmp_path, **{variable: value})
    assert (result.returncode, result.stderr.splitlines()) == (
        2,
        [f"vrp: invalid configuration: {line}"],
    )
    assert list(tmp_path.iterdir()) == []


def test_a_bad_backup_variable_stops_the_dashboard_too(tmp_path: Path) -> None:
    result = _vrp(["dashboard", "--port", "0"], tmp_path, VRP_BACKUP_SCHEDULE="sometimes")
    assert result.returncode == 2
    assert result.stderr.startswith("vrp: invalid configuration: VRP_BACKUP_SCHEDULE='sometimes'")


@pytest.mark.parametrize("args", [["--help"], ["backup", "list", "--help"], ["--version"]])
def test_help_needs_no_valid_configuration(tmp_path: Path, args: list[str]) -> None:
    result = _vrp(args, tmp_path, VRP_TYPO="1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_api_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = _vrp(["api"], tmp_path, OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json")
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("vrp:")]
    assert len(ours) == 1
    assert "run `vrp db upgrade`" in ours[0]


def test_db_upgrade_then_current_reports_up_to_date(tmp_path: Path) -> None:
    upgraded = _vrp(["db", "upgrade"], tmp_path, OTEL_SDK_DISABLED="true")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "var" / "vrp.db").exists()
    current = _vrp(["db", "current"], tmp_path, OTEL_SDK_DISABLED="true")
    assert current.returncode == 0
    assert "up to date" in current.stdout


def test_unwritable_log_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log folder should be")
    result = _vrp(["db", "upgrade"], tmp_path, VRP_LOG_DIR=str(blocker / "log"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("vrp: invalid configuration: cannot write logs to")


def _records(stderr: str) -> tuple[list[dict[str, object]], list[str]]:
    """Split stderr into JSON log records and the other lines (the CLI's own messages)."""
    records, others = [], []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            others.append(line)
    return records, others


HEAVY_MODULES = ("waitress", "flask", "opentelemetry.sdk", "sqlalchemy", "alembic", "recorder.api")


def _imported(args: list[str], cwd: Path, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` running ``vrp args`` in a fresh interpreter imported."""
    probe = (
        "import sys\n"
        "from recorder.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"sys.stderr.write(repr([m for m in {modules!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=_env(), capture_output=True, text=True
    )
    return ast.literal_eval(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["db", "--help"], ["api", "--help"]])
def test_help_imports_no_heavy_module(tmp_path: Path, args: list[str]) -> None:
    assert _imported(args, tmp_path, HEAVY_MODULES) == []


def test_db_current_imports_no_server_and_no_telemetry_sdk(tmp_path: Path) -> None:
    server_side = ("waitress", "flask", "opentelemetry.sdk", "recorder.api")
    assert _imported(["db", "current"], tmp_path, server_side) == []


def test_log_level_accepts_any_case(tmp_path: Path) -> None:
    result = _vrp(
        ["db", "upgrade"],
        tmp_path,
        OTEL_SDK_DISABLED="true",
        VRP_LOG_FORMAT="json",
        VRP_LOG_LEVEL="warning",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database schema at revision")
    records, _ = _records(result.stderr)
    assert not [r for r in records if r["level"] in ("DEBUG", "INFO")]


def test_db_current_names_a_missing_database_file_and_creates_nothing(tmp_path: Path) -> None:
    result = _vrp(["db", "current"], tmp_path, VRP_DATABASE_URL="sqlite:///data/sub/vrp.db")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"vrp: no database at {tmp_path / 'data' / 'sub' / 'vrp.db'}: "
        "run `vrp db upgrade` to create it"
    ]
    assert list(tmp_path.iterdir()) == []


def test_db_current_on_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    result = _vrp(["db", "current"], tmp_path, VRP_DATABASE_URL="sqlite:///var")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"vrp: {tmp_path / 'var'} is a folder, not a database file: "
        "point VRP_DATABASE_URL at a file"
    ]
    assert list((tmp_path / "var").iterdir()) == []


def test_db_current_leaves_an_existing_database_as_it_was(tmp_path: Path) -> None:
    assert _vrp(["db", "upgrade"], tmp_path, OTEL_SDK_DISABLED="true").returncode == 0
    folder = tmp_path / "var"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    result = _vrp(["db", "current"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _free_servers() -> list[str]:
    """Free ports for ``vrp up``'s servers, so that no test depends on the defaults."""
    return ["--port", str(_closed_port()), "--dashboard-port", str(_closed_port())]


def _assert_unreachable_line(
    result: subprocess.CompletedProcess[str], url: str, cause: str
) -> None:
    assert result.returncode == 1
    _, lines = _records(result.stderr)
    assert len(lines) == 1, result.stderr
    shown = url.replace("s3cret-pw", "***")
    assert lines[0].startswith(f"vrp: cannot reach the database {shown}: "), lines
    assert cause in lines[0]


@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"], ["api"], ["up"]])
def test_unreachable_database_is_one_line_without_password(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"postgresql://vrp:s3cret-pw@127.0.0.1:{_closed_port()}/vrp"
    args = command + _free_servers() if command == ["up"] else command
    result = _vrp(
        args, tmp_path, OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json", VRP_DATABASE_URL=url
    )
    _assert_unreachable_line(result, url, "Connection refused")
    logged = "".join(p.read_text() for p in tmp_path.rglob("*.log"))
    assert "s3cret-pw" not in result.stderr + result.stdout + logged


@pytest.mark.parametrize("command", [["db", "current"], ["api"]])
def test_database_server_that_never_answers_times_out_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    with _listening_socket() as silent:  # accepts connections, never says a word
        url = f"postgresql://vrp:s3cret-pw@127.0.0.1:{silent.getsockname()[1]}/vrp"
        result = _vrp(
            command, tmp_path, OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json", VRP_DATABASE_URL=url
        )
    _assert_unreachable_line(result, url, "timeout expired")


@pytest.mark.parametrize("command", [["db", "upgrade"], ["api"]])
def test_sqlite_folder_that_cannot_be_created_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "blocker").write_text("a file where the database folder should be")
    result = _vrp(
        command,
        tmp_path,
        OTEL_SDK_DISABLED="true",
        VRP_LOG_FORMAT="json",
        VRP_DATABASE_URL="sqlite:///blocker/vrp.db",
    )
    assert result.returncode == 1
    _, lines = _records(result.stderr)
    assert len(lines) == 1
    assert lines[0].startswith("vrp: cannot reach the database sqlite:///")
    assert "blocker" in lines[0]


class _Server:
    """A ``vrp`` server process whose stderr is read line by line in the background."""

    def __init__(self, args: list[str], cwd: Path, **env: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", *args],
            cwd=cwd,
            env=_env(OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json", **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def listening_url(self, timeout: float = 60) -> str:
        """The URL of the first "listening" record; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            line = self.lines.get(timeout=left)
            if line is None:
                break
            seen.append(line)
            message = str(json.loads(line).get("message", "")) if line.startswith("{") else ""
            if message.startswith("API listening on "):
                return message.removeprefix("API listening on ")
        pytest.fail(f"no listening line; stderr: {''.join(seen)[-2000:]}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        finally:
            self.process.kill()


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    assert _vrp(["db", "upgrade"], tmp_path, OTEL_SDK_DISABLED="true").returncode == 0
    return tmp_path


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_port_option_wins_over_environment_and_is_bound_when_logged(migrated: Path) -> None:
    with _listening_socket() as taken:
        server = _Server(
            ["api", "--host", "127.0.0.1", "--port", "0"],
            migrated,
            VRP_API_PORT=str(taken.getsockname()[1]),
        )
        try:
            url = server.listening_url()
            port = int(url.rsplit(":", 1)[1])
            assert url.startswith("http://127.0.0.1:")
            assert port not in (0, taken.getsockname()[1])
            # The line is logged after the bind: the first request needs no retry.
            with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
                assert response.status == 200
        finally:
            server.stop()


def test_port_from_environment_still_works(migrated: Path) -> None:
    with _listening_socket() as probe:
        port = probe.getsockname()[1]
    server = _Server(["api"], migrated, VRP_API_PORT=str(port))
    try:
        assert server.listening_url() == f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["api", "up"])
def test_port_in_use_is_one_line_and_exit_1(migrated: Path, command: str) -> None:
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        extra = ["--dashboard-port", str(_closed_port())] if command == "up" else []
        result = _vrp(
            [command, "--port", str(port), *extra],
            migrated,
            OTEL_SDK_DISABLED="true",
            VRP_LOG_FORMAT="json",
        )
    assert result.returncode == 1
    records, lines = _records(result.stderr)
    assert lines == [
        f"vrp: cannot listen on 127.0.0.1:{port}: address already in use (pick another with --port)"
    ]
    assert not [r for r in records if "listening" in str(r.get("message"))]


def test_the_access_record_of_the_last_request_is_written_when_the_api_is_stopped(
    migrated: Path,
) -> None:
    # The access records are queued for VRP_LOG_FLUSH_MS (far longer here than the test takes):
    # SIGTERM writes them out before the process ends.
    server = _Server(["api", "--port", "0"], migrated, VRP_LOG_FLUSH_MS="10000")
    try:
        url = server.listening_url()
        with urllib.request.urlopen(f"{url}/api/recordings", timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()

    assert server.process.returncode == 0
    records = [
        json.loads(line)
        for path in migrated.rglob("*.log")
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert any(record.get("url.path") == "/api/recordings" for record in records), records[-3:]


def test_the_api_collects_its_young_generation_less_often_once_it_serves(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instrumentation import serving
    from recorder import cli

    thresholds: list[tuple[int, int, int]] = []

    class Server:
        effective_host, effective_port = "127.0.0.1", 5000

        def run(self) -> None:
            thresholds.append(gc.get_threshold())

    monkeypatch.setattr(serving, "create_server", lambda app, *limits, **options: Server())
    before = gc.get_threshold()
    try:
        cli._serve_api(settings, db)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()

    assert thresholds == [(cli.API_GC_YOUNG_THRESHOLD, before[1], before[2])]
