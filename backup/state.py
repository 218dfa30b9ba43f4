"""The scheduler's state file: what it did last and what it will do next.

One JSON file in the backup folder (``scheduler-state.json``), rewritten after every step of
the scheduler and read by ``vrp backup status``. It is written atomically (a temporary file in
the same folder, fsynced, renamed over the old one, the folder fsynced), so a reader never sees
half a file and a crash leaves the previous state. It records, never decides: the catalog (the
manifests on disk) stays the truth about which backups exist.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from backup.errors import BackupError
from backup.files import write_atomic
from backup.repository import unusable

STATE_FILE = "scheduler-state.json"
_TIMES = (
    "started_at",
    "updated_at",
    "last_run_started_at",
    "last_run_ended_at",
    "last_success_at",
    "next_run_at",
)


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler's last known state. Times are tz-aware UTC.

    ``status`` is ``starting``, ``running`` (a backup is in progress), ``idle`` (waiting for the
    next run) or ``stopped`` (the process ended cleanly). ``last_outcome`` is ``success``,
    ``failed`` or ``skipped`` (another process held the run lock).
    """

    pid: int
    schedule: str
    status: str
    started_at: datetime
    updated_at: datetime
    last_run_id: str | None = None
    last_run_trigger: str | None = None
    last_run_started_at: datetime | None = None
    last_run_ended_at: datetime | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    next_run_at: datetime | None = None

    def evolve(self, **changes: Any) -> SchedulerState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _TIMES:
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchedulerState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


def unusable_dir_error(backup_dir: Path, exc: OSError) -> BackupError:
    """One line saying that the backup folder cannot be used, and what to do about it."""
    return unusable(backup_dir, exc)


def state_path(backup_dir: Path) -> Path:
    return backup_dir / STATE_FILE


def read_state(backup_dir: Path) -> SchedulerState | None:
    """The state the last scheduler wrote, or None when no scheduler ever ran on this folder."""
    path = state_path(backup_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return SchedulerState.from_json(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise BackupError(
            f"the scheduler state file {path} is unreadable ({exc}); delete it, the next "
            "scheduler step writes it again"
        ) from exc


def write_state(backup_dir: Path, state: SchedulerState) -> None:
    """Replace the state file atomically (mode 0600). The folder is never created: a missing
    one is an unmounted backup disk, and the scheduler's report must not hide it."""
    payload = json.dumps(state.to_json(), indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_atomic(state_path(backup_dir), payload)
