"""``vrp backup prune``, ``vrp backup status`` and ``vrp scheduler``.

The first two join the ``backup`` group of :mod:`backup.cli` (see :func:`register`); the
application mounts :data:`scheduler_command` next to its other servers. They use the same
:class:`~backup.commands.BackupHost` as the other backup commands. Only click and
:mod:`backup.commands` are imported at the top, so that ``vrp --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from backup.commands import CONFIG_EXIT, FAILURE_EXIT, SERVICE_NAME, host, repository, settings

if TYPE_CHECKING:
    from backup.prune import PruneResult
    from backup.settings import BackupSettings

SCHEDULER_SERVICE_NAME = "vrp-scheduler"


def _plan_lines(result: PruneResult) -> list[str]:
    plan = result.plan
    lines = [f"policy: {plan.policy}"]
    if not plan.decisions:
        lines.append("no backups")
    for decision in plan.decisions:
        backup = decision.backup
        lines.append(
            f"{decision.action:<6} {backup.id}  {backup.created_at:%Y-%m-%d %H:%M}  "
            f"{'verified' if backup.verified else 'unverified':<10}  {'; '.join(decision.reasons)}"
        )
    return lines


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and why; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def prune_command(dry_run: bool, as_json: bool) -> None:
    """Delete the backups the retention policy (VRP_BACKUP_KEEP_*) no longer keeps."""

    config = settings()
    repository(config)
    if dry_run:
        result = _prune(config, dry_run=True)
    else:
        source = host().source()  # validates the application's settings (exit 2 on a bad one)
        with host().process(SERVICE_NAME):
            result = _prune(config, dry_run=False, database_url=source.database_url)
    if as_json:
        from backup.json_output import dumps, prune_json

        click.echo(dumps(prune_json(result)))
        return
    for line in _plan_lines(result):
        click.echo(line)
    plan = result.plan
    if dry_run:
        click.echo(
            f"dry run: would delete {len(plan.deleted)} backup(s) and "
            f"{len(plan.blobs_to_delete)} unreferenced blob(s), keep {len(plan.kept)}; "
            "nothing was changed"
        )
    else:
        click.echo(
            f"deleted {len(result.deleted_backups)} backup(s) and {result.deleted_blobs} "
            f"unreferenced blob(s), freed {result.freed_bytes} bytes, kept {len(plan.kept)}"
        )


def _prune(
    config: BackupSettings, *, dry_run: bool, database_url: str | None = None
) -> PruneResult:
    """Plan or prune; exit 1 with one line when the folder or the lock cannot be used."""
    from backup.errors import BackupError
    from backup.prune import prune
    from backup.repository import unusable

    try:
        return prune(config, dry_run=dry_run, database_url=database_url)
    except BackupError as exc:
        message = str(exc)
    except OSError as exc:
        message = str(unusable(config.backup_dir, exc))
    click.echo(f"vrp: prune failed: {message}", err=True)
    sys.exit(FAILURE_EXIT)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def status_command(as_json: bool) -> None:
    """Show what the scheduler did last and will do next, and the newest backup."""
    from backup.errors import BackupError
    from backup.status import format_status, read_status

    try:
        status = read_status(settings())
    except BackupError as exc:
        click.echo(f"vrp: {exc}", err=True)
        sys.exit(FAILURE_EXIT)
    if as_json:
        import orjson

        click.echo(orjson.dumps(status.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    for line in format_status(status):
        click.echo(line)


@click.command("scheduler")
def scheduler_command() -> None:
    """Take backups on VRP_BACKUP_SCHEDULE, verify and prune them (SIGTERM stops it cleanly).

    Runs one at once when the newest backup is older than the schedule's period. Never runs
    two backups at the same time, even with several schedulers on one backup folder.
    """
    from backup.errors import BackupConfigError
    from backup.repository import RepositoryError
    from backup.scheduler import check_backup_dir, run_scheduler

    config = settings()
    try:
        check_backup_dir(config)
    except BackupConfigError as exc:
        click.echo(f"vrp: invalid configuration: {exc}", err=True)
        sys.exit(CONFIG_EXIT)
    source = host().source()
    with host().process(SCHEDULER_SERVICE_NAME):
        try:
            run_scheduler(config, source)
        except RepositoryError as exc:
            click.echo(f"vrp: scheduler: {exc}", err=True)
            sys.exit(FAILURE_EXIT)


def register(group: click.Group) -> None:
    """Add ``prune`` and ``status`` to the ``backup`` group."""
    group.add_command(prune_command)
    group.add_command(status_command)
