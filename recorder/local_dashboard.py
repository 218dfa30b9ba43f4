"""A command run by hand next to ``vrp up`` reports to its dashboard, as ``vrp up``'s children do.

``vrp up`` hands its children the dashboard's address (:func:`recorder.supervisor.otlp_env`);
a ``vrp backup run`` typed in another shell has nobody to do that, so its run would never reach
the Backups page. When no OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_*ENDPOINT``), the
backup commands export to the dashboard's address (``VRP_DASHBOARD_HOST`` and
``VRP_DASHBOARD_PORT``, loopback for an any-address bind: ``http://127.0.0.1:8050`` by
default), but only when something accepts a TCP connection there within a short timeout:
with no dashboard running, exporting would only add retries and warnings to a command whose
work has nothing to do with telemetry, so it exports nothing, as before. The same holds for a
dashboard that wants a token this command does not know (a ``vrp up`` that made its own):
every export would be refused, so none is tried unless ``VRP_DASHBOARD_TOKEN`` (or
``OTEL_EXPORTER_OTLP_HEADERS``) is set.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Final

from dashboard.errors import DashboardConfigError
from dashboard.settings import load_dashboard_settings
from recorder.config import Settings
from recorder.supervisor import OTLP_ENDPOINT_VARIABLES, loopback_if_any

# Loopback answers (or refuses) at once; this bounds the wait on an address that drops packets.
PROBE_TIMEOUT_SECONDS: Final = 0.25


def listening_endpoint(host: str, port: int) -> str | None:
    """``http://host:port`` when something accepts a connection there, else None."""
    address = loopback_if_any(host)
    try:
        with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_SECONDS):
            pass
    except OSError:
        return None
    shown = f"[{address}]" if ":" in address else address
    return f"http://{shown}:{port}"


def refuses_anonymous_telemetry(endpoint: str) -> bool:
    """Whether the OTLP receiver at ``endpoint`` answers 401 to an empty, tokenless export.

    An empty body holds no record: nothing is written, and a request without a token is not
    counted as a wrong guess (:mod:`dashboard.attempts`).
    """
    probe = urllib.request.Request(
        f"{endpoint}/v1/logs",
        data=b"",
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(probe, timeout=PROBE_TIMEOUT_SECONDS):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False  # the exporter will report what goes wrong, as for any endpoint


def with_local_dashboard(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` exporting to the local dashboard when no endpoint is configured and one
    is listening; otherwise ``settings`` unchanged."""
    env = os.environ if environ is None else environ
    telemetry = settings.telemetry
    if (
        telemetry.disabled
        or telemetry.otlp_endpoint
        or any(env.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES)
    ):
        return settings
    try:
        dashboard = load_dashboard_settings(env)
    except DashboardConfigError:
        return settings  # refused with one line before any command runs (recorder.cli)
    endpoint = listening_endpoint(dashboard.host, dashboard.port)
    if endpoint is None:
        return settings
    headers = dict(telemetry.otlp_headers)
    own_headers = bool(env.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip())
    if dashboard.token and not own_headers:
        headers["Authorization"] = f"Bearer {dashboard.token}"
    elif not own_headers and refuses_anonymous_telemetry(endpoint):
        return settings
    telemetry = dataclasses.replace(telemetry, otlp_endpoint=endpoint, otlp_headers=headers)
    return dataclasses.replace(settings, telemetry=telemetry)
