"""The process supervisor behind ``vrp up``: run the stack's servers as child processes.

Each :class:`Child` is a name, a command line and the environment variables it gets on top of
ours; ``vrp up`` lists its children in one place (adding one is one line). :func:`run`

* starts them in order, each in its own session so that a Ctrl-C in the terminal reaches only
  us and every child is stopped once, the same way; after a child that serves others (its
  ``ready`` address: the dashboard, which receives everyone's telemetry) it waits, at most
  ``ready_timeout`` seconds, until that address accepts connections, so that the next children
  do not begin with export errors;
* forwards SIGTERM, SIGINT and SIGHUP (the terminal closed) to every child as SIGTERM and waits
  for them, in reverse start order: the children started after a ``ready`` wait stop first, so
  that their last telemetry still reaches the dashboard, which stops last (every child gets
  ``stop_timeout`` seconds);
* stops all when one exits on its own: the stack is one unit, a half-running one only hides
  the failure;
* returns 0 when it was asked to stop and every child stopped cleanly, and non-zero when a
  child failed (its exit status, or 1 when it was killed by a signal we did not send).

A child that ignores SIGTERM for ``stop_timeout`` seconds is killed. If the supervisor itself is
killed with SIGKILL, nothing can forward that signal: on Linux every child asks the kernel for a
SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so no server outlives ``vrp up``; elsewhere
the children are left running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import quote

from dashboard.cli import is_loopback, new_token

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 20.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# <linux/prctl.h>: deliver a signal to this process when its parent thread exits.
PR_SET_PDEATHSIG = 1
OTLP_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


@dataclass(frozen=True)
class Child:
    """One server of the stack; ``ready`` is the ``(host, port)`` the next children need."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: tuple[str, int] | None = None


@dataclass
class _Running:
    child: Child
    process: subprocess.Popen[bytes]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when the supervisor dies (Linux).

    libc is loaded here, before the fork: the function run in the child between fork and exec
    only makes a system call. The parent may already be gone by then, so the child checks that
    it still has the parent that forked it and stops itself otherwise.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((loopback_if_any(host), port), timeout=POLL_SECONDS):
            return True
    except OSError:
        return False


def _clean_stop(returncode: int) -> bool:
    """Exit statuses of a child that stopped because we sent it SIGTERM."""
    return returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


class Supervisor:
    """Starts, watches and stops a fixed set of children; see the module doc."""

    def __init__(
        self,
        children: Sequence[Child],
        base_env: Mapping[str, str],
        *,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> None:
        self._children = list(children)
        self._base_env = dict(base_env)
        self._stop_timeout = stop_timeout
        self._ready_timeout = ready_timeout
        self._stop_requested = threading.Event()
        self._running: list[_Running] = []
        # The running children in start order, cut after each child waited on (``ready``).
        self._waves: list[list[_Running]] = [[]]

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Ask :meth:`run` to stop every child (what the signal handlers call)."""
        self._stop_requested.set()

    def run(self) -> int:
        """Run until asked to stop or until a child exits; the exit status for ``vrp up``."""
        previous = {signum: signal.signal(signum, self.request_stop) for signum in _FORWARDED}
        try:
            for child in self._children:
                if self._stop_requested.is_set():
                    break
                self._start(child)
                if child.ready is not None:
                    self._await_ready(child, *child.ready)
                    self._waves.append([])
            failed = self._watch()
            self._stop_all()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._status(failed)

    def _start(self, child: Child) -> None:
        # A child is this interpreter running `vrp` (recorder.cli._vrp), never user input
        process = subprocess.Popen(  # nosec B603
            list(child.argv),
            env={**self._base_env, **child.env},
            start_new_session=True,
            # preexec_fn is unsafe only if it takes a lock another thread held at the fork;
            # this one makes two system calls and touches no lock.
            preexec_fn=_die_with_parent(),
        )
        logger.info("started %s (pid %d)", child.name, process.pid)
        running = _Running(child, process)
        self._running.append(running)
        self._waves[-1].append(running)

    def _await_ready(self, child: Child, host: str, port: int) -> None:
        """Wait until ``host:port`` accepts, the child exits, a stop is asked or time is up.

        Past the timeout the next children start anyway (their exporters retry): a slow
        machine gets a slow start, not a failed one.
        """
        process = self._running[-1].process
        deadline = time.monotonic() + self._ready_timeout
        while not _accepts(host, port):
            if process.poll() is not None or self._stop_requested.is_set():
                return  # _watch reports the exit; the stop needs nothing more
            if time.monotonic() >= deadline:
                logger.warning(
                    "%s does not accept connections on %s:%d after %.0f s; starting the others",
                    child.name,
                    host,
                    port,
                    self._ready_timeout,
                )
                return
            time.sleep(POLL_SECONDS)

    def _watch(self) -> _Running | None:
        """Wait for a stop request (None) or for the first child to exit (that child)."""
        while not self._stop_requested.wait(POLL_SECONDS):
            for running in self._running:
                if running.process.poll() is not None:
                    logger.error(
                        "%s exited with status %d; stopping the others",
                        running.child.name,
                        running.process.returncode,
                    )
                    return running
        return None

    def _stop_all(self) -> None:
        for wave in reversed(self._waves):
            self._stop_wave(wave)

    def _stop_wave(self, wave: list[_Running]) -> None:
        alive = [r for r in wave if r.process.poll() is None]
        for running in alive:
            running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        for running in alive:
            try:
                running.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s did not stop within %.0f s of SIGTERM; killing it",
                    running.child.name,
                    self._stop_timeout,
                )
                running.process.kill()
                running.process.wait()
        for running in alive:
            logger.info("%s stopped (status %d)", running.child.name, running.process.returncode)

    def _status(self, failed: _Running | None) -> int:
        if failed is not None:
            code = failed.process.returncode
            return code if code > 0 else 1
        dirty = [r for r in self._running if not _clean_stop(r.process.returncode)]
        for running in dirty:
            logger.error(
                "%s ended with status %d while stopping",
                running.child.name,
                running.process.returncode,
            )
        return 1 if dirty else 0


def run(children: Sequence[Child], base_env: Mapping[str, str]) -> int:
    """Run ``children`` under a :class:`Supervisor`; the exit status for the command."""
    return Supervisor(children, base_env).run()


def otlp_env(environ: Mapping[str, str], host: str, port: int, token: str | None) -> dict[str, str]:
    """The variables that make a child export its telemetry to the dashboard at ``host:port``.

    Nothing when the operator configured an OTLP endpoint (a collector, say): theirs wins. A
    dashboard bound to every address (``0.0.0.0``, ``::``) is reached on loopback. With a
    token, the bearer header goes along unless ``OTEL_EXPORTER_OTLP_HEADERS`` is set.
    """
    if any(environ.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES):
        return {}
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(host, port)}
    if token and not environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip():
        # The variable's values are URL-encoded (OpenTelemetry specification).
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{quote(token)}"
    return env


def stack_token(environ: Mapping[str, str], token: str | None, host: str) -> str | None:
    """The dashboard token of a ``vrp up`` stack: ``token`` when one is configured, else a new
    one for a dashboard on loopback when :func:`otlp_env` can hand it to the exporters (no OTLP
    endpoint or headers of the operator's), else None.

    With a token, the dashboard's limiter refuses only wrong tokens, so another local user cannot
    lock the stack's own telemetry out (:mod:`dashboard.attempts`). None is left for a collector
    in between (it would not know a token made here) and for a dashboard on a public address,
    which refuses to start without a token the operator chose.
    """
    if token:
        return token
    configured = (*OTLP_ENDPOINT_VARIABLES, "OTEL_EXPORTER_OTLP_HEADERS")
    if any(environ.get(name, "").strip() for name in configured) or not is_loopback(host):
        return None
    return new_token()


def otlp_endpoint(host: str, port: int) -> str:
    """``http://host:port`` of a dashboard bound to ``host`` (loopback for every address)."""
    host = loopback_if_any(host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def loopback_if_any(host: str) -> str:
    """The address that reaches a server bound to ``host``: loopback for every address."""
    # "0.0.0.0" is compared here, never bound.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # nosec B104


def bind_error(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on right now (None when it can, or for port 0).

    ``vrp up`` asks before starting anything, so that a port in use is one line and no half
    stack; a child losing a race for the port later still stops the stack.
    """
    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As the servers do: a port left in TIME_WAIT by a previous run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None
