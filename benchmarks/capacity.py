"""Capacity under load: requests per second of ``vrp api`` with full telemetry against none.

Run ``.venv/bin/python benchmarks/capacity.py`` (``--quick`` for a smoke run of a few seconds).

What is measured
    Two ``vrp api`` processes (waitress, real HTTP on 127.0.0.1), each on its own SQLite file
    (WAL) and blob folder, started once and warmed up:

    * ``on``: what an operator runs - telemetry exported over OTLP/HTTP to the local sink
      (``benchmarks/sink.py``, a separate process), every trace sampled, JSON logs at INFO to
      the log file and to stderr (sent to ``/dev/null``);
    * ``off``: ``OTEL_SDK_DISABLED=true`` and ``VRP_LOG_LEVEL=WARNING``.

    ``--workers N`` adds ``on-wN`` and ``off-wN``: the same two under gunicorn with N worker
    processes (``vrp api --workers N``, each worker with ``VRP_API_THREADS`` threads), and
    prints what N workers serve against one (waitress) and ``on / off`` at N workers. The
    server's CPU is then the master's and its workers' together.

    ``--breakdown`` adds two servers that show where ``on``'s cost lies: ``nolog``, ``on``
    with logs at WARNING (no access records), and ``nospans``, ``on`` with
    ``OTEL_TRACES_SAMPLER=always_off`` (no spans; metrics and access records as ``on``). Each
    exporting server has a sink of its own, so the counts printed are its own.

    A phase saturates one server with 16 client threads, each running the recorder mix in a
    loop - create (multipart upload of a 0.1 s WAV, unique per upload), get, list
    (``page_size=20``), update (PATCH with ``If-Match``) - on a keep-alive connection, for 15 s.
    ``--mix read`` runs the list request alone instead, on the rows the warm-up created: what
    more workers gain where SQLite's one writer at a time does not bound the mix.
    Phases alternate (on, off, on, off, ...; ``--pairs``, at least two), so that a change in
    machine load hits both alike. Per configuration the figure is completed requests per
    second, summed over its phases; ``on / off`` is the capacity kept with telemetry switched
    on. Unlike per-request medians, it counts everything the server's CPU does for a request,
    the export threads' encoding included (protobuf encoding holds the interpreter lock).

    The clients run in this process and share the machine with the servers, the same for both
    configurations. Any answer other than the expected status counts as an error and is
    reported; a run with errors is not a measurement of capacity. The exit status is 0 either
    way: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.overhead import (
    _free_port,
    _isolate_environment,
    make_wav,
    running_sink,
    sink_stats,
    unique_payload,
)

CONFIGURATIONS = ("on", "off")
BREAKDOWN = ("on", "nolog", "nospans", "off")
CLIENT_THREADS = 16
PHASE_SECONDS = 15.0
TARGET_ON_OFF = 0.80
WORKERS_SUFFIX = "-w"
MIXES = ("recorder", "read")
VRP = Path(sys.executable).with_name("vrp")


@dataclass(frozen=True)
class Plan:
    threads: int
    phase_seconds: float
    pairs: int
    warmup_seconds: float
    configurations: tuple[str, ...] = CONFIGURATIONS
    workers: int = 1
    mix: str = "recorder"


def parse_plan(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        description="Requests per second of vrp api with full telemetry against none."
    )
    parser.add_argument(
        "--threads", type=int, default=CLIENT_THREADS, help="client threads (default 16)"
    )
    parser.add_argument(
        "--seconds", type=float, default=PHASE_SECONDS, help="length of a phase (default 15)"
    )
    parser.add_argument(
        "--pairs", type=int, default=2, help="on/off phase pairs, at least 2 (default 2)"
    )
    parser.add_argument("--quick", action="store_true", help="short phases, for a smoke check")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="add on without access records (nolog) and on without spans (nospans)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run on and off under gunicorn with this many workers (default 1: not)",
    )
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="recorder",
        help="recorder: create, get, list, update (default); read: list only, after a warm-up "
        "that creates rows with the recorder mix",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    configurations = BREAKDOWN if args.breakdown else CONFIGURATIONS
    if args.workers > 1:
        configurations += tuple(f"{name}{WORKERS_SUFFIX}{args.workers}" for name in CONFIGURATIONS)
    if args.quick:
        return Plan(args.threads, 1.5, 2, 0.5, configurations, args.workers, args.mix)
    if args.threads < 1 or args.seconds <= 0 or args.pairs < 2:
        parser.error("--threads and --seconds must be positive, --pairs at least 2")
    return Plan(args.threads, args.seconds, args.pairs, 3.0, configurations, args.workers, args.mix)


def _workers_of(name: str) -> tuple[str, int]:
    """(``on``/``off``/..., workers) of a configuration's name (``on-w2`` is on at 2)."""
    base, _, workers = name.partition(WORKERS_SUFFIX)
    return base, int(workers) if workers else 1


# --- the servers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    log_dir: Path
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server process and its live children (gunicorn's
        workers) used so far (Linux ``/proc``), else None."""
        ticks = 0
        found = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process ended while we looked
            # After the name: state, ppid, ...; utime and stime are the 14th and 15th fields of
            # the line, in clock ticks.
            if int(stat.parent.name) == self.pid or int(fields[1]) == self.pid:
                ticks += int(fields[11]) + int(fields[12])
                found = found or int(stat.parent.name) == self.pid
        return ticks / os.sysconf("SC_CLK_TCK") if found else None


def _environment(name: str, directory: Path, sink: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VRP_")}
    env.update(
        {
            "VRP_DATABASE_URL": f"sqlite:///{directory / 'vrp.db'}",
            "VRP_STORAGE_DIR": str(directory / "recordings"),
            "VRP_LOG_DIR": str(directory / "log"),
            "VRP_LOG_FORMAT": "json",
            "OTEL_SERVICE_NAME": f"vrp-api-capacity-{name}",
        }
    )
    base, _ = _workers_of(name)
    if base == "off":
        env.update({"VRP_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"})
        return env
    env.update(
        {
            "VRP_LOG_LEVEL": "WARNING" if base == "nolog" else "INFO",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        }
    )
    if base == "nospans":
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    return env


@contextmanager
def running_server(name: str, root: Path, sink: str) -> Iterator[Server]:
    """``vrp db upgrade`` then ``vrp api`` on a free port; yields once it answers /healthz."""
    directory = root / name
    directory.mkdir()
    env = _environment(name, directory, sink)
    subprocess.run([str(VRP), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    workers = str(_workers_of(name)[1])
    process = subprocess.Popen(
        [str(VRP), "api", "--host", "127.0.0.1", "--port", str(port), "--workers", workers],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(process, port)
        yield Server(name, port, directory / "log", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"vrp api exited with status {process.returncode} on start-up")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"vrp api did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.1)


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients of one phase did, merged under a lock at the end of each thread."""

    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, requests: int, errors: int, error: str | None, latencies: list[float]) -> None:
        with self.lock:
            self.requests += requests
            self.errors += errors
            self.first_error = self.first_error or error
            self.latencies_ms.extend(latencies)


class Client:
    """One client thread's keep-alive connection running the recorder mix."""

    def __init__(self, port: int, base_payload: bytes, serial_base: int) -> None:
        self._port = port
        self._payload = base_payload
        self._serial = serial_base
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.requests = 0
        self.errors = 0
        self.error: str | None = None
        self.latencies: list[float] = []

    def _call(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], expect: int
    ) -> tuple[bytes, http.client.HTTPResponse] | None:
        started = time.perf_counter()
        try:
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
            self._fail(f"{method} {path}: {exc!r}")
            return None
        self.latencies.append((time.perf_counter() - started) * 1000)
        self.requests += 1
        if response.status != expect:
            self._fail(f"{method} {path} answered {response.status}: {data[:200]!r}")
            return None
        return data, response

    def _fail(self, error: str) -> None:
        self.errors += 1
        self.error = self.error or error

    def cycle(self, mix: str = "recorder") -> None:
        if mix == "read":
            self._call("GET", "/api/recordings?page_size=20", None, {}, 200)
            return
        self._serial += 1
        boundary = uuid.uuid4().hex
        body = _multipart(boundary, unique_payload(self._payload, self._serial))
        created = self._call(
            "POST",
            "/api/recordings",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            201,
        )
        if created is None:
            return
        path = f"/api/recordings/{json.loads(created[0])['id']}"
        fetched = self._call("GET", path, None, {}, 200)
        if fetched is None:
            return
        etag = fetched[1].getheader("ETag") or ""
        self._call("GET", "/api/recordings?page_size=20", None, {}, 200)
        title = json.dumps({"title": f"renamed {self._serial}"}).encode()
        self._call(
            "PATCH",
            path,
            title,
            {"Content-Type": "application/json", "If-Match": etag},
            200,
        )

    def close(self) -> None:
        self._connection.close()


def _multipart(boundary: str, audio: bytes) -> bytes:
    out = io.BytesIO()
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'.encode())
    out.write(b"capacity\r\n")
    out.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="capacity.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
    )
    out.write(audio)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue()


_serials = iter(range(1, 1 << 62, 1 << 32))


def run_phase(
    server: Server, plan: Plan, seconds: float, payload: bytes, mix: str = "recorder"
) -> tuple[Tally, float, float | None]:
    """``plan.threads`` clients cycling on ``server`` until ``seconds`` have passed.

    Returns the tally, the phase's wall time (up to the last client's last answer) and the CPU
    seconds the server used meanwhile (None where that cannot be read).
    """
    tally = Tally()
    stop = threading.Event()
    start = threading.Barrier(plan.threads + 1)

    def work(serial_base: int) -> None:
        client = Client(server.port, payload, serial_base)
        start.wait()
        try:
            while not stop.is_set():
                client.cycle(mix)
        finally:
            client.close()
            tally.merge(client.requests, client.errors, client.error, client.latencies)

    threads = [
        threading.Thread(target=work, args=(next(_serials),), name=f"client-{number}")
        for number in range(plan.threads)
    ]
    for thread in threads:
        thread.start()
    cpu_before = server.cpu_seconds()
    start.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = server.cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return tally, elapsed, cpu


# --- report ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    first_error: str | None = None
    phase_rates: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    cpu_seconds: float | None = 0.0

    def add(self, tally: Tally, seconds: float, cpu: float | None) -> None:
        self.cpu_seconds = (
            None if cpu is None or self.cpu_seconds is None else self.cpu_seconds + cpu
        )
        self.requests += tally.requests
        self.seconds += seconds
        self.errors += tally.errors
        self.first_error = self.first_error or tally.first_error
        self.phase_rates.append(tally.requests / seconds)
        self.latencies_ms.extend(tally.latencies_ms)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        if self.cpu_seconds is None or not self.requests:
            return float("nan")
        return self.cpu_seconds * 1000 / self.requests


def report(
    results: dict[str, Result], plan: Plan, sinks: dict[str, dict[str, dict[str, int | None]]]
) -> None:
    print(
        f"\nvrp api over HTTP, {plan.threads} client threads running the {plan.mix} mix, "
        f"{len(results['on'].phase_rates)} phases of {plan.phase_seconds:.1f} s per "
        "configuration, alternating"
    )
    print(
        f"{'config':<8}{'requests':>9}{'req/s':>9}{'phases req/s':>30}{'p50 ms':>8}"
        f"{'server CPU ms/req':>19}{'errors':>8}"
    )
    for result in results.values():
        phases = " ".join(f"{rate:.1f}" for rate in result.phase_rates)
        p50 = statistics.median(result.latencies_ms) if result.latencies_ms else float("nan")
        print(
            f"{result.name:<8}{result.requests:>9}{result.rate:>9.1f} {phases:>29}"
            f"{p50:>8.1f}{result.cpu_ms_per_request:>19.2f}{result.errors:>8}"
        )
    for result in results.values():
        if result.first_error:
            print(f"  first error ({result.name}): {result.first_error}")
    ratio = results["on"].rate / results["off"].rate if results["off"].rate else float("nan")
    verdict = "PASS" if ratio >= TARGET_ON_OFF else "MISS"
    print(f"\ncapacity on / off{ratio:>9.3f}  >= {TARGET_ON_OFF}  {verdict}")
    # The machine's speed drifts over minutes; a pair's two phases run back to back, so the
    # spread of the pairs' ratios shows how much of the result is that drift.
    pairs = [
        on / off
        for on, off in zip(results["on"].phase_rates, results["off"].phase_rates, strict=True)
        if off
    ]
    if pairs:
        print(
            "each pair, on / off  "
            + " ".join(f"{pair:.3f}" for pair in pairs)
            + f"  (median {statistics.median(pairs):.3f})"
        )
    for name, sink in sinks.items():
        traces, logs = sink["traces"], sink["logs"]
        print(
            f"sink received {traces['items']} spans and {logs['items']} log records from {name} "
            f"({results[name].requests} requests)"
        )
        if name != "nolog" and (logs["items"] or 0) < results[name].requests:
            print(
                "  fewer log records than requests: access records were held back instead of "
                "exported, so this run did not measure their full cost"
            )
    if plan.workers > 1:
        _report_workers(results, plan.workers)
    others = [name for name in results if name in BREAKDOWN and name not in CONFIGURATIONS]
    if others and results["off"].rate:
        print(
            "breakdown, each / off  "
            + "  ".join(f"{name} {results[name].rate / results['off'].rate:.3f}" for name in others)
        )


def _report_workers(results: dict[str, Result], workers: int) -> None:
    on, off = results[f"on{WORKERS_SUFFIX}{workers}"], results[f"off{WORKERS_SUFFIX}{workers}"]
    print(
        f"\nat {workers} workers (gunicorn), capacity on / off"
        f"{on.rate / off.rate if off.rate else float('nan'):>9.3f}"
    )
    for name, many in (("on", on), ("off", off)):
        one = results[name].rate
        ratio = many.rate / one if one else float("nan")
        print(
            f"{workers} workers / 1 (waitress), {name:<3}{ratio:>9.3f}"
            f"  ({many.rate:.1f} against {one:.1f} req/s)"
        )


def main(argv: list[str] | None = None) -> int:
    plan = parse_plan(argv)
    _isolate_environment()
    payload = make_wav()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    results = {name: Result(name) for name in plan.configurations}
    with ExitStack() as stack:
        # One sink per exporting server, so that each one's counts are its own.
        endpoints = {
            name: stack.enter_context(running_sink())
            for name in plan.configurations
            if _workers_of(name)[0] != "off"
        }
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vrp-capacity-")))
        servers = {
            name: stack.enter_context(running_server(name, root, endpoints.get(name, "")))
            for name in plan.configurations
        }
        for server in servers.values():
            run_phase(server, plan, plan.warmup_seconds, payload)
        for pair in range(plan.pairs):
            for name in plan.configurations:
                tally, seconds, cpu = run_phase(
                    servers[name], plan, plan.phase_seconds, payload, plan.mix
                )
                results[name].add(tally, seconds, cpu)
            print(f"\rpair {pair + 1}/{plan.pairs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        time.sleep(1.5)  # the servers' batch processors export what the last phase queued
        report(results, plan, {name: sink_stats(url) for name, url in endpoints.items()})
    load_after = os.getloadavg()[0]
    print(
        f"\ntook {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs; 1-minute load "
        f"average {load_before:.2f} before, {load_after:.2f} after (the run itself keeps the "
        "CPUs busy: compare with other runs only when the 'before' figure was low)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
