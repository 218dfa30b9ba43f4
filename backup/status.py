"""``vrp backup status``: the scheduler's state file and the newest backup, for people and scripts.

The state file says what the scheduler did last and plans next; the catalog says which backups
exist. Whether the scheduler still runs is judged from the pid it wrote: a state that says
``idle`` or ``running`` under a pid that is gone means the process died without stopping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backup.catalog import BackupInfo, Catalog
from backup.copies import LastCopy, read_copies
from backup.lock import other_process_running
from backup.repository import RepositoryError, open_repository
from backup.settings import BackupSettings
from backup.state import SchedulerState, read_state, unusable_dir_error
from instrumentation.urls import shown_url

_LIVE_STATUSES = ("starting", "running", "idle")


@dataclass(frozen=True)
class Status:
    backup_dir: str
    # The repository's id, or None with the reason the folder is not one (not an error here:
    # status reports, and says what is wrong).
    repository_id: str | None
    repository_problem: str | None
    state: SchedulerState | None
    scheduler_alive: bool
    backups: int
    newest: BackupInfo | None
    newest_verified: BackupInfo | None
    # The last copy to each remote this repository was copied to (from the local records:
    # status connects to no remote).
    offsite: tuple[LastCopy, ...] = ()
    # VRP_BACKUP_REMOTE, without credentials, when it is set.
    remote: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_dir": self.backup_dir,
            "repository_id": self.repository_id,
            "repository_problem": self.repository_problem,
            "scheduler": self.state.to_json() if self.state is not None else None,
            "scheduler_running": self.scheduler_alive,
            "backups": self.backups,
            "newest_backup": _backup_json(self.newest),
            "newest_verified_backup": _backup_json(self.newest_verified),
            "remote": self.remote,
            "offsite": [copy.to_json() for copy in self.offsite],
        }


def _backup_json(info: BackupInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "id": info.id,
        "created_at": info.created_at.isoformat(),
        "trigger": info.trigger,
        "verified": info.verified,
        "checked_at": info.checked_at.isoformat() if info.checked_at else None,
        "bytes": info.bytes,
    }


def read_status(settings: BackupSettings) -> Status:
    """Raises :class:`~backup.errors.BackupError` (one line) when the folder cannot be read."""
    try:
        state = read_state(settings.backup_dir)
        backups = Catalog(settings.backup_dir).list()
    except OSError as exc:  # a file where the folder should be, a folder we may not read
        raise unusable_dir_error(settings.backup_dir, exc) from exc
    repository_id, problem = None, None
    try:
        repository_id = open_repository(settings.backup_dir).id
    except RepositoryError as exc:
        problem = str(exc)
    verified = [b for b in backups if b.verified]
    alive = (
        state is not None
        and state.status in _LIVE_STATUSES
        and state.pid != os.getpid()
        and other_process_running(state.pid)
    )
    return Status(
        backup_dir=str(settings.backup_dir),
        repository_id=repository_id,
        repository_problem=problem,
        state=state,
        scheduler_alive=alive,
        backups=len(backups),
        newest=backups[-1] if backups else None,
        newest_verified=verified[-1] if verified else None,
        offsite=tuple(read_copies(settings.backup_dir)),
        remote=shown_url(settings.remote.url) if settings.remote is not None else None,
    )


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime, now: datetime) -> str:
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_status(status: Status, now: datetime | None = None) -> list[str]:
    """Plain lines for a terminal."""
    now = now or datetime.now(UTC)
    lines = [f"backup folder: {status.backup_dir}"]
    if status.repository_id is not None:
        lines.append(f"repository: {status.repository_id}")
    else:
        lines.append(f"repository: none: {status.repository_problem}")
    state = status.state
    if state is None:
        lines.append("scheduler: no scheduler has ever run here (start one with `vrp scheduler`)")
    else:
        if status.scheduler_alive:
            running = f"running (pid {state.pid}, {state.status})"
        elif state.status == "stopped":
            running = f"stopped (pid {state.pid} stopped cleanly)"
        else:
            running = f"not running (pid {state.pid} ended without stopping cleanly)"
        lines.append(f"scheduler: {running}, schedule {state.schedule!r}")
        if state.last_outcome is None:
            lines.append("last run: none yet")
        else:
            run = state.last_run_id or "(no backup)"
            lines.append(
                f"last run: {state.last_outcome}, {run}, started {_when(state.last_run_started_at)}"
                f", ended {_when(state.last_run_ended_at)}"
            )
            if state.last_error:
                lines.append(f"last error: {state.last_error}")
        if state.consecutive_failures:
            lines.append(f"failed runs in a row: {state.consecutive_failures}")
        if state.last_success_at is not None:
            lines.append(
                f"last success: {_when(state.last_success_at)} ({_ago(state.last_success_at, now)})"
            )
        if status.scheduler_alive and state.next_run_at is not None:
            lines.append(f"next run: {_when(state.next_run_at)} ({_ago(state.next_run_at, now)})")
    if status.newest is None:
        lines.append("backups: none")
    else:
        newest = status.newest
        lines.append(
            f"backups: {status.backups}; newest {newest.id} from {_when(newest.created_at)} "
            f"({_ago(newest.created_at, now)}, {_check_text(newest)})"
        )
        if status.newest_verified is not None and status.newest_verified is not newest:
            lines.append(f"newest verified: {status.newest_verified.id}")
    lines.extend(_offsite_lines(status, now))
    return lines


def _offsite_lines(status: Status, now: datetime) -> list[str]:
    """One line per remote: its newest copy's age, and when the last copy to it ended."""
    lines = []
    for copy in status.offsite:
        created = copy.newest_created_at
        if copy.newest_backup is None or created is None:
            newest = "holds no backup"
        else:
            newest = f"newest {copy.newest_backup} ({_ago(created, now)})"
        lines.append(
            f"offsite {copy.remote}: {newest}; last copy {_when(copy.copied_at)} "
            f"({_ago(copy.copied_at, now)})"
        )
    if status.remote is not None and all(c.remote != status.remote for c in status.offsite):
        lines.append(f"offsite {status.remote}: no copy yet (`vrp backup copy`, or the scheduler)")
    return lines


def _check_text(info: BackupInfo) -> str:
    """What the latest check of a backup says, with its date."""
    if info.checked_at is None:
        return "never verified"
    outcome = "verified" if info.verified else "FAILED its check"
    return f"{outcome} {_when(info.checked_at)}"
