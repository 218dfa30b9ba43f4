"""The ``vrp up`` supervisor never leaves a server behind, even when it is killed outright."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.supervisor import otlp_env, stack_token

DRIVER = """
import logging, os, sys
from recorder import supervisor
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
children = [supervisor.Child("one", sleeper), supervisor.Child("two", sleeper)]
sys.exit(supervisor.run(children, dict(os.environ)))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that died but was not reaped yet (its parent is gone, init reaps it soon).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def _start_supervisor() -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    pids: list[int] = []
    assert proc.stderr is not None
    while len(pids) < 2:
        line = proc.stderr.readline()
        assert line, "the supervisor exited before starting its children"
        if found := re.search(r"started \w+ \(pid (\d+)\)", line):
            pids.append(int(found.group(1)))
    assert all(_alive(pid) for pid in pids)
    return proc, pids


def _assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children outlived their supervisor: {left}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_stop_when_the_supervisor_is_killed_with_sigkill() -> None:
    proc, pids = _start_supervisor()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _assert_all_gone(pids)


def test_a_closed_terminal_stops_the_children_and_the_supervisor_cleanly() -> None:
    proc, pids = _start_supervisor()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=20) == 0
    _assert_all_gone(pids)


# A server that listens only after a second; each child notes in a journal what it saw at start
# and when SIGTERM stopped it (the client after a short flush, as the API exports its last spans).
SERVER = """
import signal, socket, sys, time
def stop(*_):
    open(sys.argv[2], "a").write("server stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(1)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    listener.accept()[0].close()
"""
CLIENT = """
import signal, socket, sys, time
def stop(*_):
    time.sleep(0.3)
    open(sys.argv[2], "a").write("client stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
    open(sys.argv[2], "a").write("client connected\\n")
except OSError:
    open(sys.argv[2], "a").write("client refused\\n")
while True:
    time.sleep(1)
"""
ORDERED = """
import logging, os, sys
from recorder import supervisor
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
server, client, port, journal = sys.argv[1:]
children = [
    supervisor.Child("server", [sys.executable, "-c", server, port, journal],
                     ready=("127.0.0.1", int(port))),
    supervisor.Child("client", [sys.executable, "-c", client, port, journal]),
]
sys.exit(supervisor.run(children, dict(os.environ)))
"""


def test_later_children_start_once_the_ready_port_accepts_and_stop_before_it(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    journal = tmp_path / "journal"
    proc = subprocess.Popen(
        [sys.executable, "-c", ORDERED, SERVER, CLIENT, str(port), str(journal)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while "client" not in (journal.read_text() if journal.exists() else ""):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the client never started: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.communicate()[1][-2000:]
    assert journal.read_text().splitlines() == [
        "client connected",
        "client stopped",
        "server stopped",
    ]


def test_vrp_up_keeps_the_configured_dashboard_token() -> None:
    assert stack_token({}, "chosen-" + "t" * 32, "127.0.0.1") == "chosen-" + "t" * 32


def test_vrp_up_makes_a_token_of_its_own_for_a_dashboard_it_wires_on_loopback() -> None:
    token = stack_token({}, None, "127.0.0.1")
    assert token is not None and len(token) == 43
    assert stack_token({}, None, "127.0.0.1") != token
    headers = otlp_env({}, "127.0.0.1", 8050, token)["OTEL_EXPORTER_OTLP_HEADERS"]
    assert headers == f"Authorization=Bearer%20{token}"


@pytest.mark.parametrize(
    ("environ", "host"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "127.0.0.1"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-team=voice"}, "127.0.0.1"),
        ({}, "0.0.0.0"),
    ],
)
def test_vrp_up_makes_no_token_that_nobody_could_be_handed(
    environ: dict[str, str], host: str
) -> None:
    assert stack_token(environ, None, host) is None
