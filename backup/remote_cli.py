"""The offsite side of ``vrp backup``: ``copy``, and the ``--remote`` / ``--from-remote`` forms
of ``init``, ``list``, ``verify`` and ``restore`` (see :mod:`backup.remote`).

Exit codes as :mod:`backup.commands`: 2 for a missing or bad setting or key file (one line naming
it), 1 for a remote that cannot be reached or a backup that fails verification. The remote's
URL is only ever shown without its credentials.
"""

from __future__ import annotations

from pathlib import Path

import click

from backup.commands import (
    CONFIG_EXIT,
    SERVICE_NAME,
    backup,
    fail,
    host,
    print_json,
    repository,
    settings,
)
from backup.progress import human_size


def _config_orfail(exc: Exception) -> None:
    from backup.errors import BackupConfigError

    if isinstance(exc, BackupConfigError):
        fail(f"invalid configuration: {exc}", CONFIG_EXIT)
    fail(str(exc))


def init_remote(as_json: bool) -> None:
    """``vrp backup init --remote``."""
    from backup.errors import BackupError
    from backup.offsite import connected, remote_settings
    from backup.remote import init_remote as make

    config = settings()
    try:
        remote = remote_settings(config)
        with connected(remote) as store:
            target, created = make(store)
    except BackupError as exc:
        _config_orfail(exc)
    if as_json:
        print_json({"remote": target.shown, "id": target.id, "created": created})
    elif created:
        click.echo(f"created backup remote {target.id} at {target.shown}")
    else:
        click.echo(f"{target.shown} is already a backup remote (id {target.id}); nothing changed")


@backup.command("keygen")
@click.argument("identity_file", type=click.Path(dir_okay=False, path_type=Path))
def keygen_command(identity_file: Path) -> None:
    """Make an age key pair for the offsite copy: IDENTITY_FILE (the private key, mode 0600,
    keep it off the backup host) and IDENTITY_FILE.pub (the public key, for
    VRP_BACKUP_REMOTE_RECIPIENTS_FILE). Refuses to overwrite either."""
    from backup.encryption import write_key_pair

    try:
        public = write_key_pair(identity_file)
    except FileExistsError as exc:
        fail(f"{exc.filename} exists; choose another file (a key is never overwritten)")
    except OSError as exc:
        fail(f"cannot write {exc.filename or identity_file}: {exc.strerror or exc}")
    click.echo(f"private key (identity): {identity_file}  (store it away from the backup host)")
    click.echo(f"public key (recipient): {identity_file}.pub  {public}")


@backup.command("copy")
@click.option("--to", "url", help="Remote URL [default: VRP_BACKUP_REMOTE].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def copy_command(url: str | None, as_json: bool) -> None:
    """Copy the backups the remote lacks, encrypted, then apply the remote's retention.

    Only objects the remote does not hold are sent; an interrupted copy resumes.
    """
    from backup.errors import BackupError
    from backup.offsite import copy_offsite
    from backup.telemetry import identity

    config = settings()
    repo = repository(config)
    source = host().source()
    with host().process(SERVICE_NAME):
        try:
            result = copy_offsite(config, url=url, identity=identity(repo.id, source.database_url))
        except BackupError as exc:
            _config_orfail(exc)
    if as_json:
        shown = {k: v for k, v in result.__dict__.items() if k not in ("objects", "snapshots")}
        print_json(shown)
        return
    click.echo(
        f"copied {len(result.snapshots_copied)} backup(s) to {result.remote} "
        f"({result.snapshots_present} already there): {result.objects_sent} object(s) sent, "
        f"{human_size(result.bytes_sent)}, {result.objects_skipped} already there, "
        f"{result.seconds:.2f}s"
    )


def list_remote(as_json: bool) -> None:
    """``vrp backup list --remote``: what the remote holds, from its plain-text snapshot files."""
    from backup.errors import BackupError
    from backup.offsite import opened, remote_settings
    from backup.remote import list_snapshots

    config = settings()
    try:
        with opened(remote_settings(config)) as target:
            snapshots, refused = list_snapshots(target)
    except BackupError as exc:
        _config_orfail(exc)
    if as_json:
        print_json(
            [
                {
                    "id": s.id,
                    "created_at": s.created_at.isoformat(),
                    "copied_at": s.copied_at.isoformat(),
                    "verified": s.verified,
                    "objects": len(s.objects),
                    "stored_bytes": s.stored_bytes,
                }
                for s in snapshots
            ]
        )
        return
    if not snapshots:
        click.echo(f"no backups on {target.shown} yet; copy them with `vrp backup copy`")
    else:
        click.echo(f"{'id':<24} {'created (UTC)':<19} {'copied (UTC)':<16} verified objects stored")
    for s in snapshots:
        click.echo(
            f"{s.id:<24} {s.created_at:%Y-%m-%d %H:%M:%S} {s.copied_at:%Y-%m-%d %H:%M} "
            f"{'yes' if s.verified else 'no':<8} {len(s.objects):>7} "
            f"{human_size(s.stored_bytes):>10}"
        )
    for name in refused:
        click.echo(f"{name}: unreadable snapshot file (run `vrp backup verify --remote --all`)")


def verify_remote(backup_id: str | None, whole: bool, as_json: bool) -> None:
    """``vrp backup verify --remote [ID | --all]``: download, check, decrypt, verify."""
    from backup.errors import BackupError, BackupNotFoundError
    from backup.offsite import identities_for, opened, remote_settings
    from backup.remote_verify import verify_snapshots

    config = settings()
    try:
        remote = remote_settings(config)
        identities = identities_for(remote)
        with host().process(SERVICE_NAME), opened(remote) as target:
            reports = verify_snapshots(target, identities, backup_id=backup_id, whole=whole)
    except BackupNotFoundError as exc:
        fail(f"{exc} on the remote; `vrp backup list --remote` shows them")
    except BackupError as exc:
        _config_orfail(exc)
    failed = [r for r in reports if not r.ok]
    if as_json:
        print_json(
            {
                "remote": target.shown,
                "ok": not failed,
                "backups": [
                    {"id": r.backup_id, "ok": r.ok, "problems": [str(p) for p in r.problems]}
                    for r in reports
                ],
            }
        )
    else:
        for report in reports:
            click.echo(f"{report.backup_id}  {'verified' if report.ok else 'FAILED'}")
            for problem in report.problems:
                click.echo(f"  {problem}")
    if not reports:
        fail(f"no backups on {target.shown} yet; copy them with `vrp backup copy`")
    if failed:
        fail(f"{len(failed)} of {len(reports)} backup(s) on {target.shown} failed verification")
    if not as_json:
        click.echo(f"{len(reports)} backup(s) on {target.shown} verified")


def fetch_for_restore(backup_id: str) -> None:
    """``restore --from-remote``: download the backup into the local repository first."""
    from backup.catalog import LOCK
    from backup.errors import BackupError
    from backup.lock import run_lock
    from backup.offsite import identities_for, opened, remote_settings
    from backup.remote import fetch_backup, find_snapshot

    config = settings()
    repository(config)
    try:
        remote = remote_settings(config)
        identities = identities_for(remote)
        with opened(remote) as target, run_lock(config.backup_dir / LOCK):
            snapshot = find_snapshot(target, backup_id)
            click.echo(
                f"vrp: downloading backup {backup_id} from {target.shown} into {config.backup_dir}",
                err=True,
            )
            fetch_backup(target, snapshot, identities, Path(config.backup_dir))
    except BackupError as exc:
        _config_orfail(exc)
