"""VRP_BACKUP_* settings: validated once, one line naming the variable, paths made absolute."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from backup.errors import BackupConfigError
from backup.settings import load_backup_settings, parse_schedule


def test_defaults_resolve_the_folder_against_the_working_folder(tmp_path: Path) -> None:
    settings = load_backup_settings({}, cwd=tmp_path)
    assert settings.backup_dir == tmp_path / "var" / "backups"
    assert settings.schedule.kind == "daily" and settings.schedule.at == time(2, 0)
    assert (settings.keep_last, settings.keep_daily, settings.keep_weekly) == (7, 7, 4)
    assert settings.keep_monthly == 6 and settings.compression_level == 3
    assert settings.verify_after_run and settings.prune_after_run


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("every 6 hours", timedelta(hours=6)),
        ("every 30 minutes", timedelta(minutes=30)),
        ("Every  1 hour", timedelta(hours=1)),
        ("every day", timedelta(days=1)),
        ("daily at 02:00", timedelta(days=1)),
        ("daily at 23:59", timedelta(days=1)),
    ],
)
def test_schedules_parse_into_a_period(text: str, period: timedelta) -> None:
    assert parse_schedule(text).period == period


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("VRP_BACKUP_SCHEDULE", "weekly", "not a schedule"),
        ("VRP_BACKUP_SCHEDULE", "daily at 25:00", "between 00:00 and 23:59"),
        ("VRP_BACKUP_SCHEDULE", "every 0 hours", "at least 1"),
        ("VRP_BACKUP_COMPRESSION_LEVEL", "23", "less than or equal to 22"),
        ("VRP_BACKUP_KEEP_LAST", "0", "greater than or equal to 1"),
        ("VRP_BACKUP_VERIFY", "maybe", "boolean"),
        ("VRP_BACKUP_REMOTE_CONCURRENCY", "0", "greater than or equal to 1"),
        ("VRP_BACKUP_REMOTE_CONCURRENCY", "33", "less than or equal to 32"),
        ("VRP_BACKUP_KEPP_DAILY", "3", "unknown setting"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    name: str, value: str, problem: str
) -> None:
    with pytest.raises(BackupConfigError) as raised:
        load_backup_settings({name: value})
    message = str(raised.value)
    shown = f"{name}: " if problem == "unknown setting" else f"{name}={value!r}: "
    assert message.startswith(shown)
    assert problem in message
    assert "\n" not in message
