"""The run lock: one backup run at a time per backup folder.

``backup_dir/.lock`` holds the pid of the run that owns it, and the owner keeps an exclusive
``flock`` on it. The kernel drops a ``flock`` when its process dies, however it dies, so a lock
whose holder was killed is free for the next run, which logs the dead pid it takes over from;
a pid file alone would need a "is that pid still alive, and still us?" guess.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backup.errors import BackupLockedError
from backup.files import FILE_MODE, make_private_dir
from backup.repository import unusable
from instrumentation import conventions

logger = logging.getLogger(__name__)


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def run_lock(path: Path) -> Iterator[int | None]:
    """Hold the lock for the ``with`` body; yields the dead pid taken over, if any.

    Raises :class:`BackupLockedError` at once when a live process holds it, and a
    :class:`~backup.repository.RepositoryError` naming the path when the lock file cannot be
    opened (a folder in its place, a folder this user may not write).
    """
    try:
        make_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise unusable(path.parent, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupLockedError(str(path), _read_pid(fd) or 0) from None
        previous = _read_pid(fd)
        if previous is not None and previous != os.getpid():
            logger.warning(
                "taking over the backup lock %s left by process %d, which is no longer running",
                path,
                previous,
                extra={conventions.VRP_BACKUP_LOCK_PREVIOUS_PID: previous},
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        try:
            yield previous
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """A descriptor holding an exclusive ``flock`` on the file or folder ``path``, or None when
    another live owner holds it (or it is gone). The caller closes the descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def other_process_running(pid: int) -> bool:
    """Whether ``pid`` is a running process other than this one.

    Things named after their owner's pid are locked by it right after they are made; in that
    instant the pid tells a live owner from a dead one. This process is never a live owner
    of what it finds there: it cleans before it makes anything of its own.
    """
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
