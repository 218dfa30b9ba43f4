"""What every ``vrp backup`` command shares: the group, the host the application hands in, and
the one-line failures with their exit codes.

The commands live in :mod:`backup.cli`, :mod:`backup.remote_cli` and :mod:`backup.schedule_cli`;
each imports this module and none imports another, so the application mounts them in any order.
The host is kept here, set once by :func:`backup.cli.mount` before click runs a command. Only
click is imported at the top so that ``vrp --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from backup.progress import Reporter
    from backup.repository import Repository
    from backup.settings import BackupSettings
    from backup.source import BackupSource

CONFIG_EXIT = 2
FAILURE_EXIT = 1
SERVICE_NAME = "vrp-cli"


@dataclass(frozen=True)
class BackupHost:
    """What the application hands the backup commands.

    ``source()`` validates the application's settings (exiting 2 on a bad one) and returns its
    database and blob folder; ``process(service_name)`` is a context manager that sets up
    logging and telemetry for the command and flushes them on the way out.
    """

    source: Callable[[], BackupSource]
    process: Callable[[str], AbstractContextManager[object]]


_host: BackupHost | None = None


def use_host(backup_host: BackupHost) -> None:
    """Hand the commands the application's host (done by :func:`backup.cli.mount`)."""
    global _host
    _host = backup_host


def host() -> BackupHost:
    """The host given to :func:`backup.cli.mount`."""
    if _host is None:
        raise click.UsageError("the backup commands were not mounted by an application")
    return _host


def fail(message: str, code: int = FAILURE_EXIT) -> NoReturn:
    click.echo(f"vrp: {message}", err=True)
    sys.exit(code)


def settings() -> BackupSettings:
    """The validated ``VRP_BACKUP_*`` settings; exit 2 naming a bad variable."""
    from backup.errors import BackupConfigError
    from backup.settings import load_backup_settings

    try:
        return load_backup_settings()
    except BackupConfigError as exc:
        fail(f"invalid configuration: {exc}", CONFIG_EXIT)


def repository(config: BackupSettings) -> Repository:
    """The repository the command works in (made first for the default folder); exit 1 with
    one line when the folder is not a repository or cannot be used."""
    from backup.repository import RepositoryError, repository_for

    try:
        return repository_for(config.backup_dir, init_if_missing=config.init_if_missing)
    except RepositoryError as exc:
        fail(str(exc))


def reporter(as_json: bool) -> Reporter:
    """Progress on stderr, none in JSON mode (stderr then holds only a failure's line)."""
    from backup.progress import NullReporter, for_stream

    return NullReporter() if as_json else for_stream(sys.stderr)


def print_json(value: object) -> None:
    from backup.json_output import dumps

    click.echo(dumps(value))


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")


@click.group()
def backup() -> None:
    """Back up, list, verify and restore the database and its audio."""


REMOTE_OPTION = click.option(
    "--remote", is_flag=True, help="Work on the offsite copy (VRP_BACKUP_REMOTE) instead."
)
