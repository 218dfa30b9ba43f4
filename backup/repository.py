"""The backup repository: a folder made one on purpose, with a marker naming it.

As ``restic init`` or a pgBackRest stanza, ``vrp backup init`` turns a folder into a backup
repository by writing ``repository.json`` (a repository id, the format version, when it was
made). Every command that reads or writes backups opens the repository first and refuses a
folder without the marker: with the backup disk unmounted, ``VRP_BACKUP_DIR`` names an empty
mount point (or nothing at all), and a backup must not land on the root file system, nor a
``vrp backup list`` say "no backups yet" about the wrong folder.

* A folder that already holds the backups of an earlier version (``runs/``, ``blobs/``, ...,
  no marker) is *adopted* by ``init``: the marker is added and the backups stay.
* A folder holding anything else is refused: a repository starts empty (or adopted).
* ``init`` on a repository changes nothing and returns it (scripts and ``vrp up`` call it
  freely).
* The marker is created with a hard link from a fully written temp file, so two ``init`` racing
  on one folder agree on one id.

Every failure is one line naming the path and the reason (:class:`RepositoryError`, or
:class:`NotARepositoryError` with what to run); an ``OSError`` never escapes as such.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from backup.errors import BackupError
from backup.files import fsync_dir, make_private_dir, open_private

MARKER: Final = "repository.json"
FORMAT: Final = 1
# What an earlier version of this package left in a backup folder: adopted by ``init``.
KNOWN_ENTRIES: Final = frozenset(
    {"runs", "blobs", "tmp", "checks", "remotes", ".lock", "scheduler-state.json", MARKER}
)


class RepositoryError(BackupError):
    """The backup folder cannot be used (or made) as a repository: the message says why."""


class NotARepositoryError(RepositoryError):
    """The backup folder has no repository marker; ``vrp backup init`` makes it one."""


@dataclass(frozen=True)
class Repository:
    """An opened repository. ``id`` is a random hex string, stable for the folder's life."""

    path: Path
    id: str
    format: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "id": self.id,
            "format": self.format,
            "created_at": self.created_at.isoformat(),
        }


def unusable(path: Path, exc: OSError) -> RepositoryError:
    """One line saying why the backup folder ``path`` cannot be used, from an ``OSError``."""
    where = Path(exc.filename) if exc.filename else path
    if exc.errno == errno.ENOTDIR:
        blocking = _file_in_the_way(path)
        if blocking == path:
            where, reason = path, "it is a file, not a folder"
        else:
            reason = f"{blocking} is a file, not a folder"
            where = path
    elif exc.errno == errno.EISDIR:
        reason = "it is a folder where a file belongs"
    else:
        reason = (exc.strerror or str(exc)).lower()
    named = reason if where == path else f"{where}: {reason}"
    return RepositoryError(
        f"the backup folder {path} cannot be used: {named}; set VRP_BACKUP_DIR to a folder "
        "this user can read and write"
    )


def _file_in_the_way(path: Path) -> Path:
    """The first part of ``path`` that exists and is not a folder (``path`` if none is found)."""
    for part in (*reversed(path.parents), path):
        if part.exists() and not part.is_dir():
            return part
    return path


def _not_a_repository(path: Path) -> NotARepositoryError:
    if not path.exists():
        return NotARepositoryError(
            f"{path} does not exist, so it is not a backup repository (is the backup disk "
            "mounted?); run `vrp backup init` to create one there"
        )
    return NotARepositoryError(
        f"{path} is not a backup repository (no {MARKER}); run `vrp backup init` to make it one"
    )


def open_repository(path: Path) -> Repository:
    """The repository at ``path``; NotARepositoryError without a marker, RepositoryError when the
    folder or the marker cannot be read. Reads only."""
    marker = path / MARKER
    try:
        raw = marker.read_bytes()
    except FileNotFoundError:
        raise _not_a_repository(path) from None
    except OSError as exc:
        raise unusable(path, exc) from exc
    try:
        doc = json.loads(raw)
        version = int(doc["format"])
        repository = Repository(
            path=path,
            id=str(doc["id"]),
            format=version,
            created_at=datetime.fromisoformat(doc["created_at"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RepositoryError(
            f"the repository marker {marker} is unreadable ({type(exc).__name__}: {exc}); "
            "restore it from a copy, or move the folder away and run `vrp backup init`"
        ) from exc
    if version > FORMAT:
        raise RepositoryError(
            f"the repository {path} has format {version}, newer than this vrp reads ({FORMAT}); "
            "upgrade vrp"
        )
    return repository


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_repository` did: ``created`` False for a folder that already was one;
    ``adopted`` True when the folder held backups of an earlier version."""

    repository: Repository
    created: bool
    adopted: bool


def init_repository(path: Path) -> InitResult:
    """Make ``path`` a repository (created 0700 if missing); a repository is left as it is."""
    try:
        return InitResult(open_repository(path), created=False, adopted=False)
    except NotARepositoryError:
        pass
    try:
        make_private_dir(path)
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as exc:
        raise unusable(path, exc) from exc
    foreign = [name for name in entries if name not in KNOWN_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise RepositoryError(
            f"{path} is not empty and holds no backups ({shown}); a backup repository starts "
            "in an empty folder: choose another VRP_BACKUP_DIR"
        )
    repository = Repository(
        path=path, id=uuid.uuid4().hex, format=FORMAT, created_at=datetime.now(UTC)
    )
    try:
        created = _create_marker(path, repository)
    except OSError as exc:
        raise unusable(path, exc) from exc
    if not created:  # another init won the race: its id is the repository's
        return InitResult(open_repository(path), created=False, adopted=False)
    return InitResult(repository, created=True, adopted="runs" in entries)


def _create_marker(path: Path, repository: Repository) -> bool:
    """Write the marker unless one exists; False when another process wrote it first."""
    doc = {k: v for k, v in repository.to_json().items() if k != "path"}
    payload = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    tmp = path / f".{MARKER}.tmp-{os.getpid()}"
    fd = open_private(tmp, exclusive=False)
    try:
        with os.fdopen(fd, "wb", closefd=True) as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path / MARKER)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path)
    return True


def repository_for(backup_dir: Path, *, init_if_missing: bool) -> Repository:
    """The repository a command works in: opened, or made first when ``init_if_missing`` (the
    default folder of a newcomer's checkout, and ``vrp up``)."""
    if init_if_missing:
        return init_repository(backup_dir).repository
    return open_repository(backup_dir)
