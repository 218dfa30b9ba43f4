"""``vrp``: the one command line of the stack.

Every subcommand validates the whole configuration first: a bad value prints one line naming
the variable and exits with status 2 before anything else happens.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
import waitress

from instrumentation import logs, telemetry
from instrumentation.database import Database
from instrumentation.errors import ConfigurationError
from recorder import __version__, schema_version
from recorder.api import create_app
from recorder.config import Settings, load_settings
from recorder.errors import ConfigError, SchemaOutOfDateError
from recorder.storage import BlobStore

logger = logging.getLogger(__name__)

CONFIG_EXIT = 2
# An upload touches its temporary file with every chunk; one untouched this long is dead.
STALE_UPLOAD_SECONDS = 3600


def _settings(service_name: str) -> Settings:
    try:
        return load_settings(service_name=service_name)
    except ConfigError as exc:
        click.echo(f"vrp: invalid configuration: {exc}", err=True)
        sys.exit(CONFIG_EXIT)


@contextmanager
def _process(settings: Settings) -> Iterator[None]:
    """Logging and telemetry for the life of one process, flushed on the way out."""
    try:
        logs.configure_logging(settings.logging, service=settings.telemetry.service_name)
    except ConfigurationError as exc:
        click.echo(f"vrp: invalid configuration: {exc}", err=True)
        sys.exit(CONFIG_EXIT)
    telemetry.setup(settings.telemetry)
    telemetry.install_signal_handlers()
    try:
        yield
    finally:
        telemetry.shutdown()
        logs.shutdown_logging()


def _serve_api(settings: Settings, db: Database) -> None:
    try:
        app = create_app(settings, db=db)
    except SchemaOutOfDateError as exc:
        click.echo(f"vrp: {exc}", err=True)
        sys.exit(1)
    swept = BlobStore(settings.storage_dir, settings.max_upload_bytes).sweep_temp(
        STALE_UPLOAD_SECONDS
    )
    if swept:
        logger.info("removed %d temporary file(s) left by interrupted uploads", swept)
    logger.info(
        "API listening on http://%s:%d",
        settings.api_host,
        settings.api_port,
        extra={"version": __version__},
    )
    # Everything allocated so far lives as long as the process: keep it out of every future
    # collection, so that the cyclic GC only scans the per-request garbage (telemetry records
    # waiting for export make full collections otherwise long and frequent).
    gc.collect()
    gc.freeze()
    waitress.serve(
        app,
        host=settings.api_host,
        port=settings.api_port,
        threads=settings.api_threads,
        ident="vrp",
    )


@click.group()
@click.version_option(__version__, prog_name="vrp")
def main() -> None:
    """Voice Recorder Pro: API, database, backups and dashboard."""


@main.command()
def api() -> None:
    """Serve the recorder API (refuses to start on an out-of-date schema)."""
    settings = _settings("vrp-api")
    with _process(settings):
        db = Database(settings.database)
        try:
            _serve_api(settings, db)
        finally:
            db.dispose()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database schema."""
    settings = _settings("vrp-cli")
    with _process(settings):
        database = Database(settings.database)
        try:
            schema_version.upgrade(database.engine, revision)
            current = schema_version.current_revision(database.engine)
        finally:
            database.dispose()
    click.echo(f"database schema at revision {current}")


@db.command("current")
def db_current() -> None:
    """Show the schema revision of the database and whether it is up to date."""
    settings = _settings("vrp-cli")
    database = Database(settings.database)
    try:
        current = schema_version.current_revision(database.engine)
    finally:
        database.dispose()
    head = schema_version.head_revision()
    state = "up to date" if current == head else f"behind, run `vrp db upgrade` (head {head})"
    click.echo(f"{current or 'empty'}: {state}")
    sys.exit(0 if current == head else 1)


@main.command()
def up() -> None:
    """Run the whole stack on this machine: SQLite and audio under ./var, migrated on start."""
    settings = _settings("vrp-api")
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    with _process(settings):
        database = Database(settings.database)
        try:
            schema_version.upgrade(database.engine)
            _serve_api(settings, database)
        finally:
            database.dispose()


if __name__ == "__main__":
    main()
