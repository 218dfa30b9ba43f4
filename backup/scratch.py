"""Scratch space under ``backup_dir/tmp``: made by the live, removed once its owner is dead.

Everything a command writes for a while and then throws away (a run being built, a snapshot
decompressed to be checked) lives in ``backup_dir/tmp``, never in the system temp folder: that
may be a tmpfs (memory) that nobody cleans, and a killed process leaves a full copy of the
database behind. What a dead process left there is removed by the next run and by
``vrp backup prune`` (:func:`remove_dead`), and only that:

* a run's folder (``tmp/<backup id>/``) is made and used under the repository lock, which the
  cleaner holds, so any run folder it finds belongs to a dead run;
* a scratch folder (``tmp/<purpose>-<pid>-<random>/``, :func:`scratch_folder`) may belong to a
  command that does not take the repository lock (``vrp backup verify``), so its owner holds an
  exclusive ``flock`` on it for as long as it uses it. The kernel drops the lock when the owner
  dies, however it dies. A folder is live while its lock is held; while it is being created
  (made, not yet locked) the pid in its name still runs, so it is kept then too.

A check that makes a scratch database on the PostgreSQL server notes its name in its scratch
folder first (:func:`note_database`); whoever finds the folder dead drops that database before
removing the folder, or keeps the folder (for the next run) when it cannot reach the server.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from backup.files import DIR_MODE, make_private_dir, write_atomic
from backup.lock import other_process_running, try_lock

if TYPE_CHECKING:
    from backup.blobs import BlobArchive

logger = logging.getLogger(__name__)

_SCRATCH: Final = re.compile(r"[a-z]{1,16}-(\d{1,10})-[0-9a-f]{12}")
DATABASE_NOTE: Final = "scratch-database"

DropDatabase = Callable[[str], None]


def note_database(folder: Path, name: str) -> None:
    """Record, durably, that the owner of ``folder`` is about to make the scratch database
    ``name``."""
    write_atomic(folder / DATABASE_NOTE, name.encode())


@contextmanager
def scratch_folder(tmp_dir: Path, purpose: str) -> Iterator[Path]:
    """A new private folder in ``tmp_dir``, locked as live while the ``with`` body runs and
    removed after it."""
    make_private_dir(tmp_dir)
    folder = tmp_dir / f"{purpose}-{os.getpid()}-{secrets.token_hex(6)}"
    folder.mkdir(mode=DIR_MODE)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, DIR_MODE)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)


def remove_dead(tmp_dir: Path, drop_database: DropDatabase | None = None) -> list[Path]:
    """Remove what dead processes left in ``tmp_dir``; the paths removed.

    Call it holding the repository lock (see the module docstring): a run folder found then
    belongs to a dead run. A dead folder that names a scratch database is removed only once
    ``drop_database`` has dropped it.
    """
    if not tmp_dir.is_dir():
        return []
    removed = []
    for entry in sorted(tmp_dir.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)  # nothing of ours: only folders are made here
            removed.append(entry)
            continue
        fd = try_lock(entry)
        if fd is None:
            continue  # its owner is alive and holds it
        try:
            match = _SCRATCH.fullmatch(entry.name)
            if match is not None and other_process_running(int(match.group(1))):
                continue  # being created: made, not locked yet
            if not _dropped(entry, drop_database):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


def _dropped(folder: Path, drop_database: DropDatabase | None) -> bool:
    """Whether the scratch database ``folder`` notes (if any) is gone now."""
    try:
        name = (folder / DATABASE_NOTE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        name = "(unreadable note)"
    if drop_database is None:
        logger.warning(
            "kept %s: a dead verify made the scratch database %s, which the next backup run drops",
            folder,
            name,
        )
        return False
    try:
        drop_database(name)
    except Exception as exc:
        logger.warning(
            "kept %s: dropping the scratch database %s a dead verify made failed (%s)",
            folder,
            name,
            exc,
        )
        return False
    logger.warning("dropped the scratch database %s, left by an interrupted verify", name)
    return True


def remove_leftovers(
    tmp_dir: Path, archive: BlobArchive, drop_database: DropDatabase | None = None
) -> None:
    """Remove what dead runs, verifies and prunes left: their folders in ``tmp_dir`` (and the
    scratch databases they name, given ``drop_database``) and the partial blob copies of the
    archive. The caller holds the repository lock."""
    for leftover in remove_dead(tmp_dir, drop_database):
        logger.warning("removed %s, left by an interrupted backup command", leftover)
    swept = archive.sweep_temp()
    if swept:
        logger.warning("removed %d partial blob copies left by an interrupted run", swept)
