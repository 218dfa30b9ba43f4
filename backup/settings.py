"""Settings of the backup package: the ``VRP_BACKUP_*`` variables, validated once.

:func:`load_backup_settings` reads the environment (or a mapping handed in), validates every
``VRP_BACKUP_*`` variable with marshmallow, refuses unknown ones (a typo must not be ignored),
and resolves relative paths against the working folder once, here. It raises
:class:`~backup.errors.BackupConfigError` with one line naming the variable, the value and what
is allowed. The database URL and the audio folder are not backup settings: they belong to the
application, whose command line hands them in (see :class:`backup.run.BackupSource`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

import marshmallow as ma
from marshmallow import fields, validate

from backup.errors import BackupConfigError
from instrumentation.envsettings import invalid_setting_line
from instrumentation.paths import absolute_path

PREFIX = "VRP_BACKUP_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_EVERY = re.compile(r"every\s+(?:(\d+)\s+)?(minute|hour|day)s?")
_DAILY = re.compile(r"daily\s+at\s+(\d{1,2}):(\d{2})")
SCHEDULE_FORMS = "'every N minutes', 'every N hours', 'every N days' or 'daily at HH:MM'"
_REMOTE_URL = re.compile(r"(?:sftp://[^/?#]{1,512}/|file:///|s3://[^/?#]{1,255})[^?#]{0,4096}")
REMOTE_FORMS = "sftp://user@host[:port]/path, file:///path or s3://bucket/prefix"


@dataclass(frozen=True)
class Schedule:
    """When the scheduler runs a backup.

    ``kind="interval"``: every ``interval``; ``kind="daily"``: once a day at ``at`` (local
    time, as the ``schedule`` library reads it). ``period`` is the longest normal gap between
    two runs, which the scheduler uses to decide whether the last success is overdue.
    """

    kind: Literal["interval", "daily"]
    interval: timedelta | None = None
    at: time | None = None
    text: str = ""

    @property
    def period(self) -> timedelta:
        return self.interval if self.interval is not None else timedelta(days=1)

    def __str__(self) -> str:
        return self.text


def parse_schedule(text: str) -> Schedule:
    """Parse ``every 6 hours``, ``every 30 minutes``, ``every day``, ``daily at 02:00``."""
    normalised = " ".join(text.strip().lower().split())
    every = _EVERY.fullmatch(normalised)
    if every:
        count = int(every.group(1) or 1)
        if count < 1:
            raise ValueError(f"the interval must be at least 1 {every.group(2)}")
        interval = timedelta(seconds=count * _UNITS[every.group(2)])
        return Schedule(kind="interval", interval=interval, text=normalised)
    daily = _DAILY.fullmatch(normalised)
    if daily:
        hour, minute = int(daily.group(1)), int(daily.group(2))
        if hour > 23 or minute > 59:
            raise ValueError("the time of day must be between 00:00 and 23:59")
        return Schedule(
            kind="daily", at=time(hour, minute), text=f"daily at {hour:02d}:{minute:02d}"
        )
    raise ValueError(f"not a schedule; use {SCHEDULE_FORMS}")


@dataclass(frozen=True)
class BackupSettings:
    """Validated backup settings. ``backup_dir`` is absolute.

    ``init_if_missing`` is True when ``VRP_BACKUP_DIR`` was not set: the default folder of a
    checkout (``var/backups``) is made a repository on first use, so that a newcomer needs no
    step; a folder named on purpose must be one already (``vrp backup init``).
    """

    backup_dir: Path = Path("var/backups")
    schedule: Schedule = Schedule(kind="daily", at=time(2, 0), text="daily at 02:00")
    keep_last: int = 7
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    compression_level: int = 3
    verify_after_run: bool = True
    prune_after_run: bool = True
    check_rotation: int = 7
    init_if_missing: bool = False
    remote: RemoteSettings | None = None


@dataclass(frozen=True)
class RemoteSettings:
    """The offsite copy (``VRP_BACKUP_REMOTE_*``); see :mod:`backup.remote`.

    ``url`` may hold a password: show it only through :func:`instrumentation.urls.shown_url`.
    The key files are paths (absolute); their content is read when a command needs it, never
    taken from the command line. ``copy_after_run`` defaults to on once a remote is set.
    """

    url: str
    recipients_file: Path | None = None
    identity_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts: Path | None = None
    timeout: float = 30.0
    concurrency: int = 4
    copy_after_run: bool = True
    keep_last: int = 7
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 12


class _Bool(fields.Boolean):
    truthy = set(_TRUE)
    falsy = set(_FALSE)


class _ScheduleField(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Schedule:
        try:
            return parse_schedule(str(value))
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from exc


def _count(default: int) -> fields.Integer:
    return fields.Integer(load_default=default, validate=validate.Range(min=0, max=10_000))


class BackupSettingsSchema(ma.Schema):
    """The ``VRP_BACKUP_*`` variables, by variable name."""

    class Meta:
        unknown = ma.RAISE

    VRP_BACKUP_DIR = fields.String(load_default="var/backups", validate=validate.Length(1))
    VRP_BACKUP_SCHEDULE = _ScheduleField(load_default=parse_schedule("daily at 02:00"))
    VRP_BACKUP_KEEP_LAST = fields.Integer(
        load_default=7, validate=validate.Range(min=1, max=10_000)
    )
    VRP_BACKUP_KEEP_DAILY = _count(7)
    VRP_BACKUP_KEEP_WEEKLY = _count(4)
    VRP_BACKUP_KEEP_MONTHLY = _count(6)
    VRP_BACKUP_COMPRESSION_LEVEL = fields.Integer(
        load_default=3, validate=validate.Range(min=1, max=22)
    )
    VRP_BACKUP_VERIFY = _Bool(load_default=True)
    VRP_BACKUP_PRUNE = _Bool(load_default=True)
    # The scheduler's periodic check reads 1/N of the archive after each run: all of it every
    # N runs (a week of daily runs by default).
    VRP_BACKUP_CHECK_ROTATION = fields.Integer(
        load_default=7, validate=validate.Range(min=1, max=10_000)
    )
    # The offsite copy: a URL (sftp://, file://, s3://) and the files holding its keys.
    VRP_BACKUP_REMOTE = fields.String(
        load_default=None, validate=validate.Regexp(_REMOTE_URL, error=REMOTE_FORMS)
    )
    VRP_BACKUP_REMOTE_RECIPIENTS_FILE = fields.String(load_default=None)
    VRP_BACKUP_REMOTE_IDENTITY_FILE = fields.String(load_default=None)
    VRP_BACKUP_REMOTE_SSH_KEY_FILE = fields.String(load_default=None)
    VRP_BACKUP_REMOTE_KNOWN_HOSTS = fields.String(load_default=None)
    VRP_BACKUP_REMOTE_TIMEOUT = fields.Float(
        load_default=30.0, validate=validate.Range(min=0.1, max=3600)
    )
    # Objects a copy sends at once (each held in memory while it is encrypted and sent).
    VRP_BACKUP_REMOTE_CONCURRENCY = fields.Integer(
        load_default=4, validate=validate.Range(min=1, max=32)
    )
    VRP_BACKUP_REMOTE_COPY = _Bool(load_default=True)
    VRP_BACKUP_REMOTE_KEEP_LAST = fields.Integer(
        load_default=7, validate=validate.Range(min=1, max=10_000)
    )
    VRP_BACKUP_REMOTE_KEEP_DAILY = _count(14)
    VRP_BACKUP_REMOTE_KEEP_WEEKLY = _count(8)
    VRP_BACKUP_REMOTE_KEEP_MONTHLY = _count(12)


_SCHEMA = BackupSettingsSchema()


def load_backup_settings(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> BackupSettings:
    """Validate the ``VRP_BACKUP_*`` variables; raise BackupConfigError naming the first bad one."""
    env = os.environ if environ is None else environ
    raw = {
        name: value
        for name, value in env.items()
        if name.startswith(PREFIX) and value.strip() != ""
    }
    try:
        data = _SCHEMA.load(raw)
    except ma.ValidationError as exc:
        line = invalid_setting_line(exc, raw)
        raise BackupConfigError(line) from None
    backup_dir = absolute_path(data["VRP_BACKUP_DIR"], cwd)
    return BackupSettings(
        backup_dir=backup_dir,
        schedule=data["VRP_BACKUP_SCHEDULE"],
        keep_last=data["VRP_BACKUP_KEEP_LAST"],
        keep_daily=data["VRP_BACKUP_KEEP_DAILY"],
        keep_weekly=data["VRP_BACKUP_KEEP_WEEKLY"],
        keep_monthly=data["VRP_BACKUP_KEEP_MONTHLY"],
        compression_level=data["VRP_BACKUP_COMPRESSION_LEVEL"],
        verify_after_run=data["VRP_BACKUP_VERIFY"],
        prune_after_run=data["VRP_BACKUP_PRUNE"],
        check_rotation=data["VRP_BACKUP_CHECK_ROTATION"],
        init_if_missing="VRP_BACKUP_DIR" not in raw,
        remote=_remote(data, cwd),
    )


def _remote(data: dict[str, Any], cwd: Path | None) -> RemoteSettings | None:
    if data["VRP_BACKUP_REMOTE"] is None:
        return None

    def path(name: str) -> Path | None:
        value = data[name]
        return None if value is None else absolute_path(value, cwd)

    return RemoteSettings(
        url=data["VRP_BACKUP_REMOTE"],
        recipients_file=path("VRP_BACKUP_REMOTE_RECIPIENTS_FILE"),
        identity_file=path("VRP_BACKUP_REMOTE_IDENTITY_FILE"),
        ssh_key_file=path("VRP_BACKUP_REMOTE_SSH_KEY_FILE"),
        known_hosts=path("VRP_BACKUP_REMOTE_KNOWN_HOSTS"),
        timeout=data["VRP_BACKUP_REMOTE_TIMEOUT"],
        concurrency=data["VRP_BACKUP_REMOTE_CONCURRENCY"],
        copy_after_run=data["VRP_BACKUP_REMOTE_COPY"],
        keep_last=data["VRP_BACKUP_REMOTE_KEEP_LAST"],
        keep_daily=data["VRP_BACKUP_REMOTE_KEEP_DAILY"],
        keep_weekly=data["VRP_BACKUP_REMOTE_KEEP_WEEKLY"],
        keep_monthly=data["VRP_BACKUP_REMOTE_KEEP_MONTHLY"],
    )
