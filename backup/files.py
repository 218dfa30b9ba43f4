"""File-system habits every backup file follows: private modes, fsync, atomic replacement.

Backups hold the users' recordings, so files are created 0600 and folders 0700 whatever the
umask. A file is durable only once it and its directory entry are fsynced; :func:`write_atomic`
does the temp file, fsync, rename, directory fsync dance so a reader sees the old content or the
new one, never a torn file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


def make_private_dir(path: Path) -> list[Path]:
    """Create ``path`` and any missing parents with mode 0700 (existing ones keep their mode);
    the folders this call created, outermost first."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    created = []
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)
        created.append(directory)
    return created


def remove_empty_dirs(created: list[Path]) -> None:
    """Undo :func:`make_private_dir`: remove the folders it created, innermost first, as long
    as they are empty (a folder something else has written into since stays)."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            continue


def open_private(path: Path, *, exclusive: bool = True) -> int:
    """Open ``path`` for writing with mode 0600; a file descriptor the caller closes."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, directory fsync."""
    write_through(path.with_name(f".{path.name}.tmp-{os.getpid()}"), path, data)


def write_through(tmp: Path, path: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp`` (mode 0600), fsync it, rename it to ``path`` and fsync the
    folder; ``tmp`` is removed when any step fails."""
    fd = open_private(tmp, exclusive=False)
    try:
        with os.fdopen(fd, "wb", closefd=True) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
