"""Real ``vrp`` processes for the backup tests: the API as a client sees it, and the commands."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def vrp_env(**env: str) -> dict[str, str]:
    """The environment of a ``vrp`` process: none of ours, no telemetry export."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    clean.update(OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    clean.update(env)
    return clean


def vrp(
    args: list[str], cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=vrp_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ApiProcess:
    """``vrp api`` on a free port of 127.0.0.1, its stderr read in the background."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", "api", "--host", "127.0.0.1", "--port", "0"],
            cwd=cwd,
            env=vrp_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._listening_url()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def _listening_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            line = self.lines.get(timeout=left)
            if line is None:
                break
            self.seen.append(line)
            message = str(json.loads(line).get("message", "")) if line.startswith("{") else ""
            if message.startswith("API listening on "):
                return message.removeprefix("API listening on ")
        self.stop()
        raise RuntimeError(f"vrp api did not listen; stderr: {''.join(self.seen)[-2000:]}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        finally:
            self.process.kill()
