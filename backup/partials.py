"""Partial files beside a restore target: hidden, owned by a live process, removed once dead.

A restore writes a file under a temp name beside where it will end up (a SQLite database
beside ``--to PATH``, an audio blob beside its place in the storage folder) and renames it into
place only once it is proven. The temp name is hidden and says what it is,
``.<name>.restore-<pid>-<random>``, so it never looks like a usable database; its owner holds an
exclusive ``flock`` on it while it writes (the kernel drops it when the owner dies, however it
dies). The next restore to the same place removes what a dead one left there
(:func:`remove_dead`), with the SQLite sidecars (``-wal``, ``-shm``, ``-journal``) beside it,
and leaves a live restore's file alone: locked, or, in the instant between its creation and
its lock, named after a pid that still runs.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from pathlib import Path
from typing import Final

from backup.files import FILE_MODE
from backup.lock import other_process_running, try_lock

SIDECARS: Final = ("-wal", "-shm", "-journal")
_OWNER: Final = re.compile(r"(\d{1,10})-[0-9a-f]{12}")


def claim(target: Path) -> tuple[Path, int]:
    """A new empty 0600 file beside ``target``, and a read-write descriptor on it that holds its
    lock: the file is live until the descriptor is closed."""
    path = target.with_name(f".{target.name}.restore-{os.getpid()}-{secrets.token_hex(6)}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return path, fd


def remove(path: Path) -> None:
    """Remove a partial file and its SQLite sidecars."""
    for suffix in ("", *SIDECARS):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def remove_dead(target: Path) -> list[Path]:
    """Remove the partial files that dead restores left beside ``target``; the paths removed."""
    prefix = f".{target.name}.restore-"
    try:
        names = sorted(entry.name for entry in target.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        if not name.startswith(prefix):
            continue
        owner = name[len(prefix) :]
        sidecar = next((s for s in SIDECARS if owner.endswith(s)), "")
        match = _OWNER.fullmatch(owner.removesuffix(sidecar))
        path = target.with_name(name)
        if match is None or path.is_symlink() or not path.exists():
            continue
        if sidecar:
            if not os.path.lexists(target.with_name(name.removesuffix(sidecar))):
                path.unlink(missing_ok=True)  # its database is gone: nothing can use it
                removed.append(path)
            continue
        fd = try_lock(path)
        if fd is None:
            continue  # a live restore holds it
        try:
            if other_process_running(int(match.group(1))):
                continue  # made an instant ago, not locked yet
            remove(path)
            removed.append(path)
        finally:
            os.close(fd)
    return removed
