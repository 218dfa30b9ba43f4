"""The stack `make test-deploy` started: docker-compose commands and where its services listen.

``docker/test-deploy.sh`` exports ``COMPOSE_PROJECT_NAME`` and ``COMPOSE_FILE`` (the file
``render`` wrote), so a plain ``docker-compose`` here talks to that stack. The ports are the
ones docker/compose.ci.yaml gives the services on the host network.

``python -m tests.deploy.stack render OUT`` writes docker/compose.yaml with docker/compose.ci.yaml
on top, as ``docker-compose config`` merges them, less the ports compose.yaml publishes: on the
host network there is nothing to publish, and docker-compose 1.x refuses a service that has both
(an override can add to a list, not empty it).
``python -m tests.deploy.stack wait-healthy`` waits for the API and the dashboard containers to
report healthy (their ``HEALTHCHECK``), failing when one exits or the time is up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
API_URL = "http://127.0.0.1:15000"
DASHBOARD_URL = "http://127.0.0.1:18050"
POSTGRES_URL = "postgresql://vrp@127.0.0.1:15432"
HEALTHY_SERVICES = ("api", "dashboard")


class StackError(Exception):
    """The stack did not do what the deployment test needs (a service down, a command failed)."""


def compose(*args: str, timeout: float = 300) -> str:
    """Run ``docker-compose ARGS`` on the stack; its stdout, or StackError with its stderr."""
    result = subprocess.run(
        ["docker-compose", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"docker-compose {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def vrp(*args: str, service: str = "scheduler", timeout: float = 300) -> str:
    """Run ``vrp ARGS`` inside a running service's container (its environment, its volumes)."""
    return compose("exec", "-T", service, "vrp", *args, timeout=timeout)


def _state(service: str) -> dict:
    container = compose("ps", "-q", service).strip()
    if not container:
        raise StackError(f"the {service} service has no container")
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{json .State}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def wait_healthy(timeout: float = 180, services: tuple[str, ...] = HEALTHY_SERVICES) -> None:
    """Return once every one of ``services`` reports healthy; StackError if one stops or the
    time runs out (naming the unhealthy ones and their last health check output)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {name: _state(name) for name in services}
        stopped = [name for name, state in states.items() if not state["Running"]]
        if stopped:
            raise StackError(f"stopped: {', '.join(stopped)} (see docker-compose logs)")
        waiting = {
            name: state.get("Health", {})
            for name, state in states.items()
            if state.get("Health", {}).get("Status") != "healthy"
        }
        if not waiting:
            return
        if time.monotonic() > deadline:
            detail = {
                name: (health.get("Log") or [{}])[-1].get("Output", "").strip()[-300:]
                for name, health in waiting.items()
            }
            raise StackError(f"not healthy after {timeout:.0f}s: {detail}")
        time.sleep(1)


def render(out: Path) -> None:
    """Write the CI stack's compose file to ``out`` (0600: it holds the dashboard's token)."""
    merged = yaml.safe_load(
        compose("-f", "docker/compose.yaml", "-f", "docker/compose.ci.yaml", "config")
    )
    for service in merged["services"].values():
        if service.get("network_mode") == "host":
            service.pop("ports", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_text(yaml.safe_dump(merged, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait-healthy", help="wait for the api and dashboard healthchecks")
    wait.add_argument("--timeout", type=float, default=180)
    out = sub.add_parser("render", help="write the CI stack's compose file")
    out.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            render(args.out)
            return 0
        wait_healthy(args.timeout)
    except StackError as e:
        sys.stderr.write(f"stack: {e}\n")
        return 1
    sys.stdout.write("stack: api and dashboard are healthy\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
