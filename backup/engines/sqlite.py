"""SQLite: the online backup API in bounded steps, compressed while it copies.

Consistency while other connections write: the source connection opens a read transaction
before the first step and keeps it until the last one. In WAL mode (the recorder's mode) that
pins one snapshot: every step copies pages of the same database state, writers in other
connections and processes keep committing to the WAL meanwhile, and the backup never restarts
(``sqlite3_backup_step`` restarts from page one when the source changes between steps under a
connection that holds no transaction, which with a busy writer may be forever). In rollback-
journal mode the held read lock makes writers wait until the copy is done; the copy is still
consistent. The copy goes in steps of a few MiB (progress is reported after each) with no pause
between them: in WAL mode writers do not wait for the reader, and in rollback-journal mode they
wait for the held read lock until the last step whatever the pauses, so a pause would only
make the copy (and their wait) longer. The source is read through SQLite's memory map
(``PRAGMA mmap_size``): pages of the snapshot that are not in the WAL come from the mapped file
instead of one ``pread`` per page (on a 420 MB database here the copy's CPU time goes from
0.66 s to 0.56 s; pages in the WAL are read as before). SQLite maps only what it may read and a
checkpoint never rewrites or truncates pages a live snapshot uses, so the snapshot is the same;
the one difference is that a disk read error stops the process with SIGBUS instead of failing
the step, which leaves a killed run (nothing published, cleaned up by the next run).

The copy goes to a scratch file in the run folder (no journal, no fsync: it is read once and
deleted), then is compressed and hashed in one streamed pass, with zstd's worker threads,
while another thread counts the rows per table and runs the application's referenced-blobs
query on it. (The pages cannot be compressed while the copy runs: the destination's write
transaction stays open across steps and its pager writes pages out in whatever order its cache
spills them, so a page on disk is final only at the end.)

``PRAGMA integrity_check`` runs when the backup is verified, on the decompressed artifact, so
it checks exactly what a restore would get: by default before every run is published
(``VRP_BACKUP_VERIFY``), and on demand with ``vrp backup verify``. It is not repeated on the
scratch copy: it cross-checks every index entry and costs several times the copy (on a 420 MB
recorder database here: 7 s, and 2 s for ``quick_check``, against 0.9 s for the copy), which
``vrp backup run --no-verify`` is meant to skip.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backup import partials
from backup.engines import Event, Snapshot, compare_row_counts
from backup.errors import EngineError, RestoreError
from backup.files import fsync_dir, make_private_dir, open_private, remove_empty_dirs
from backup.manifest import Artifact
from backup.source import ReferencedBlobs
from backup.stream import Progress, compress_stream, decompress_stream

logger = logging.getLogger(__name__)

ARTIFACT: Final = "database.sqlite.zst"
STEP_BYTES: Final = 8 * 1024 * 1024
# SQLite clamps it to its compile-time limit (2 GiB by default); pages past it are read as usual.
MMAP_BYTES: Final = 1 << 40
BUSY_TIMEOUT_SECONDS: Final = 30.0


def database_path(url: str) -> Path:
    """The file a ``sqlite:///`` URL names; in-memory databases cannot be backed up."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise EngineError("an in-memory SQLite database cannot be backed up; use a file")
    return Path(database.removeprefix("file:").split("?", 1)[0]).absolute()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open_copy(path: Path) -> sqlite3.Connection:
    """Open a copy we own, never creating it. Read-write on purpose: the image keeps the
    source's WAL flag, and only a read-write connection removes the ``-wal`` and ``-shm``
    files beside it when it closes."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)


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
        # name: from sqlite_master, quoted as an identifier
        name: connection.execute(
            f"SELECT count(*) FROM {_quote(name)}"  # nosec B608
        ).fetchone()[0]
        for name in names
    }


def _copy(source: Path, target: Path, progress: Progress | None) -> None:
    """Copy ``source`` into the new file ``target`` with the online backup API, in steps."""
    # Read-only (a URI with mode=ro): a backup never creates or changes the source database.
    src = sqlite3.connect(
        f"file:{quote(str(source))}?mode=ro",
        uri=True,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
    )
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute(f"PRAGMA mmap_size={MMAP_BYTES}").fetchone()
        # The scratch copy needs no journal and no fsync: it is read back once, never kept.
        dst.execute("PRAGMA journal_mode=OFF").fetchone()
        dst.execute("PRAGMA synchronous=OFF")
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

        src.backup(dst, pages=max(64, STEP_BYTES // page_size), progress=on_step)
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from exc
        raise EngineError(f"the online backup of {source} failed: {exc}") from exc
    finally:
        dst.close()
        src.close()


class _CopyCheck:
    """Row counts and referenced blobs of the copy, on a thread of its own."""

    def __init__(self, copy: Path, referenced_blobs: ReferencedBlobs) -> None:
        self.copy = copy
        self.referenced_blobs = referenced_blobs
        self.tables: dict[str, int] = {}
        self.blobs: tuple[str, ...] = ()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="backup-sqlite-check", daemon=True)

    def _run(self) -> None:
        try:
            connection = _open_copy(self.copy)
            try:
                self.tables = row_counts(connection)
            finally:
                connection.close()
            engine = sa.create_engine(
                "sqlite://", creator=lambda: _open_copy(self.copy), poolclass=NullPool
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

    def __init__(self) -> None:
        # A restore's claimed partial file -> the descriptor holding its lock (see stage()).
        self._held: dict[str, int] = {}
        # A restore target -> the folders stage() created for it, removed again by discard().
        self._made_dirs: dict[str, list[Path]] = {}

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
        os.close(open_private(copy))
        _copy(source, copy, progress)
        if on_event is not None:
            on_event("snapshot:copied")
        check = _CopyCheck(copy, referenced_blobs)
        check.start()
        artifact_path = run_dir / ARTIFACT
        try:
            fd = open_private(artifact_path)
            try:
                with copy.open("rb") as plain:
                    result = compress_stream(
                        plain, fd, level=level, threads=-1, hash_plain=False, sync=False
                    )
                check.join()
                # Deleting the copy frees its pages from the page cache: CPU time (0.08-0.1 s
                # for 420 MB here) that runs while the artifact's fsync waits on the disk
                # (0.035 s). The copy's pages never go to disk first: written with delayed
                # allocation, they have no blocks for the fsync's journal commit to flush
                # (measured: the same fsync time with the copy deleted before or after).
                _remove_while(copy, lambda: os.fsync(fd))
            finally:
                os.close(fd)
        finally:
            check.join()
        if check.error is not None:
            if isinstance(check.error, sqlite3.Error):
                raise EngineError(f"checking the copy of {source} failed: {check.error}")
            raise check.error
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
        scratch: Path,
        scratch_url: str | None = None,
    ) -> list[str]:
        # Opening a SQLite snapshot means writing it out as a file: light and full are one.
        copy = scratch / "database.sqlite"
        _decompress_to(artifact, copy, progress)
        connection = _open_copy(copy)
        try:
            problems = [f"integrity check: {p}" for p in integrity_problems(connection)]
            if not problems:
                problems += compare_row_counts(tables, row_counts(connection), "in the snapshot")
        except sqlite3.DatabaseError as exc:
            problems = [f"cannot open the snapshot as a SQLite database: {exc}"]
        finally:
            connection.close()
        return problems

    def drop_scratch(self, url: str, name: str) -> None:
        raise EngineError(
            f"the scratch database {name} is on a PostgreSQL server and VRP_DATABASE_URL names "
            "a SQLite file; drop it there by hand"
        )

    def check_restored(self, target: str, tables: dict[str, int]) -> list[str]:
        # restore() ran the integrity check before the file took its place.
        connection = _open_copy(Path(target))
        try:
            return compare_row_counts(tables, row_counts(connection), "in the snapshot")
        finally:
            connection.close()

    def restore(
        self, artifact: Path, target: str, *, force: bool, progress: Progress | None
    ) -> str:
        # ``target`` is the file :meth:`stage` claimed: a new one, so nothing is replaced yet.
        path = Path(target)
        _decompress_to(artifact, path, progress)
        connection = _open_copy(path)
        try:
            problems = integrity_problems(connection)
        finally:
            connection.close()
        if problems:
            raise RestoreError(
                f"the restored database failed its integrity check: {'; '.join(problems)}"
            )
        return ""

    def stage(self, target: str) -> str:
        path = Path(target).absolute()
        self._made_dirs[target] = make_private_dir(path.parent)
        for leftover in partials.remove_dead(path):
            logger.warning("removed %s, left by an interrupted restore", leftover)
        staged, fd = partials.claim(path)
        self._held[str(staged)] = fd
        return str(staged)

    def publish(self, staged: str, target: str) -> None:
        path = Path(target).absolute()
        # A stale WAL beside the new file would be replayed into it: drop it first.
        for suffix in partials.SIDECARS:
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        os.replace(staged, path)
        fsync_dir(path.parent)
        self._release(staged)
        self._made_dirs.pop(target, None)

    def discard(self, staged: str, target: str) -> str:
        partials.remove(Path(staged))
        self._release(staged)
        remove_empty_dirs(self._made_dirs.pop(target, []))
        return f"nothing was written to {Path(target).absolute()} (the unchecked copy was removed)"

    def _release(self, staged: str) -> None:
        fd = self._held.pop(staged, None)
        if fd is not None:
            os.close(fd)


def _remove_while(path: Path, work: Callable[[], object]) -> None:
    """Delete ``path`` on another thread while ``work`` runs; raise what either raised."""
    failure: list[OSError] = []

    def remove() -> None:
        try:
            path.unlink()
        except OSError as exc:
            failure.append(exc)

    remover = threading.Thread(target=remove, name="backup-sqlite-remove")
    remover.start()
    try:
        work()
    finally:
        remover.join()
    if failure:
        raise failure[0]


def _decompress_to(artifact: Path, target: Path, progress: Progress | None) -> None:
    fd = open_private(target, exclusive=False)
    with os.fdopen(fd, "wb") as out, artifact.open("rb") as src:
        decompress_stream(src, out.write, progress=progress)
        out.flush()
        os.fsync(out.fileno())
