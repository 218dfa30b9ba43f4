"""Raw-socket clients for the server-limit tests: slow senders and idle-connection floods.

They speak HTTP/1.1 by hand on real sockets, so a test can measure what an HTTP library hides:
how many body bytes left the client before the server answered or closed the connection.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 64 * 1024


@dataclass
class Answer:
    """What a slow sender got: the body bytes it sent before the answer, and the answer."""

    sent: int
    status: int | None
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return None, {}, raw
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def send_slowly(
    port: int,
    head: str,
    *,
    chunked: bool = False,
    give_up_after: int,
    pause: float = 0.005,
) -> Answer:
    """Send ``head``, then body bytes in 64 KiB pieces (chunks when ``chunked``), ``pause`` s
    apart, until the server answers or closes, or ``give_up_after`` bytes have gone out."""
    sent = 0
    raw = b""
    piece = b"\0" * CHUNK
    if chunked:
        piece = f"{CHUNK:x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        while sent < give_up_after:
            readable, _, _ = select.select([sock], [], [], pause)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        try:
            sock.settimeout(10)
            while chunk := sock.recv(65536):
                raw += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status, headers, body = _parse(raw)
    return Answer(sent, status, headers, body)


def request_head(method: str, path: str, **headers: str | int) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@contextmanager
def idle_flood(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections, each having sent half a request line and nothing more."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            # Past the server's connection limit, connections wait in the listen backlog.
            sock.connect_ex(("127.0.0.1", port))
            sockets.append(sock)
        select.select([], sockets, [], 5)
        for sock in sockets:
            with suppress(OSError):
                sock.send(b"GET /heal")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server has closed (end of stream or reset)."""
    readable, _, _ = select.select(sockets, [], [], 0.5)
    closed = 0
    for sock in readable:
        try:
            closed += sock.recv(1024) == b""
        except OSError:
            closed += 1
    return closed


def timed_get(port: int, path: str, timeout: float = 30) -> tuple[int | None, float]:
    """The status of ``GET path`` on a new connection and the seconds it took."""
    started = time.monotonic()
    raw = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_head("GET", path).encode())
        try:
            while chunk := sock.recv(65536):
                raw += chunk
        except TimeoutError:
            pass
    status, _, _ = _parse(raw)
    return status, time.monotonic() - started


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), VRP_LOG_FORMAT="json", OTEL_SDK_DISABLED="true", **extra)
    return env


@contextmanager
def vrp_server(args: list[str], cwd: Path, port: int, **env: str) -> Iterator[int]:
    """``vrp <args> --port <port>`` in a subprocess, up once ``/healthz`` answers; SIGTERM'd."""
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", *args, "--port", str(port)],
        cwd=cwd,
        env=clean_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"vrp {args[0]} exited: {process.stderr.read()}")
            try:
                if timed_get(port, "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"vrp {args[0]} did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            process.kill()
