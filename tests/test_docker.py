"""What can be checked of ``docker/`` without a Docker engine.

``make test-deploy`` (tests/deploy/) builds the images and runs the stack; these tests need no
engine and fail fast on what would otherwise surface only there, or only on a user's machine
(the Collector and the official images are not run in CI): the files parse, every command they
run is a real ``vrp`` command with real options, every service's environment passes the same
validation the process runs at start-up, the ports agree across the Dockerfile, the compose
file and the collector, and CI's override changes the images, the networking (each service on
its own port) and the backup schedule, nothing else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from backup.settings import load_backup_settings
from dashboard.settings import load_dashboard_settings
from recorder.cli import main
from recorder.config import load_settings

DOCKER = Path(__file__).resolve().parent.parent / "docker"
ROOT = DOCKER.parent
# compose's `${NAME:?message}` interpolation, resolved as if the operator had set NAME (to a
# value long enough for a token: 32 characters, as `openssl rand -hex 16` prints).
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::\?[^}]*)?\}")
_SECRET = "compose-secret-0123456789abcdef0123"


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    text = _INTERPOLATION.sub(_SECRET, (DOCKER / name).read_text())
    return yaml.safe_load(text)


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _app_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _services().items()
        if service.get("command", [None])[0] == "vrp"
    }


def _resolve(args: list[str]) -> click.Context:
    """Parse ``args`` as the ``vrp`` console script would, down to the leaf command."""
    ctx = main.make_context("vrp", list(args[1:]))
    command: click.Command = main
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest and command.invoke_without_command:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _dockerfile_cmd() -> list[str]:
    line = next(
        line for line in (DOCKER / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    )
    return json.loads(line.removeprefix("CMD").strip())


def test_compose_and_collector_files_parse() -> None:
    assert {"api", "dashboard", "scheduler", "collector", "postgres"} <= set(_services())
    collector = yaml.safe_load((DOCKER / "otel-collector.yaml").read_text())
    for signal in ("traces", "metrics", "logs"):
        pipeline = collector["service"]["pipelines"][signal]
        assert "otlp" in pipeline["receivers"]
        assert "otlphttp/dashboard" in pipeline["exporters"]


@pytest.mark.parametrize("service", ["migrate", "backup-init", "api", "scheduler", "dashboard"])
def test_every_compose_command_is_a_real_vrp_command(service: str) -> None:
    command = _services()[service]["command"]
    ctx = _resolve(command)
    assert ctx.command.name == command[-1] or ctx.command.name in command


def test_dockerfile_default_command_is_a_real_vrp_command() -> None:
    ctx = _resolve(_dockerfile_cmd())
    assert ctx.command.name == "api"
    assert ctx.params["port"] == 5000


def test_dockerfile_copies_only_what_exists() -> None:
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            *sources, _target = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source


@pytest.mark.parametrize("service", ["migrate", "backup-init", "api", "scheduler", "dashboard"])
def test_every_service_environment_passes_start_up_validation(service: str) -> None:
    env = {name: str(value) for name, value in _services()[service]["environment"].items()}
    load_settings(env)
    load_dashboard_settings(env, cwd=Path("/srv/vrp"))
    load_backup_settings(env, cwd=Path("/srv/vrp"))


def test_ports_agree_across_dockerfile_compose_and_collector() -> None:
    services = _services()
    exposed = {
        int(port)
        for line in (DOCKER / "Dockerfile").read_text().splitlines()
        if line.startswith("EXPOSE")
        for port in line.split()[1:]
    }
    for name in ("api", "dashboard"):
        port = int(_option(services[name]["command"], "--port"))
        assert port in exposed
        published = {int(mapping.rsplit(":", 1)[1]) for mapping in services[name]["ports"]}
        assert published == {port}

    collector = yaml.safe_load((DOCKER / "otel-collector.yaml").read_text())
    receiver_port = int(
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].split(":")[1]
    )
    dashboard = urlsplit(collector["exporters"]["otlphttp/dashboard"]["endpoint"])
    assert dashboard.hostname == "dashboard"
    assert dashboard.port == int(_option(services["dashboard"]["command"], "--port"))
    for name, service in _app_services().items():
        endpoint = service["environment"].get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint is not None:
            target = urlsplit(endpoint)
            assert (target.hostname, target.port) == ("collector", receiver_port), name


def test_dashboard_binds_all_interfaces_only_with_a_token() -> None:
    dashboard = _services()["dashboard"]
    assert _option(dashboard["command"], "--host") == "0.0.0.0"
    assert dashboard["environment"]["VRP_DASHBOARD_TOKEN"]


def _dockerfile(name: str = "Dockerfile") -> list[str]:
    """The instructions of a Dockerfile, continuation lines joined."""
    return (DOCKER / name).read_text().replace("\\\n", " ").splitlines()


def test_dockerfile_takes_a_base_and_runs_as_a_non_root_user_with_a_readyz_healthcheck() -> None:
    lines = _dockerfile()
    assert lines.index(next(line for line in lines if line.startswith("ARG BASE="))) < next(
        i for i, line in enumerate(lines) if line.startswith("FROM")
    )
    assert "FROM ${BASE}" in lines
    assert any(line.startswith("USER vrp") for line in lines)
    assert "STOPSIGNAL SIGINT" in lines
    healthcheck = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "/readyz" in healthcheck and ":5000/" in healthcheck
    assert "postgresql-client-15" in (DOCKER / "Dockerfile").read_text()


def test_the_postgres_image_copies_only_what_exists() -> None:
    for line in _dockerfile("postgres.Dockerfile"):
        if line.startswith("COPY"):
            *sources, _target = line.split()[1:]
            for source in sources:
                assert (DOCKER / source).exists(), source


_CI_KEYS = {"image", "network_mode", "environment", "command", "healthcheck", "profiles"}


def test_the_ci_override_changes_images_networking_and_schedule_only() -> None:
    base, ci = _services(), _compose("compose.ci.yaml")["services"]
    assert set(ci) == set(base)
    assert ci["collector"] == {"profiles": ["collector"]}
    ports: dict[int, str] = {}
    for name, service in ci.items():
        if name == "collector":
            continue
        assert set(service) <= _CI_KEYS, name
        assert service["network_mode"] == "host"
        assert service["image"] in {"vrp:ci", "vrp-postgres:ci"}
        if "command" in service and service["command"][0] == "vrp":
            # The same command on a loopback port of its own.
            command, original = service["command"], base[name]["command"]
            assert _option(command, "--host") == "127.0.0.1"
            port = int(_option(command, "--port"))
            assert [a for a in command if a not in {"127.0.0.1", str(port)}] == [
                a for a in original if a not in {"0.0.0.0", _option(original, "--port")}
            ]
            ports[port] = name
    postgres = ci["postgres"]["command"]
    ports[int(next(a for a in postgres if a.startswith("port=")).split("=")[1])] = "postgres"
    assert set(ports).isdisjoint({5000, 8050, 5432}), ports
    assert len(ports) == 3


@pytest.mark.parametrize("service", ["migrate", "api", "scheduler", "dashboard"])
def test_every_ci_service_environment_passes_start_up_validation(service: str) -> None:
    merged = {
        **_services()[service]["environment"],
        **_compose("compose.ci.yaml")["services"][service].get("environment", {}),
    }
    env = {name: str(value) for name, value in merged.items()}
    load_settings(env)
    load_dashboard_settings(env, cwd=Path("/srv/vrp"))
    load_backup_settings(env, cwd=Path("/srv/vrp"))
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is not None and service != "dashboard":
        dashboard = _compose("compose.ci.yaml")["services"]["dashboard"]["command"]
        assert urlsplit(endpoint).port == int(_option(dashboard, "--port"))
