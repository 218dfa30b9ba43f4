"""``vrp backup``: run, list, verify and restore backups from the command line.

The application mounts the :data:`backup` group with :func:`mount`, handing in a
:class:`BackupHost`: how to build its :class:`~backup.source.BackupSource` from its validated
settings, and how to set up logging and telemetry for a command under a service name. Nothing
here imports the application. Exit codes: 0 done, 1 the work failed (a failed run or verify, a
refused restore, a backup folder that is not a repository or cannot be used), 2 a bad setting
(one line naming the variable). ``--json`` prints one JSON value on stdout
(:mod:`backup.json_output`); failures stay one line on stderr with the same exit codes.

This module imports only click and the light command modules at the top so that ``vrp --help``
stays fast; everything else is
imported inside the commands.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backup import remote_cli, schedule_cli
from backup.commands import (
    CONFIG_EXIT,
    FAILURE_EXIT,
    JSON_OPTION,
    REMOTE_OPTION,
    SERVICE_NAME,
    BackupHost,
    backup,
    fail,
    host,
    print_json,
    reporter,
    repository,
    settings,
    use_host,
)
from backup.progress import human_size

if TYPE_CHECKING:
    from backup.catalog import BackupInfo
    from backup.settings import BackupSettings

__all__ = ["CONFIG_EXIT", "FAILURE_EXIT", "SERVICE_NAME", "BackupHost", "backup", "mount"]


@backup.command("init")
@REMOTE_OPTION
@JSON_OPTION
def init_command(remote: bool, as_json: bool) -> None:
    """Make VRP_BACKUP_DIR a backup repository (created if missing; a repository is kept).

    A folder holding the backups of an earlier version is adopted as it is; a folder holding
    anything else is refused. With --remote, make VRP_BACKUP_REMOTE a backup remote.
    """
    from backup.repository import RepositoryError, init_repository

    if remote:
        remote_cli.init_remote(as_json)
        return
    config = settings()
    try:
        result = init_repository(config.backup_dir)
    except RepositoryError as exc:
        fail(str(exc))
    if as_json:
        from backup.json_output import init_json

        print_json(init_json(result))
        return
    repo = result.repository
    if not result.created:
        click.echo(f"{repo.path} is already a backup repository (id {repo.id}); nothing changed")
    elif result.adopted:
        click.echo(f"adopted the backups in {repo.path} as repository {repo.id}")
    else:
        click.echo(f"created backup repository {repo.id} in {repo.path}")


@backup.command("run")
@click.option(
    "--verify/--no-verify",
    default=None,
    help="Verify the backup before publishing it [default: VRP_BACKUP_VERIFY].",
)
@JSON_OPTION
def run_command(verify: bool | None, as_json: bool) -> None:
    """Take a backup now (manual trigger)."""
    from backup.errors import BackupError
    from backup.run import run_backup
    from instrumentation import conventions

    config = settings()
    repository(config)
    source = host().source()
    # What start-up allocates (modules, settings, then the telemetry set-up's imports and
    # providers) lives until the process ends: frozen, it is left out of the collector's passes,
    # the full one the telemetry imports trigger (15 ms), those of the run and those of the
    # interpreter's exit, which otherwise cost this command 0.1-0.3 s (57,000 tracked objects
    # after start-up; measured against os._exit).
    gc.freeze()
    with host().process(SERVICE_NAME):
        gc.freeze()
        try:
            result = run_backup(
                config,
                source,
                trigger=conventions.BACKUP_TRIGGER_MANUAL,
                verify=config.verify_after_run if verify is None else verify,
                reporter=reporter(as_json),
            )
        except BackupError as exc:
            fail(f"backup failed: {exc}")
    if as_json:
        from backup.json_output import run_json

        print_json(run_json(result))
        return
    click.echo(
        f"backup {result.backup_id}: {result.files} files, {human_size(result.bytes)}, "
        f"{human_size(result.stored_bytes)} stored, {result.blobs_copied} blobs copied, "
        f"{result.blobs_skipped} already archived, "
        f"{'verified' if result.verified else 'not verified'}, {result.seconds:.2f}s"
    )


@backup.command("list")
@REMOTE_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def list_command(remote: bool, as_json: bool) -> None:
    """List the complete backups, oldest first (with --remote, those on the remote)."""
    from backup.catalog import Catalog
    from backup.repository import unusable

    if remote:
        remote_cli.list_remote(as_json)
        return
    config = settings()
    repository(config)
    try:
        backups = Catalog(config.backup_dir).list()
    except OSError as exc:
        fail(str(unusable(config.backup_dir, exc)))
    if as_json:
        from backup.json_output import backup_json

        print_json([backup_json(b) for b in backups])
        return
    if not backups:
        click.echo("no backups yet; take one with `vrp backup run`")
        return
    header = f"{'id':<24} {'created (UTC)':<19} {'trigger':<8} {'verified':<8} "
    click.echo(header + f"{'checked (UTC)':<16} {'files':>6} {'size':>10} {'stored':>10}")
    for b in backups:
        checked = f"{b.checked_at:%Y-%m-%d %H:%M}" if b.checked_at else "never"
        click.echo(
            f"{b.id:<24} {b.created_at:%Y-%m-%d %H:%M:%S} {b.trigger:<8} "
            f"{_verified(b):<8} {checked:<16} {b.files:>6} {human_size(b.bytes):>10} "
            f"{human_size(b.stored_bytes):>10}"
        )


def _verified(backup: BackupInfo) -> str:
    """``yes`` when its latest check passed, ``FAILED`` when it failed, ``no`` when none."""
    if backup.verified:
        return "yes"
    return "FAILED" if backup.checked_at is not None else "no"


@backup.command("verify")
@click.argument("backup_id", required=False)
@click.option(
    "--all",
    "whole",
    is_flag=True,
    help="Check the whole repository: every manifest, snapshot and blob (each blob read once).",
)
@REMOTE_OPTION
@JSON_OPTION
def verify_command(backup_id: str | None, whole: bool, remote: bool, as_json: bool) -> None:
    """Recompute every checksum, open the snapshot, check every referenced blob.

    Without BACKUP_ID, the newest backup; with --all, every backup. With --remote, the copies
    on the remote: downloaded, decrypted (VRP_BACKUP_REMOTE_IDENTITY_FILE) and checked.
    """
    from backup.errors import BackupError
    from backup.verify import verify_backup

    if whole and backup_id is not None:
        raise click.UsageError("give a BACKUP_ID or --all, not both")
    if remote:
        remote_cli.verify_remote(backup_id, whole, as_json)
        return
    config = settings()
    repository(config)
    source = host().source()
    with host().process(SERVICE_NAME):
        try:
            if whole:
                _verify_all(config, source.database_url, as_json)
                return
            backup_id = backup_id or _newest_id(config)
            report = verify_backup(
                config,
                backup_id,
                database_url=source.database_url,
                reporter=reporter(as_json),
            )
        except BackupError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"verify failed on {exc.filename or config.backup_dir}: {exc.strerror or exc}")
    if as_json:
        from backup.json_output import verify_json

        print_json(verify_json(report))
        if not report.ok:
            fail(f"backup {backup_id} failed verification: {len(report.problems)} problem(s)")
        return
    if report.ok:
        click.echo(f"backup {backup_id} verified: {report.files} files, {human_size(report.bytes)}")
        return
    for problem in report.problems:
        click.echo(str(problem))
    fail(f"backup {backup_id} failed verification: {len(report.problems)} problem(s)")


def _newest_id(config: BackupSettings) -> str:
    from backup.catalog import Catalog

    backups = Catalog(config.backup_dir).list()
    if not backups:
        fail("no backups yet; take one with `vrp backup run`")
    return backups[-1].id


def _verify_all(config: BackupSettings, database_url: str, as_json: bool) -> None:
    from backup.check import verify_repository

    result = verify_repository(config, database_url=database_url, reporter=reporter(as_json))
    summary = (
        f"{len(result.reports)} backup(s), {result.blobs_read} blob(s) read: "
        f"{len(result.failed) + len(result.unreadable)} failed"
    )
    if as_json:
        from backup.json_output import verify_json

        print_json(
            {
                "ok": result.ok,
                "blobs_read": result.blobs_read,
                "backups": [verify_json(report) for report in result.reports],
                "unreadable": list(result.unreadable),
            }
        )
    else:
        for report in result.reports:
            click.echo(f"{report.backup_id}  {'verified' if report.ok else 'FAILED'}")
            for problem in report.problems:
                click.echo(f"  {problem}")
        for name in result.unreadable:
            click.echo(f"{name}  FAILED\n  runs/{name}: the manifest cannot be read")
    if not result.ok:
        fail(f"repository check failed: {summary}")
    if not as_json:
        click.echo(f"repository verified: {summary}")


@backup.command("restore")
@click.argument("backup_id")
@click.option(
    "--to",
    "to_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to restore into (must not exist unless --force).",
)
@click.option("--database-url", help="PostgreSQL database to restore into (new or empty).")
@click.option(
    "--storage-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to restore the audio blobs into [default: VRP_STORAGE_DIR].",
)
@click.option("--force", is_flag=True, help="Replace an existing database, even the live one.")
@click.option(
    "--from-remote",
    is_flag=True,
    help="Download the backup from VRP_BACKUP_REMOTE into VRP_BACKUP_DIR first (needs "
    "VRP_BACKUP_REMOTE_IDENTITY_FILE).",
)
@JSON_OPTION
def restore_command(
    backup_id: str,
    to_path: Path | None,
    database_url: str | None,
    storage_dir: Path | None,
    force: bool,
    from_remote: bool,
    as_json: bool,
) -> None:
    """Restore a backup into a new database file or database, and its audio."""
    from backup.errors import BackupError
    from backup.restore import plan_restore, restore_backup
    from backup.telemetry import identity

    if (to_path is None) == (database_url is None):
        raise click.UsageError("give exactly one of --to PATH and --database-url URL")
    config = settings()
    repo = repository(config)
    if from_remote:
        remote_cli.fetch_for_restore(backup_id)
    source = host().source()
    with host().process(SERVICE_NAME):
        try:
            plan = plan_restore(
                config,
                backup_id,
                to_path=to_path,
                database_url=database_url,
                storage_dir=storage_dir or source.storage_dir,
                live_database_url=source.database_url,
            )
            if plan.replaces:
                click.echo(f"vrp: this restore replaces {plan.replaces}", err=True)
                if not force:
                    fail("refusing to replace it without --force")
            result = restore_backup(
                config,
                plan,
                force=force,
                blob_path=source.blob_path,
                reporter=reporter(as_json),
                identity=identity(repo.id, source.database_url),
            )
        except BackupError as exc:
            fail(f"restore failed: {exc}")
        except OSError as exc:
            fail(f"restore failed on {exc.filename or backup_id}: {exc.strerror or exc}")
    if as_json:
        from backup.json_output import restore_json

        print_json(restore_json(plan, result, _target(result.target)))
        return
    replaced = f", replacing {result.replaced}" if result.replaced else ""
    click.echo(
        f"restored backup {backup_id} into {_target(result.target)}{replaced}; "
        f"{result.blobs_written} blobs written, {result.blobs_kept} already present in "
        f"{plan.storage_dir}"
    )


def _target(target: str) -> str:
    if "://" not in target:
        return target
    from instrumentation.urls import shown_url

    return shown_url(target)


def mount(parent: click.Group, backup_host: BackupHost) -> None:
    """Add ``backup`` to the application's command group."""
    use_host(backup_host)
    schedule_cli.register(backup)  # prune and status; remote_cli's commands are on the group
    parent.add_command(backup)
