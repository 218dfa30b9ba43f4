"""Requests built to make the log redaction backtrack do not stop a running ``vrp api``.

Every access record carries the request's User-Agent and path, and the redaction of its log
line runs regular expressions over them while holding the GIL: one that backtracks
exponentially or quadratically on them would hold every thread of the process, ``/healthz``
included. The server here is a real ``vrp api`` process on a free port; the hostile requests go
out on their own threads while ``/healthz`` is asked again and again.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEALTH_DEADLINE = 1.0
# A key the redaction masks, an open quote, then backslashes: with a backslash matched two ways
# the cost doubled every two characters (40 held the GIL for seconds, 60 for hours).
BACKSLASHES = "\\" * 64
HOSTILE_HEADERS = {
    "User-Agent": f"'token': '{BACKSLASHES}",
    "X-Request-ID": f'password="{BACKSLASHES}',
}
# Percent-encoded: the path the app sees (and logs) holds the decoded characters.
HOSTILE_TARGETS = [
    "/api/recordings/%27token%27%3A%20%27" + "%5C" * 64,
    "/api/recordings?token=%22" + "%5C" * 64 + "&password=%27" + "%5C" * 64,
    "/api/recordings/Key%20(" * 2_000,
]
# Long runs that a scan from every start position made quadratic (well within the 256 KiB of
# headers waitress accepts).
HOSTILE_USER_AGENTS = [
    "a." * 40_000 + "@://",
    "Key (a)=(" * 8_000 + "=",
    "[parameters: " * 8_000,
    "token='" + "\\" * 64,
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), OTEL_SDK_DISABLED="true", VRP_LOG_FORMAT="json")
    return env


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A migrated ``vrp api`` on a free port: (host, port)."""
    vrp = [sys.executable, "-m", "recorder.cli"]
    subprocess.run([*vrp, "db", "upgrade"], cwd=tmp_path, env=_env(), check=True, timeout=120)
    process = subprocess.Popen(
        [*vrp, "api", "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            message = str(json.loads(line).get("message", "")) if line.startswith("{") else ""
            if message.startswith("API listening on http://"):
                host, port = message.removeprefix("API listening on http://").rsplit(":", 1)
                threading.Thread(target=process.stderr.read, daemon=True).start()
                yield host, int(port)
                break
        else:
            pytest.fail("vrp api ended before listening")
    finally:
        process.kill()
        process.wait()


def _send(address: tuple[str, int], target: str, headers: dict[str, str]) -> None:
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        connection.request("GET", target, headers=headers)
        connection.getresponse().read()
    except OSError:
        pass  # the server may refuse what it likes; only its health matters here
    finally:
        connection.close()


def _health_seconds(address: tuple[str, int]) -> float:
    """How long ``/healthz`` took to answer 200 (infinity past five times the deadline)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(*address, timeout=HEALTH_DEADLINE * 5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    except TimeoutError:
        return float("inf")
    finally:
        connection.close()
    return time.monotonic() - started


def test_healthz_keeps_answering_while_hostile_requests_are_logged(
    api: tuple[str, int],
) -> None:
    requests = [(target, HOSTILE_HEADERS) for target in HOSTILE_TARGETS]
    requests += [("/api/recordings", {"User-Agent": agent}) for agent in HOSTILE_USER_AGENTS]
    requests += [("/healthz", HOSTILE_HEADERS)]
    senders = [
        threading.Thread(target=_send, args=(api, target, headers), daemon=True)
        for target, headers in requests
    ]
    for sender in senders:
        sender.start()

    waits = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        waits.append(_health_seconds(api))
        time.sleep(0.1)
    for sender in senders:
        sender.join(timeout=10)

    assert max(waits) < HEALTH_DEADLINE, [round(wait, 3) for wait in waits]
    assert not [sender for sender in senders if sender.is_alive()]
    assert _health_seconds(api) < HEALTH_DEADLINE
