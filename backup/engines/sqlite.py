"""SQLite: the online backup API in bounded steps, checked, compressed in one pass.

Consistency while other connections write: the source connection opens a read transaction
before the first step and keeps it until the last one. In WAL mode (the recorder's mode) that
pins one snapshot: every step copies pages of the same database state, writers in other
connections and processes keep committing to the WAL meanwhile, and the backup never restarts
(``sqlite3_backup_step`` restarts from page one when the source changes between steps under a
connection that holds no transaction, which with a busy writer may be forever). In rollback-
journal mode the held read lock makes writers wait until the copy is done; the copy is still
consistent. Steps of a few MiB with a short sleep between them keep each step short.

The copy is switched to the rollback journal (one self-contained file), then checked with
``PRAGMA integrity_check`` and queried for the referenced blobs and row counts in one thread
while the main thread compresses and hashes it (both release the GIL; a check failure
discards the run before any manifest is written).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backup.engines import Event, Snapshot
from backup.errors import EngineError, RestoreError
from backup.files import fsync_dir, open_private
from backup.manifest import Artifact
from backup.source import ReferencedBlobs
from backup.stream import Progress, compress_stream, decompress_stream

logger = logging.getLogger(__name__)

ARTIFACT: Final = "database.sqlite.zst"
STEP_BYTES: Final = 8 * 1024 * 1024
STEP_SLEEP_SECONDS: Final = 0.002
BUSY_TIMEOUT_SECONDS: Final = 30.0


def database_path(url: str) -> Path:
    """The file a ``sqlite:///`` URL names; in-memory databases cannot be backed up."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise EngineError("an in-memory SQLite database cannot be backed up; use a file")
    return Path(database.removeprefix("file:").split("?", 1)[0]).absolute()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def integrity_problems(connection: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s findings (empty when the database is sound)."""
    rows = [row[0] for row in connection.execute("PRAGMA integrity_check(20)")]
    return [] if rows == ["ok"] else rows


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, user tables only."""
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {
        name: connection.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
        for name in names
    }


def copy_online(source: Path, target: Path, progress: Progress | None = None) -> None:
    """Copy ``source`` into the new file ``target`` with the online backup API, in steps."""
    fd = open_private(target)
    os.close(fd)
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        page_size = src.execute("PRAGMA page_size").fetchone()[0]
        mode = src.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            logger.info(
                "database %s is in %s mode: writers wait until the copy is done", source, mode
            )
        # The read transaction pins one snapshot for every step (see the module docstring).
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        copied = 0

        def on_step(status: int, remaining: int, total: int) -> None:
            nonlocal copied
            done = (total - remaining) * page_size
            if progress is not None and done > copied:
                progress(done - copied)
            copied = done

        src.backup(
            dst,
            pages=max(64, STEP_BYTES // page_size),
            progress=on_step,
            sleep=STEP_SLEEP_SECONDS,
        )
        src.execute("COMMIT")
        # One self-contained file: no -wal/-shm beside the copy or a restored database.
        dst.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from exc
        raise EngineError(f"the online backup of {source} failed: {exc}") from exc
    finally:
        dst.close()
        src.close()
    with target.open("rb+") as out:
        os.fsync(out.fileno())


class _CopyCheck:
    """Integrity check, row counts and referenced blobs of a copy, in a thread of its own."""

    def __init__(self, copy: Path, referenced_blobs: ReferencedBlobs) -> None:
        self.copy = copy
        self.referenced_blobs = referenced_blobs
        self.problems: list[str] = []
        self.tables: dict[str, int] = {}
        self.blobs: tuple[str, ...] = ()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="backup-sqlite-check", daemon=True)

    def _run(self) -> None:
        try:
            connection = _open_readonly(self.copy)
            try:
                self.problems = integrity_problems(connection)
                self.tables = row_counts(connection)
            finally:
                connection.close()
            engine = sa.create_engine(
                "sqlite://", creator=lambda: _open_readonly(self.copy), poolclass=NullPool
            )
            try:
                with engine.connect() as conn:
                    self.blobs = tuple(sorted(set(self.referenced_blobs(conn))))
            finally:
                engine.dispose()
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()


class SqliteEngine:
    """Snapshots of a SQLite file."""

    name = "sqlite"

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
        source = database_path(url)
        if not source.is_file():
            raise EngineError(
                f"the SQLite database {source} does not exist; create it with `vrp db upgrade` "
                "or point VRP_DATABASE_URL at it"
            )
        copy = run_dir / "database.sqlite"
        started = time.monotonic()
        copy_online(source, copy, progress)
        logger.debug("copied %s in %.2fs", source, time.monotonic() - started)
        if on_event is not None:
            on_event("snapshot:copied")
        check = _CopyCheck(copy, referenced_blobs)
        check.start()
        artifact_path = run_dir / ARTIFACT
        fd = open_private(artifact_path)
        try:
            with copy.open("rb") as plain:
                result = compress_stream(plain, fd, level=level)
        finally:
            os.close(fd)
            check.join()
        if check.error is not None:
            if isinstance(check.error, sqlite3.Error):
                raise EngineError(f"checking the copy of {source} failed: {check.error}")
            raise check.error
        if check.problems:
            raise EngineError(
                f"the copy of {source} failed its integrity check: {'; '.join(check.problems[:3])}"
            )
        copy.unlink()
        fsync_dir(run_dir)
        artifact = Artifact(
            path=ARTIFACT,
            sha256=result.stored_sha256,
            bytes=result.plain_bytes,
            stored_bytes=result.stored_bytes,
        )
        return Snapshot(artifact=artifact, blobs=check.blobs, tables=check.tables)

    def check(
        self,
        artifact: Path,
        tables: dict[str, int],
        *,
        full: bool,
        progress: Progress | None,
        scratch_url: str | None = None,
    ) -> list[str]:
        # Opening a SQLite snapshot means writing it out as a file: light and full are one.
        with tempfile.TemporaryDirectory(prefix="vrp-verify-") as scratch:
            copy = Path(scratch) / "database.sqlite"
            _decompress_to(artifact, copy, progress)
            connection = _open_readonly(copy)
            try:
                problems = [f"integrity check: {p}" for p in integrity_problems(connection)]
                if not problems:
                    problems += _compare_counts(tables, row_counts(connection))
            except sqlite3.DatabaseError as exc:
                problems = [f"cannot open the snapshot as a SQLite database: {exc}"]
            finally:
                connection.close()
        return problems

    def check_restored(self, target: str, tables: dict[str, int]) -> list[str]:
        connection = _open_readonly(Path(target))
        try:
            problems = [f"integrity check: {p}" for p in integrity_problems(connection)]
            return problems or _compare_counts(tables, row_counts(connection))
        finally:
            connection.close()

    def restore(
        self, artifact: Path, target: str, *, force: bool, progress: Progress | None
    ) -> str:
        path = Path(target).absolute()
        replaced = ""
        if path.exists():
            if not force:
                raise RestoreError(
                    f"{path} exists; restore into a new path, or add --force to replace it"
                )
            replaced = f"the SQLite database {path}"
        if not path.parent.is_dir():
            raise RestoreError(f"the folder {path.parent} does not exist; create it first")
        tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
        try:
            _decompress_to(artifact, tmp, progress)
            connection = _open_readonly(tmp)
            try:
                problems = integrity_problems(connection)
            finally:
                connection.close()
            if problems:
                raise RestoreError(
                    f"the restored database failed its integrity check: {'; '.join(problems)}"
                )
            # A stale WAL beside the new file would be replayed into it: drop it first.
            for suffix in ("-wal", "-shm", "-journal"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return replaced


def _decompress_to(artifact: Path, target: Path, progress: Progress | None) -> None:
    fd = open_private(target, exclusive=False)
    with os.fdopen(fd, "wb") as out, artifact.open("rb") as src:
        decompress_stream(src, out.write, progress=progress)
        out.flush()
        os.fsync(out.fileno())


def _compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    return [
        f"table {name}: {expected[name]} rows in the manifest, {actual.get(name)} in the snapshot"
        for name in sorted(expected)
        if actual.get(name) != expected[name]
    ]
