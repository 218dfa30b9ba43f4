"""Database URL settings through the real ``vrp``: one line, the right exit status, no secret.

A URL holds its password in the user info or in the query string (``?password=``, which libpq
honours); neither may reach the terminal or a log file. A URL that cannot be parsed is a bad
setting (exit 2, before anything starts); one the driver refuses only when it connects (a
``connect_timeout`` that is not a number, a server that is not there) is exit 1, one line too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _vrp(cwd: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    clean.update(PYTHONPATH=str(ROOT), OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json", **env)
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str], cwd: Path) -> str:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    logged = "".join(path.read_text() for path in cwd.rglob("*.log"))
    assert SECRET not in result.stdout + result.stderr + logged
    return lines[0]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param(f"postgresql://vrp:{SECRET}@[::1/vrp", "not a database URL", id="bracket"),
        pytest.param(
            f"postgresql://vrp@[::1/vrp?password={SECRET}", "not a database URL", id="query-pw"
        ),
        pytest.param(
            f"postgresql://vrp:{SECRET}@127.0.0.1:99999/vrp",
            "port 99999 is out of range",
            id="port",
        ),
    ],
)
@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("VRP_DATABASE_URL", ["db", "current"]),
        ("VRP_DATABASE_URL", ["api"]),
        ("VRP_DASHBOARD_STORE_URL", ["dashboard"]),
    ],
)
def test_a_malformed_url_is_one_line_exit_2_without_its_password(
    tmp_path: Path, variable: str, url: str, problem: str, command: list[str]
) -> None:
    result = _vrp(tmp_path, command, **{variable: url})

    line = _one_line(result, tmp_path)
    assert result.returncode == 2
    assert line.startswith(f"vrp: invalid configuration: {variable}='postgresql://"), line
    assert problem in line
    assert "***" in line


@pytest.mark.parametrize(
    "query",
    [f"password={SECRET}", f"sslpassword={SECRET}&password={SECRET}", "connect_timeout=notanint"],
)
@pytest.mark.parametrize("command", [["db", "current"], ["api"]])
def test_a_database_url_refused_when_connecting_is_one_line_exit_1_without_its_password(
    tmp_path: Path, query: str, command: list[str]
) -> None:
    url = f"postgresql://vrp:{SECRET}@127.0.0.1:{_closed_port()}/vrp?{query}"
    result = _vrp(tmp_path, command, VRP_DATABASE_URL=url)

    line = _one_line(result, tmp_path)
    assert result.returncode == 1
    assert line.startswith("vrp: cannot reach the database postgresql://vrp:***@127.0.0.1:"), line


@pytest.mark.parametrize("query", [f"password={SECRET}", "connect_timeout=notanint"])
def test_a_store_url_refused_when_connecting_is_one_line_exit_1_without_its_password(
    tmp_path: Path, query: str
) -> None:
    url = f"postgresql+psycopg://vrp:{SECRET}@127.0.0.1:{_closed_port()}/vrp?{query}"
    result = _vrp(
        tmp_path, ["dashboard", "--port", str(_closed_port())], VRP_DASHBOARD_STORE_URL=url
    )

    line = _one_line(result, tmp_path)
    assert result.returncode == 1
    assert line.startswith("vrp dashboard: cannot open the telemetry store postgresql+psycopg://")
    assert "vrp:***@127.0.0.1:" in line


def test_an_otlp_endpoint_refused_as_a_setting_is_shown_without_its_password(
    tmp_path: Path,
) -> None:
    result = _vrp(
        tmp_path, ["db", "current"], OTEL_EXPORTER_OTLP_ENDPOINT=f"ftp://vrp:{SECRET}@otel:4318"
    )

    line = _one_line(result, tmp_path)
    assert result.returncode == 2
    assert line == (
        "vrp: invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT='ftp://vrp:***@otel:4318': "
        "Not a valid URL."
    )
