"""``vrp``: the one command line of the stack.

Every subcommand validates the whole configuration first: a bad value prints one line naming
the variable and exits with status 2 before anything else happens. Failures a user can fix (a
port already in use, a database that cannot be reached, a schema behind the code) are one line
on stderr and exit status 1, never a traceback.

Start-up cost: ``vrp --help`` and the commands that serve nothing must start fast, so this
module imports only click at the top. The web server, the Flask app, the OpenTelemetry SDK,
SQLAlchemy and Alembic are imported inside the commands that use them, and command groups
mounted from other packages must keep their own ``cli`` modules as light
(``tests/recorder/test_cli.py`` checks what ``vrp --help`` imports).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

import click

from backup import cli as backup_cli
from backup.schedule_cli import scheduler_command
from dashboard import cli as dashboard_cli
from recorder import __version__

if TYPE_CHECKING:
    import sqlalchemy as sa

    from backup.source import BackupSource
    from instrumentation import Database
    from recorder.config import Settings

# Named, not __name__: `vrp up` runs the commands as `python -m recorder.cli` (``__main__``).
logger = logging.getLogger("recorder.cli")

CONFIG_EXIT = 2
FAILURE_EXIT = 1
# An upload touches its temporary file with every chunk; one untouched this long is dead.
STALE_UPLOAD_SECONDS = 3600
# libpq's default is to wait as long as the operating system does (minutes for a host that drops
# packets): a PostgreSQL server gets this long to answer a connection attempt, unless
# PGCONNECT_TIMEOUT or the URL's connect_timeout says otherwise. Child processes inherit it.
POSTGRES_CONNECT_TIMEOUT = "10"
# Allocations of container objects between two young-generation collections in `vrp api`
# (Python's default is 700). Spans, their attributes and the log records waiting for export
# are allocated by every request and survive it, so at 700 the cyclic GC ran over them again
# and again while they waited. Measured with four servers in one capacity run (two runs, 16
# clients): server CPU per request -10 to -12 % with full telemetry, -3 to -7 % without.
API_GC_YOUNG_THRESHOLD = 10_000
# Every file and folder a vrp process creates is for its user only: the database and its -wal,
# the telemetry store, the logs (which hold request paths and client addresses) as the audio and
# the backups already were. Set first thing, so children (`vrp up`'s) inherit it.
PRIVATE_UMASK = 0o077


def _fail(message: str, code: int = FAILURE_EXIT) -> NoReturn:
    click.echo(f"vrp: {message}", err=True)
    sys.exit(code)


def _settings(service_name: str) -> Settings:
    from recorder.config import load_settings
    from recorder.errors import ConfigError

    try:
        return load_settings(service_name=service_name)
    except ConfigError as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)


def _server_settings(service_name: str, host: str | None, port: int | None) -> Settings:
    """The settings with ``--host`` / ``--port`` taking precedence over ``VRP_API_*``."""
    settings = _settings(service_name)
    if host is not None:
        settings = dataclasses.replace(settings, api_host=host)
    if port is not None:
        settings = dataclasses.replace(settings, api_port=port)
    return settings


@contextmanager
def _process(settings: Settings) -> Iterator[None]:
    """Logging and telemetry for the life of one process, flushed on the way out."""
    from instrumentation import ConfigurationError, init

    try:
        handle = init(
            service_name=settings.telemetry.service_name,
            telemetry_settings=settings.telemetry,
            logging_settings=settings.logging,
        )
    except ConfigurationError as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)
    try:
        yield
    finally:
        handle.shutdown()


def _unreachable(url: str, exc: BaseException) -> NoReturn:
    """One line naming the database (without its secrets) and why it cannot be reached."""
    from instrumentation.urls import shown_url, without_secrets

    cause = getattr(exc, "orig", None) or exc
    # Drivers spread one cause over several lines (psycopg adds a hint on the second).
    text = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    text = without_secrets(text, url)
    _fail(f"cannot reach the database {shown_url(url)}: {text or type(cause).__name__}")


def _connect_errors() -> tuple[type[Exception], ...]:
    """What connecting raises for a reason the user fixes in VRP_DATABASE_URL: the server or
    file cannot be reached (OperationalError, InterfaceError), or the driver refuses a parameter
    of the URL's query (ProgrammingError for psycopg's ``connect_timeout=notanint``, TypeError
    for an argument sqlite3 does not take)."""
    import sqlalchemy as sa

    return (sa.exc.DBAPIError, TypeError, ValueError)


def _open_database(settings: Settings) -> Database:
    """The app's :class:`Database`, connected once so that an unreachable one fails here."""

    os.environ.setdefault("PGCONNECT_TIMEOUT", POSTGRES_CONNECT_TIMEOUT)

    from instrumentation import Database

    try:
        database = Database(settings.database)
    except OSError as exc:  # the folder of a SQLite file cannot be created
        _unreachable(settings.database.url, exc)
    try:
        with database.engine.connect():
            pass
    except _connect_errors() as exc:
        database.dispose()
        _unreachable(settings.database.url, exc)
    return database


def _read_only_engine(raw_url: str) -> sa.Engine | None:
    """An engine that cannot change the database, or None for an in-memory one (always empty).

    ``vrp db current`` only looks: a missing SQLite file, or a folder where the file should be,
    is one line naming the path and exit status 1 (a mistyped path is not an empty database),
    and an existing one is opened with ``mode=rw``, which never creates the file, without the
    pragmas of :class:`Database` (the journal mode is left alone). ``mode=ro`` would be
    stricter, but a read-only connection cannot remove the ``-wal`` and ``-shm`` files it
    creates beside a WAL database, so it would leave two files behind.
    """
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from instrumentation.urls import with_default_driver

    url = make_url(raw_url)
    if url.get_backend_name() != "sqlite":
        os.environ.setdefault("PGCONNECT_TIMEOUT", POSTGRES_CONNECT_TIMEOUT)
        return sa.create_engine(with_default_driver(url), poolclass=sa.NullPool)
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    if url.query.get("uri"):
        return sa.create_engine(url, poolclass=sa.NullPool)
    path = Path(database).resolve()
    if path.is_dir():
        _fail(f"{path} is a folder, not a database file: point VRP_DATABASE_URL at a file")
    if not path.exists():
        _fail(f"no database at {path}: run `vrp db upgrade` to create it")
    if not path.is_file():
        _fail(f"{path} is not a regular file: point VRP_DATABASE_URL at a database file")
    uri = f"file:{quote(path.as_posix())}?mode=rw"
    return sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=sa.NullPool
    )


def _serve_api(settings: Settings, db: Database) -> None:
    from waitress.server import MultiSocketServer

    from instrumentation.serving import create_server
    from recorder.api import create_app
    from recorder.api.limits import BodyLimitGate, server_limits
    from recorder.errors import SchemaOutOfDateError
    from recorder.storage import BlobStore

    try:
        app = create_app(settings, db=db)
    except SchemaOutOfDateError as exc:
        _fail(str(exc))
    swept = BlobStore(settings.storage_dir, settings.max_upload_bytes).sweep_temp(
        STALE_UPLOAD_SECONDS
    )
    if swept:
        logger.info("removed %d temporary file(s) left by interrupted uploads", swept)
    address = f"{settings.api_host}:{settings.api_port}"
    try:
        server = create_server(
            app,
            server_limits(settings),
            BodyLimitGate.from_settings(settings),
            host=settings.api_host,
            port=settings.api_port,
            threads=settings.api_threads,
            ident="vrp",
        )
    except OSError as exc:  # EADDRINUSE, EACCES, an address this machine does not have
        reason = exc.strerror or str(exc)
        _fail(f"cannot listen on {address}: {reason.lower()} (pick another with --port)")
    except ValueError as exc:  # waitress: a host name that does not resolve
        _fail(f"cannot listen on {address}: {exc}")
    # Logged only now that the socket is bound, with the port the OS gave for --port 0.
    if isinstance(server, MultiSocketServer):  # a host name with several addresses
        listening = server.effective_listen
    else:
        listening = [(server.effective_host, server.effective_port)]
    for host, port in listening:
        logger.info("API listening on http://%s:%s", host, port, extra={"version": __version__})
    # Everything allocated so far lives as long as the process: keep it out of every future
    # collection, so that the cyclic GC only scans the per-request garbage (telemetry records
    # waiting for export make full collections otherwise long and frequent), and scans it less
    # often (API_GC_YOUNG_THRESHOLD).
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(API_GC_YOUNG_THRESHOLD, older, oldest)
    # SIGTERM stops the server as Ctrl-C does: waitress's run() returns on SystemExit once the
    # requests in progress are done, and the caller then disposes of the pool, which closes
    # every SQLite connection, so that the last one checkpoints the -wal into the database and
    # removes it, and flushes the telemetry; the process exits 0. Telemetry's own handler (which
    # flushes and dies by the signal) is back in place for a second SIGTERM during that.
    previous = signal.signal(signal.SIGTERM, _stop_serving)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    logger.info("API stopped")


def _stop_serving(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


_HOST = click.option(
    "--host", default=None, metavar="ADDRESS", help="Address to bind [default: VRP_API_HOST]."
)
_PORT = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to bind, 0 for any free one [default: VRP_API_PORT].",
)


def _validate_configuration() -> None:
    """Every variable of the stack, whatever the command: a bad one is one line and exit 2.

    The recorder's ``VRP_*`` and ``OTEL_*``, ``VRP_DASHBOARD_*`` and ``VRP_BACKUP_*`` are checked
    together, so that a typo is refused by ``vrp backup list`` as by ``vrp api``, with the same
    prefix. Imported here: ``vrp --help`` stays free of marshmallow and SQLAlchemy.
    """
    from backup.errors import BackupConfigError
    from backup.settings import load_backup_settings
    from dashboard.errors import DashboardConfigError
    from dashboard.settings import load_dashboard_settings
    from recorder.config import load_settings
    from recorder.errors import ConfigError

    try:
        load_settings()
        load_dashboard_settings()
        load_backup_settings()
    except (ConfigError, DashboardConfigError, BackupConfigError) as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)


_NEEDS_NO_CONFIG = "vrp.needs_no_config"
# Commands that read no setting: ``vrp dashboard token`` makes the token a refused one replaces.
_CONFIG_FREE_COMMANDS = (["dashboard", "token"],)


class _VrpGroup(click.Group):
    """The ``vrp`` group; notes whether the command line needs no configuration (help, or a
    command of :data:`_CONFIG_FREE_COMMANDS`).

    Click runs the group's callback before a subcommand parses its options, so the callback
    cannot see a subcommand's ``--help`` itself.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_NEEDS_NO_CONFIG] = (
            any(arg in ctx.help_option_names for arg in args) or args in _CONFIG_FREE_COMMANDS
        )
        return super().parse_args(ctx, args)


@click.group(cls=_VrpGroup)
@click.version_option(__version__, prog_name="vrp")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Voice Recorder Pro: API, database, backups and dashboard."""
    os.umask(PRIVATE_UMASK)
    if not ctx.meta.get(_NEEDS_NO_CONFIG):
        _validate_configuration()


def _api_settings(settings: Settings, workers: int | None) -> Settings:
    """``--workers`` over ``VRP_API_WORKERS``; a Prometheus reader when ``/metrics`` is served."""
    telemetry = dataclasses.replace(settings.telemetry, prometheus=settings.api_metrics_enabled)
    return dataclasses.replace(
        settings, api_workers=workers or settings.api_workers, telemetry=telemetry
    )


def _serve_api_workers(settings: Settings) -> None:
    """``vrp api`` under gunicorn (:mod:`recorder.gunicorn_app`): the master logs, never
    exports; each worker sets up its own telemetry after the fork."""
    from instrumentation import ConfigurationError, configure_logging, shutdown_logging
    from recorder import gunicorn_app
    from recorder.errors import RecorderError

    try:
        configure_logging(settings.logging, service=settings.telemetry.service_name)
    except ConfigurationError as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)
    try:
        gunicorn_app.serve(settings, _open_database)
    except RecorderError as exc:
        _fail(str(exc))
    finally:
        shutdown_logging()


@main.command()
@_HOST
@_PORT
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes; more than 1 serves with gunicorn [default: VRP_API_WORKERS, 1].",
)
def api(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the recorder API (refuses to start on an out-of-date schema)."""
    settings = _api_settings(_server_settings("vrp-api", host, port), workers)
    if settings.api_workers > 1:
        _serve_api_workers(settings)
        return
    with _process(settings):
        db = _open_database(settings)
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
    from recorder import schema_version

    settings = _settings("vrp-cli")
    with _process(settings):
        database = _open_database(settings)
        try:
            schema_version.upgrade(database.engine, revision)
            current = schema_version.current_revision(database.engine)
        finally:
            database.dispose()
    click.echo(f"database schema at revision {current}")


@db.command("current")
def db_current() -> None:
    """Show the schema revision of the database and whether it is up to date (read-only)."""

    from recorder import schema_version

    settings = _settings("vrp-cli")
    engine = _read_only_engine(settings.database.url)
    current = None
    if engine is not None:
        try:
            current = schema_version.current_revision(engine)
        except _connect_errors() as exc:
            _unreachable(settings.database.url, exc)
        finally:
            engine.dispose()
    head = schema_version.head_revision()
    state = "up to date" if current == head else f"behind, run `vrp db upgrade` (head {head})"
    click.echo(f"{current or 'empty'}: {state}")
    sys.exit(0 if current == head else 1)


@contextmanager
def _dashboard_scope(export_telemetry: bool) -> Iterator[None]:
    """Logging and telemetry of ``vrp dashboard``, from the same ``VRP_LOG_*`` and ``OTEL_*``."""
    from dashboard.settings import load_dashboard_settings

    settings = _settings("vrp-dashboard")
    # Its /metrics serves the process's own metrics too (validated by the group already).
    telemetry = dataclasses.replace(
        settings.telemetry, prometheus=load_dashboard_settings().metrics_enabled
    )
    if not export_telemetry:
        telemetry = dataclasses.replace(telemetry, disabled=True)
    settings = dataclasses.replace(settings, telemetry=telemetry)
    with _process(settings):
        yield


main.add_command(dashboard_cli.make_command(_dashboard_scope))


def _backup_source() -> BackupSource:
    """The recorder's database and audio (``VRP_DATABASE_URL``, ``VRP_STORAGE_DIR``)."""
    from recorder.backup_source import backup_source

    return backup_source(_settings("vrp-cli"))


@contextmanager
def _backup_scope(service_name: str) -> Iterator[None]:
    """Logging and telemetry of a ``vrp backup`` command (``vrp-cli``) or the scheduler.

    A manual command with no OTLP endpoint configured reports to the dashboard of the ``vrp up``
    running from this folder, and otherwise nowhere (:mod:`recorder.local_dashboard`); the
    scheduler gets its address from ``vrp up``.
    """
    settings = _settings(service_name)
    unexported = None
    if service_name == backup_cli.SERVICE_NAME:
        from recorder.local_dashboard import with_local_dashboard

        settings, unexported = with_local_dashboard(settings)
    with _process(settings):
        if unexported is not None:
            logger.debug(unexported)
        yield


backup_cli.mount(main, backup_cli.BackupHost(source=_backup_source, process=_backup_scope))
main.add_command(scheduler_command)


def _vrp(*args: str) -> list[str]:
    """The command line of a ``vrp`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "recorder.cli", *args]


@main.command()
@_HOST
@_PORT
@click.option(
    "--dashboard-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the dashboard [default: VRP_DASHBOARD_PORT, 8050].",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also upload sample recordings, take a backup and send light traffic to the API.",
)
def up(host: str | None, port: int | None, dashboard_port: int | None, demo: bool) -> None:
    """Run the whole stack on this machine: migrate, then serve the API and the dashboard, and
    run the backup scheduler.

    With --demo, one more child (``vrp demo-traffic``, :mod:`recorder.demo`) seeds sample
    recordings, starts one backup run and sends a few requests a second to the API, so that
    the dashboard shows latencies, queries and a backup within a minute.

    The API and the scheduler export their telemetry to the dashboard unless an OTLP endpoint
    is configured, with VRP_DASHBOARD_TOKEN, or else a token made for the run and printed once.
    Ctrl-C or SIGTERM stops everything; if one server dies, the others are stopped too.
    """
    import os

    from dashboard.errors import DashboardConfigError
    from dashboard.settings import load_dashboard_settings
    from recorder import schema_version, supervisor
    from recorder.local_dashboard import up_state

    settings = _server_settings("vrp-up", host, port)
    try:
        dashboard = load_dashboard_settings()
    except DashboardConfigError as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)
    dashboard_port = dashboard_port or dashboard.port
    if demo and settings.api_port == 0:
        _fail("--demo needs the API's port: pick one with --port (not 0)", CONFIG_EXIT)
    for bind_host, bind_port, option in (
        (settings.api_host, settings.api_port, "--port"),
        (dashboard.host, dashboard_port, "--dashboard-port"),
    ):
        if reason := supervisor.bind_error(bind_host, bind_port):
            _fail(
                f"cannot listen on {bind_host}:{bind_port}: {reason} (pick another with {option})"
            )
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    with _process(settings):
        _init_backup_repository()
        database = _open_database(settings)
        try:
            schema_version.upgrade(database.engine)
        finally:
            database.dispose()
        api_address = ("--host", settings.api_host, "--port", str(settings.api_port))
        token = supervisor.stack_token(os.environ, dashboard.token, dashboard.host)
        dashboard_env = {}
        if token is not None and token != dashboard.token:
            dashboard_env["VRP_DASHBOARD_TOKEN"] = token
            # On the terminal only, never in a log record: whoever ran vrp up signs in with it.
            click.echo(
                f"vrp up: the dashboard's token for this run is {token} (sign in on "
                f"http://{supervisor.loopback_if_any(dashboard.host)}:{dashboard_port}/login; "
                "set VRP_DASHBOARD_TOKEN to choose one)",
                err=True,
            )
        api_env = supervisor.otlp_env(os.environ, dashboard.host, dashboard_port, token)
        # The dashboard first, and listening before the others start exporting to it; the
        # supervisor stops them in reverse, so their last telemetry still reaches it.
        children = [
            supervisor.Child(
                "dashboard",
                _vrp("dashboard", "--port", str(dashboard_port)),
                env=dashboard_env,
                ready=(dashboard.host, dashboard_port),
            ),
            supervisor.Child(
                "api",
                _vrp("api", *api_address),
                env=api_env,
                # The demo starts once the API listens, and stops before it.
                ready=(settings.api_host, settings.api_port) if demo else None,
            ),
            supervisor.Child("scheduler", _vrp("scheduler"), env=api_env),
        ]
        if demo:
            api_url = supervisor.otlp_endpoint(settings.api_host, settings.api_port)
            # Its backup run exports to the dashboard as the scheduler does (api_env).
            children.append(
                supervisor.Child("demo", _vrp("demo-traffic", "--api", api_url), env=api_env)
            )
        endpoint = supervisor.otlp_endpoint(dashboard.host, dashboard_port)
        with up_state(endpoint, token):
            status = supervisor.run(children, os.environ)
    sys.exit(status)


@main.command("demo-traffic", hidden=True)
@click.option("--api", "api_url", required=True, metavar="URL", help="The API's base URL.")
def demo_traffic(api_url: str) -> None:
    """Sample recordings, one backup run and light traffic against the API (``vrp up --demo``)
    until SIGTERM or Ctrl-C."""
    from instrumentation import ConfigurationError, configure_logging, shutdown_logging
    from recorder.demo import DemoTraffic, run_until_signalled

    settings = _settings("vrp-demo")
    try:
        configure_logging(settings.logging, service=settings.telemetry.service_name)
    except ConfigurationError as exc:
        _fail(f"invalid configuration: {exc}", CONFIG_EXIT)
    try:
        run_until_signalled(DemoTraffic(api_url, backup_argv=_vrp("backup", "run")))
    finally:
        shutdown_logging()


def _init_backup_repository() -> None:
    """``vrp up`` makes its backup folder a repository (``vrp backup init``): one step less."""
    from backup.repository import RepositoryError, init_repository
    from backup.settings import load_backup_settings

    try:
        result = init_repository(load_backup_settings().backup_dir)
    except RepositoryError as exc:
        _fail(str(exc))
    if result.created:
        logger.info(
            "created backup repository %s in %s", result.repository.id, result.repository.path
        )


if __name__ == "__main__":
    main()
