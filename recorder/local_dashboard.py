"""A command run by hand next to ``vrp up`` reports to *its* dashboard, and to no other.

``vrp up`` hands its children the dashboard's address (:func:`recorder.supervisor.otlp_env`);
a ``vrp backup run`` typed in another shell has nobody to do that. ``vrp up`` therefore writes
``var/vrp-up.json`` in the folder it runs from (mode 0600: it holds the dashboard's token):
its pid, the dashboard's OTLP endpoint and token. A backup command with no OTLP endpoint
configured (``OTEL_EXPORTER_OTLP_*ENDPOINT``) exports there when that file exists in its own
working folder and the ``vrp up`` that wrote it still runs. Without either it exports nothing
and says so at DEBUG level: whatever listens on 127.0.0.1:8050 may be another checkout's
dashboard, and runs shown there would pass for that stack's backups.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from recorder.config import Settings
from recorder.supervisor import OTLP_ENDPOINT_VARIABLES

UP_STATE_FILE: Final = Path("var") / "vrp-up.json"


def up_state_path(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / UP_STATE_FILE


@contextmanager
def up_state(endpoint: str, token: str | None, cwd: Path | None = None) -> Iterator[Path]:
    """Announce a running ``vrp up`` (its pid, dashboard endpoint and token) for the body."""
    path = up_state_path(cwd)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"pid": os.getpid(), "otlp_endpoint": endpoint, "token": token}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_up(cwd: Path | None = None) -> tuple[str, str | None] | None:
    """``(endpoint, token)`` of the ``vrp up`` running from ``cwd``, or None."""
    try:
        doc = json.loads(up_state_path(cwd).read_text(encoding="utf-8"))
        pid, endpoint, token = int(doc["pid"]), str(doc["otlp_endpoint"]), doc.get("token")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return endpoint, (str(token) if token else None)


def with_local_dashboard(
    settings: Settings, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[Settings, str | None]:
    """``settings`` exporting to the dashboard of the ``vrp up`` running from this folder when
    no endpoint is configured; and, when it exports nowhere, the line saying why (for DEBUG)."""
    env = os.environ if environ is None else environ
    telemetry = settings.telemetry
    if (
        telemetry.disabled
        or telemetry.otlp_endpoint
        or any(env.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES)
    ):
        return settings, None
    found = running_up(cwd)
    if found is None:
        return settings, (
            "telemetry not exported: no OTLP endpoint is configured and no `vrp up` runs from "
            f"this folder ({up_state_path(cwd)})"
        )
    endpoint, token = found
    headers = dict(telemetry.otlp_headers)
    if token and not env.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip():
        headers["Authorization"] = f"Bearer {token}"
    telemetry = dataclasses.replace(telemetry, otlp_endpoint=endpoint, otlp_headers=headers)
    return dataclasses.replace(settings, telemetry=telemetry), None
