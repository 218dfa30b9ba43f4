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
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from backup.files import make_private_dir
from backup.lock import other_process_running, try_lock

if TYPE_CHECKING:
    from backup.blobs import BlobArchive

logger = logging.getLogger(__name__)

_SCRATCH: Final = re.compile(r"[a-z]{1,16}-(\d{1,10})-[0-9a-f]{12}")


@contextmanager
def scratch_folder(tmp_dir: Path, purpose: str) -> Iterator[Path]:
    """A new private folder in ``tmp_dir``, locked as live while the ``with`` body runs and
    removed after it."""
    make_private_dir(tmp_dir)
    folder = tmp_dir / f"{purpose}-{os.getpid()}-{secrets.token_hex(6)}"
    folder.mkdir(mode=0o700)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)


def remove_dead(tmp_dir: Path) -> list[Path]:
    """Remove what dead processes left in ``tmp_dir``; the paths removed.

    Call it holding the repository lock (see the module docstring): a run folder found then
    belongs to a dead run.
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
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


def remove_leftovers(tmp_dir: Path, archive: BlobArchive) -> None:
    """Remove what dead runs, verifies and prunes left: their folders in ``tmp_dir`` and the
    partial blob copies of the archive. The caller holds the repository lock."""
    for leftover in remove_dead(tmp_dir):
        logger.warning("removed %s, left by an interrupted backup command", leftover)
    swept = archive.sweep_temp()
    if swept:
        logger.warning("removed %d partial blob copies left by an interrupted run", swept)
