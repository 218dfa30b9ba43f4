"""PostgreSQL: ``pg_dump -Fc`` from the machine's client tools, streamed through zstd + sha256.

One snapshot for everything: a REPEATABLE READ, READ ONLY transaction exports its snapshot
(``pg_export_snapshot()``); ``pg_dump --snapshot`` dumps exactly that state while the same
transaction counts the rows per table and runs the application's referenced-blobs query, so the
manifest lists what the dump references, whatever commits meanwhile. The dump is written
uncompressed (``-Z0``) to a pipe and compressed here at the configured zstd level in the same
pass that hashes it.

A check feeds the whole decompressed dump to ``pg_restore --file=/dev/null``, which reads every
entry and data block of the archive (``--list`` reads only its table of contents, and stops
reading its input there); a full check restores it into a scratch database on the same server
instead and compares the row counts per table with the manifest.
The client tools must be at least as new as the server: a missing tool or an older ``pg_dump``
is reported by name, with what to install.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import IO, Final

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from backup.engines import Event, Snapshot, compare_row_counts
from backup.errors import EngineError, RestoreError
from backup.files import open_private
from backup.manifest import Artifact
from backup.scratch import note_database
from backup.source import ReferencedBlobs
from backup.stream import Progress, StreamResult, compress_stream, decompress_stream
from instrumentation.urls import database_label, with_default_driver

logger = logging.getLogger(__name__)

ARTIFACT: Final = "database.pgdump.zst"
_VERSION: Final = re.compile(r"\(PostgreSQL\)\s+(\d+)")
_SCRATCH_NAME: Final = re.compile(r"vrp_verify_[0-9a-f]{12}")
_PR_SET_PDEATHSIG: Final = 1


def _sa_url(url: str) -> URL:
    return with_default_driver(make_url(url))


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment carrying it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EngineError(
            f"{name} is not on PATH; install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client) at the server's major version"
        )
    return path


def _client_major(tool: str) -> int:
    # A fixed argv: the PostgreSQL client found on PATH
    output = subprocess.run(  # nosec B603
        [tool, "--version"], capture_output=True, text=True, check=False
    )
    match = _VERSION.search(output.stdout)
    if match is None:
        raise EngineError(f"cannot tell the version of {tool} from {output.stdout.strip()!r}")
    return int(match.group(1))


def _check_versions(tool: str, server_major: int) -> None:
    client = _client_major(tool)
    if client < server_major:
        raise EngineError(
            f"{Path(tool).name} {client} cannot dump or restore a PostgreSQL {server_major} "
            f"server; install postgresql-client-{server_major} and put it first on PATH"
        )


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(_sa_url(url), poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def row_counts(connection: sa.Connection) -> dict[str, int]:
    """Rows per user table, keyed ``schema.table``."""
    tables = connection.execute(
        sa.text(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY schemaname, tablename"
        )
    ).all()
    preparer = connection.dialect.identifier_preparer
    counts = {}
    for schema, table in tables:
        name = f"{preparer.quote(schema)}.{preparer.quote(table)}"
        counts[f"{schema}.{table}"] = connection.execute(
            # name: from pg_tables, quoted by the dialect's identifier preparer
            sa.text(f"SELECT count(*) FROM {name}")  # nosec B608
        ).scalar_one()
    return counts


def _die_with(parent: int) -> None:
    """In the child, before it runs pg_dump or pg_restore: be killed when ``parent`` dies
    (Linux's PR_SET_PDEATHSIG). A pg_restore fed by a ``vrp`` that is killed would otherwise
    go on with what the pipe still holds and could commit a restore nobody checks."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _child_setup() -> Callable[[], None] | None:
    return partial(_die_with, os.getpid()) if sys.platform == "linux" else None


def _stderr_text(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = stream.read().decode("utf-8", "replace").strip().splitlines()
    return "; ".join(lines[-3:])


def _server_major(connection: sa.Connection) -> int:
    return int(connection.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000


class _Feed:
    """pg_restore's stdin. pg_restore may stop reading before the end of the archive (past
    the last entry it needs) and close its end: the rest of the artifact is still decompressed
    (its zstd frame checked to the end and its length counted) but goes nowhere, and the
    verdict is pg_restore's exit status, not the broken pipe."""

    def __init__(self, stdin: IO[bytes]) -> None:
        self.stdin = stdin
        self.closed_early = False

    def write(self, data: bytes) -> None:
        if self.closed_early:
            return
        try:
            self.stdin.write(data)
        except BrokenPipeError:
            self.closed_early = True

    def close(self) -> None:
        with suppress(BrokenPipeError):
            self.stdin.close()


class PostgresqlEngine:
    """Snapshots of a PostgreSQL database through pg_dump and pg_restore."""

    name = "postgresql"

    def __init__(self) -> None:
        self._created: set[str] = set()
        # Targets a pg_restore committed into. It runs as one transaction (--single-transaction,
        # which implies --exit-on-error): one that fails or is killed leaves no trace.
        self._committed: set[str] = set()

    def snapshot(
        self,
        url: str,
        run_dir: Path,
        *,
        level: int,
        referenced_blobs: ReferencedBlobs,
        progress: Progress | None = None,
        on_event: Event | None = None,
    ) -> Snapshot:
        pg_dump = _tool("pg_dump")
        uri, env = _libpq(url)
        artifact_path = run_dir / ARTIFACT
        try:
            with _engine(url) as engine, engine.connect() as connection:
                _check_versions(pg_dump, _server_major(connection))
                connection.rollback()
                snapshot_conn = connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                with snapshot_conn.begin():
                    snapshot_id = snapshot_conn.execute(
                        sa.text("SELECT pg_export_snapshot()")
                    ).scalar_one()
                    tables = row_counts(snapshot_conn)
                    blobs = tuple(sorted(set(referenced_blobs(snapshot_conn))))
                    result = self._dump(
                        pg_dump, uri, env, snapshot_id, artifact_path, level, progress
                    )
        except sa.exc.OperationalError as exc:
            raise EngineError(
                f"cannot reach the database {database_label(url)}: {type(exc.orig).__name__}; "
                "check VRP_DATABASE_URL and that the server is running"
            ) from exc
        artifact = Artifact(
            path=ARTIFACT,
            sha256=result.stored_sha256,
            bytes=result.plain_bytes,
            stored_bytes=result.stored_bytes,
        )
        return Snapshot(artifact=artifact, blobs=blobs, tables=tables)

    def _dump(
        self,
        pg_dump: str,
        uri: str,
        env: dict[str, str],
        snapshot_id: str,
        artifact_path: Path,
        level: int,
        progress: Progress | None,
    ) -> StreamResult:
        command = [pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot_id}"]
        with tempfile.TemporaryFile() as errors:
            # pg_dump with options of this module; the URL is one argument, no shell
            process = subprocess.Popen(  # nosec B603
                [*command, f"--dbname={uri}"],
                stdout=subprocess.PIPE,
                stderr=errors,
                env=env,
                preexec_fn=_child_setup(),
            )
            assert process.stdout is not None
            fd = open_private(artifact_path)
            try:
                result = compress_stream(process.stdout, fd, level=level, progress=progress)
            finally:
                os.close(fd)
                process.stdout.close()
                returncode = process.wait()
            if returncode != 0:
                message = _stderr_text(errors)
                if "version mismatch" in message:
                    raise EngineError(
                        f"pg_dump is older than the server ({message}); install the client "
                        "tools of the server's major version"
                    )
                raise EngineError(f"pg_dump failed (exit {returncode}): {message}")
        return result

    def check(
        self,
        artifact: Path,
        tables: dict[str, int],
        *,
        full: bool,
        progress: Progress | None,
        scratch: Path,
        scratch_url: str | None = None,
    ) -> list[str]:
        if not full or scratch_url is None:
            # pg_restore reads the whole archive (every data block, not only the table of
            # contents that --list stops after) and writes the script it would run nowhere.
            return self._pg_restore(artifact, [f"--file={os.devnull}"], progress=progress)
        with self._scratch_database(scratch_url, scratch) as database:
            problems = self._pg_restore(
                artifact,
                ["--no-owner", "--exit-on-error", "--single-transaction"],
                url=database,
                progress=progress,
            )
            if not problems:
                problems = self.check_restored(database, tables)
        return problems

    def check_restored(self, target: str, tables: dict[str, int]) -> list[str]:
        with _engine(target) as engine, engine.connect() as connection:
            actual = row_counts(connection)
        return compare_row_counts(tables, actual, "restored")

    def restore(
        self, artifact: Path, target: str, *, force: bool, progress: Progress | None
    ) -> str:
        replaced = ""
        existing = self._table_count(target)
        if existing is None:
            self._create_database(target)
            self._created.add(target)
        elif existing:
            if not force:
                raise RestoreError(
                    f"the database {database_label(target)} holds {existing} table(s); restore "
                    "into a new database, or add --force to replace them"
                )
            replaced = f"the {existing} table(s) of the database {database_label(target)}"
            logger.warning("restore replaces %s", replaced)
        options = ["--no-owner", "--exit-on-error", "--single-transaction"]
        if replaced:
            options += ["--clean", "--if-exists"]
        problems = self._pg_restore(artifact, options, url=target, progress=progress)
        if problems:
            raise RestoreError(
                f"pg_restore into {database_label(target)} failed: {'; '.join(problems)}"
            )
        self._committed.add(target)
        return replaced

    def stage(self, target: str) -> str:
        return target

    def publish(self, staged: str, target: str) -> None:
        """Nothing to do: the restore went into the target database itself."""

    def discard(self, staged: str, target: str) -> str:
        if staged in self._created:
            self._drop_database(staged)
            self._created.discard(staged)
            self._committed.discard(staged)
            return f"the database {database_label(target)} that this restore created was dropped"
        if staged not in self._committed:
            return f"nothing was written to the database {database_label(target)}"
        return (
            f"the database {database_label(target)} existed before and now holds this restore, "
            "which did not pass its checks; check it or drop it"
        )

    def _drop_database(self, url: str) -> None:
        self._on_server(url, "DROP DATABASE IF EXISTS {} WITH (FORCE)")

    def _pg_restore(
        self,
        artifact: Path,
        options: list[str],
        *,
        url: str | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        pg_restore = _tool("pg_restore")
        command = [pg_restore, *options]
        env = None
        if url is not None:
            uri, env = _libpq(url)
            command.append(f"--dbname={uri}")
        with tempfile.TemporaryFile() as errors:
            # pg_restore with options of this module; the URL is one argument, no shell
            process = subprocess.Popen(  # nosec B603
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=env,
                preexec_fn=_child_setup(),
            )
            assert process.stdin is not None
            feed = _Feed(process.stdin)
            try:
                with artifact.open("rb") as src:
                    decompress_stream(src, feed.write, progress=progress)
            finally:
                feed.close()
                returncode = process.wait()
            if returncode != 0:
                return [f"pg_restore {' '.join(options)} failed: {_stderr_text(errors)}"]
        return []

    def _table_count(self, url: str) -> int | None:
        """User tables in the database; None when the database does not exist."""
        try:
            with _engine(url) as engine, engine.connect() as connection:
                return len(row_counts(connection))
        except sa.exc.OperationalError as exc:
            if "does not exist" in str(exc.orig):
                return None
            raise RestoreError(
                f"cannot reach the database {database_label(url)}: {type(exc.orig).__name__}"
            ) from exc

    def _maintenance_url(self, url: str) -> URL:
        return _sa_url(url).set(database="postgres")

    def _create_database(self, url: str) -> None:
        self._on_server(url, "CREATE DATABASE {}")

    def _on_server(self, url: str, statement: str) -> None:
        """Run ``statement`` about the database of ``url`` (``{}``: its name, quoted) from the
        server's maintenance database, outside a transaction as CREATE/DROP DATABASE need."""
        name = make_url(url).database
        engine = sa.create_engine(
            self._maintenance_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as connection:
                quoted = connection.dialect.identifier_preparer.quote(str(name))
                connection.execute(sa.text(statement.format(quoted)))
        finally:
            engine.dispose()

    def drop_scratch(self, url: str, name: str) -> None:
        if not _SCRATCH_NAME.fullmatch(name):
            raise EngineError(f"{name!r} is not the name of a verify's scratch database")
        self._drop_database(_sa_url(url).set(database=name).render_as_string(hide_password=False))

    @contextmanager
    def _scratch_database(self, url: str, folder: Path) -> Iterator[str]:
        name = f"vrp_verify_{secrets.token_hex(6)}"
        scratch = _sa_url(url).set(database=name)
        # Noted before it exists: whoever finds the folder of a killed verify drops it.
        note_database(folder, name)
        engine = sa.create_engine(
            self._maintenance_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                yield scratch.render_as_string(hide_password=False)
            finally:
                with engine.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()
