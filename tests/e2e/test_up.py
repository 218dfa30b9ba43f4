"""``vrp up`` in a fresh, empty folder serves the API over real HTTP, as the README promises.

Nothing but free ports is configured: every path is the default relative one (``var/...``),
which is what a newcomer runs, and what the unit tests (all on absolute ``tmp_path`` folders)
never exercised. The stack is stopped with SIGTERM, as an operator or a supervisor would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.recorder.fixtures import make_wav

# The console script installed next to the interpreter running the tests.
VRP = Path(sys.executable).with_name("vrp")
START_SECONDS = 60
STOP_SECONDS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    base: str
    workdir: Path


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then wait; whatever is left of the process group is killed after a timeout."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Stack, Path]:
    """``vrp up`` in a fresh folder, once its API answers; its output goes to the Path."""
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    api_port, dashboard_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(VRP_API_PORT=str(api_port), VRP_DASHBOARD_PORT=str(dashboard_port))
    output = tmp_path / "vrp-up.out"
    with output.open("wb") as sink:
        # A session of its own: vrp up may start child processes, and a test that fails must
        # be able to stop all of them.
        process = subprocess.Popen(
            [str(VRP), "up"],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            pytest.fail(f"vrp up did not come up: {output.read_text()[-3000:]}")
        time.sleep(0.1)
    return process, Stack(base, workdir), output


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[Stack]:
    process, stack, output = _start(tmp_path)
    try:
        yield stack
    finally:
        status = _stop(process)
    assert status == 0, output.read_text()[-3000:]


def test_vrp_up_stopped_by_sigterm_exits_0_and_leaves_no_write_ahead_log(
    tmp_path: Path,
) -> None:
    process, stack, output = _start(tmp_path)
    try:
        for serial in range(20):
            payload = make_wav(seconds=2.0, freq=220 + serial)
            created = requests.post(
                f"{stack.base}/api/recordings",
                files={"file": (f"take-{serial}.wav", payload, "audio/wav")},
                data={"title": f"take {serial}", "tags": "work"},
                timeout=10,
            )
            assert created.status_code == 201, created.text
        wal = stack.workdir / "var" / "vrp.db-wal"
        assert wal.stat().st_size > 0  # the commits wait in the log while the API runs
    finally:
        status = _stop(process)

    log = output.read_text()
    assert status == 0, log[-3000:]
    assert "api stopped (status 0)" in log
    assert not wal.exists() or wal.stat().st_size == 0


def test_vrp_up_with_defaults_stores_and_serves_audio(running_stack: Stack) -> None:
    payload = make_wav(seconds=1.5)
    created = requests.post(
        f"{running_stack.base}/api/recordings",
        files={"file": ("some.wav", payload, "application/octet-stream")},
        data={"title": "hello"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert created.json()["duration_seconds"] == 1.5
    assert created.headers["X-Request-ID"]
    audio_url = f"{running_stack.base}/api/recordings/{created.json()['id']}/audio"

    full = requests.get(audio_url, timeout=10)
    assert (full.status_code, full.content) == (200, payload)
    assert full.headers["Content-Type"] == "audio/wav"
    partial = requests.get(audio_url, headers={"Range": "bytes=100-1099"}, timeout=10)
    head = requests.head(audio_url, timeout=10)
    unchanged = requests.get(audio_url, headers={"If-None-Match": full.headers["ETag"]}, timeout=10)

    assert (partial.status_code, partial.content) == (206, payload[100:1100])
    assert partial.headers["Content-Range"] == f"bytes 100-1099/{len(payload)}"
    assert (head.status_code, head.headers["Content-Length"]) == (200, str(len(payload)))
    assert unchanged.status_code == 304
    assert requests.get(f"{running_stack.base}/readyz", timeout=5).status_code == 200
    var = running_stack.workdir / "var"
    assert (var / "vrp.db").is_file()
    assert [p.name for p in (var / "recordings").rglob("*") if p.is_file() and len(p.name) == 64]
    assert list((var / "log").glob("*.log")), "the API writes JSON logs under var/log"


def test_vrp_up_creates_every_file_for_its_user_only(running_stack: Stack) -> None:
    # The test process's own umask (022 as a rule) is what vrp up inherits: it must not matter.
    created = requests.post(
        f"{running_stack.base}/api/recordings",
        files={"file": ("some.wav", make_wav(seconds=0.5), "application/octet-stream")},
        data={"title": "private"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    var = running_stack.workdir / "var"
    expected = [
        var / "vrp.db",
        var / "vrp.db-wal",
        var / "telemetry.db",
        *(var / "log").glob("*.log"),
        *(var / "recordings").rglob("*"),
    ]
    assert {"vrp-api.log", "vrp-dashboard.log"} <= {path.name for path in expected}

    modes = {
        str(path.relative_to(var)): oct(path.stat().st_mode & 0o777)
        for path in [var, *expected, *var.glob("*-wal"), *var.glob("*-shm")]
    }

    assert modes == {name: "0o700" if (var / name).is_dir() else "0o600" for name in modes}, modes
