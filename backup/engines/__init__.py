"""Database engines: take a consistent snapshot, check one, restore one.

Every engine offers the same small interface (:class:`Engine`), so the run, verify and restore
code never asks which database it deals with; :func:`engine_for` picks one by the URL's backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backup.errors import UnsupportedDatabaseError
from backup.manifest import Artifact
from backup.source import ReferencedBlobs
from backup.stream import Progress

Event = Callable[[str], None]


@dataclass(frozen=True)
class Snapshot:
    """What an engine wrote into the run folder, and what that snapshot references."""

    artifact: Artifact
    blobs: tuple[str, ...]
    tables: dict[str, int] = field(default_factory=dict)


class Engine(Protocol):
    """A database backend's snapshot, check and restore."""

    name: str

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
        """Write a consistent, compressed, checksummed snapshot of ``url`` into ``run_dir``."""
        ...

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
        """Open the snapshot and return what is wrong with it (empty: it is sound).

        ``scratch`` is an empty private folder for whatever the check writes (the caller
        removes it, and the next run removes it if this process dies). ``full`` also restores
        it into a scratch database (on the server of ``scratch_url``) and compares row counts
        per table with ``tables`` where the light check cannot.
        """
        ...

    def drop_scratch(self, url: str, name: str) -> None:
        """Drop the scratch database ``name`` that a killed check made on the server of ``url``
        (its name was noted in its scratch folder, see :mod:`backup.scratch`)."""
        ...

    def check_restored(self, target: str, tables: dict[str, int]) -> list[str]:
        """What is wrong with a restored database (integrity, row counts per table)."""
        ...

    def restore(
        self, artifact: Path, target: str, *, force: bool, progress: Progress | None
    ) -> str:
        """Restore into ``target`` (a file path or a database URL); a description of what was
        replaced ("" when nothing was)."""
        ...

    def stage(self, target: str) -> str:
        """Claim where a restore into ``target`` writes until it is proven (SQLite: a new hidden
        file beside it, locked as live, that :meth:`publish` renames into place, after removing
        what dead restores left there; PostgreSQL: the database itself). Every restore that
        stages ends with :meth:`publish` or :meth:`discard`."""
        ...

    def publish(self, staged: str, target: str) -> None:
        """Put a proven restore in place."""
        ...

    def discard(self, staged: str, target: str) -> str:
        """Remove what a failed restore wrote; a sentence saying what is left at ``target``."""
        ...


def backend_name(url: str) -> str:
    """``sqlite`` or ``postgresql`` (or whatever the URL names)."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise UnsupportedDatabaseError(
            "the database URL is not a SQLAlchemy URL (e.g. sqlite:///var/vrp.db)"
        ) from exc


def engine_for(url: str) -> Engine:
    """The engine for the URL's backend."""
    name = backend_name(url)
    if name == "sqlite":
        from backup.engines.sqlite import SqliteEngine

        return SqliteEngine()
    if name == "postgresql":
        from backup.engines.postgresql import PostgresqlEngine

        return PostgresqlEngine()
    raise UnsupportedDatabaseError(
        f"no backup engine for {name!r} databases; supported: sqlite, postgresql"
    )


def engine_named(name: str) -> Engine:
    """The engine that wrote a manifest (its ``engine`` field)."""
    return engine_for(f"{name}://")


def compare_row_counts(expected: dict[str, int], actual: dict[str, int], where: str) -> list[str]:
    """One problem per table whose rows in ``actual`` (the database ``where`` names: "in the
    snapshot", "restored") differ from the manifest's ``expected``; empty when all match."""
    return [
        f"table {name}: {expected[name]} rows in the manifest, {actual.get(name)} {where}"
        for name in sorted(expected)
        if actual.get(name) != expected[name]
    ]
