"""Content-addressed store for the audio bytes of recordings.

A blob lives at ``root/ab/cd/<sha256>``, named by the SHA-256 of its content, so identical
uploads are stored once and a blob never changes after it is written. The two-level fan-out
keeps directories small (65,536 leaves) however many recordings there are.

Writes are crash safe: bytes go to a temp file in ``root/tmp/`` (same filesystem), are fsynced,
then renamed into place with :func:`os.replace` and the directory is fsynced. A blob path
therefore either holds the complete content or does not exist; a crash leaves at most a file
in ``root/tmp/``, which every read ignores and :meth:`BlobStore.sweep_temp` removes.

The store does not count references: the caller deletes a blob only when no recording points
at its hash any more. Two concurrent uploads of the same new content may both report
``created=True``; the second rename replaces identical bytes, so nothing is lost.

Deciding to delete a blob and deciding to reference it are check-then-act steps that race
across threads and processes (a purge finds no reference and deletes while an upload that found
the blob on disk commits its row). :meth:`BlobStore.locked` serialises them per hash with a
file lock (``root/locks/<first two hex digits>.lock``, 256 stripes, ``filelock``); callers hold
it from "the blob is there" to the commit of the row, and from "no row references it" to the
deletion.

A backup reads the database snapshot first and copies the blobs it references afterwards, so a
purge committed in between must not take those blobs away. :meth:`BlobStore.snapshot_hold`
(handed to the backup through :mod:`recorder.backup_source`) holds a shared ``flock`` on
``root/locks/snapshot.lock`` from before the snapshot until the backup is done; while any
process holds it, :meth:`BlobStore.delete` moves a blob to ``root/retained/<sha256>`` instead of
unlinking it, where the backup finds it. A purge that finds no hold (its non-blocking exclusive
``flock`` is granted) unlinks, and empties ``retained/`` too. The order makes this safe: a purge
looks for a hold only after its row deletion committed, and a backup takes the hold before its
snapshot begins, so a hold the purge misses belongs to a snapshot that no longer sees the row.
A hold dies with its process (the kernel drops the ``flock``), so a killed backup never keeps
blobs for ever.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from filelock import FileLock, Timeout

from recorder.audio import HEAD_BYTES
from recorder.errors import NotFoundError, PayloadTooLargeError, StorageError

logger = logging.getLogger(__name__)

CHUNK_BYTES: Final = 64 * 1024
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_FAN_OUT: Final = re.compile(r"[0-9a-f]{2}")
_TEMP_PREFIX: Final = "upload-"
RETAINED: Final = "retained"
_SNAPSHOT_LOCK: Final = "snapshot.lock"
# Renames into a fan-out folder that a concurrent purge just removed; one retry nearly always
# suffices, a few bound it.
_RENAME_ATTEMPTS: Final = 5
# A holder does a few file-system calls and one short transaction; waiting longer means a stuck
# process, which the caller reports as storage trouble rather than hanging the request.
LOCK_TIMEOUT_SECONDS: Final = 30.0
# What to do about the disk failures an operator can fix, by errno.
_ADVICE: Final = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free disk space or raise the quota",
    errno.EACCES: "make the storage directory writable by the service user",
    errno.EPERM: "make the storage directory writable by the service user",
    errno.EROFS: "mount the storage read-write",
    errno.ENOTDIR: "point the storage setting at a directory",
    errno.EEXIST: "point the storage setting at a directory",
}


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """The outcome of :meth:`BlobStore.put`.

    ``created`` is False when identical content was already stored. ``head`` holds the first
    :data:`recorder.audio.HEAD_BYTES` bytes of the upload (all of it if shorter), so the caller
    can detect the format without reading the file again.
    """

    sha256: str
    size: int
    path: Path
    created: bool
    head: bytes


class BlobStore:
    """Audio blobs on the local filesystem under ``root``, each at most ``max_bytes`` long.

    Directories are created on first write; constructing a store touches nothing. Every disk
    failure surfaces as :class:`StorageError` with the :class:`OSError` as ``__cause__``.
    Methods taking a hash raise :class:`ValueError` unless it is 64 lowercase hex digits, so no
    caller input can name a path outside the store.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._tmp = self.root / "tmp"
        self._locks = self.root / "locks"
        self._retained = self.root / RETAINED

    def put(self, stream: BinaryIO) -> StoredBlob:
        """Store everything ``stream`` yields; returns where it went and whether it is new.

        Raises :class:`PayloadTooLargeError` as soon as more than ``max_bytes`` arrive, and
        :class:`StorageError` if the disk refuses; in both cases nothing is left behind.
        Errors raised by ``stream.read`` itself propagate unchanged.
        """
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix=_TEMP_PREFIX, suffix=".part")
        except OSError as e:
            raise self._error("cannot create a temp file", e) from e
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size, head = self._copy(stream, out)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp, digest, size, head)
        except OSError as e:
            _discard(tmp)
            raise self._error("cannot write the upload", e) from e
        except BaseException:
            _discard(tmp)
            raise

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this hash lives (or would live); does not check it exists."""
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r:.80}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading; the caller closes it.

        Raises :class:`NotFoundError` if no blob has this hash.
        """
        path = self.path_for(sha256)
        try:
            return path.open("rb")
        except FileNotFoundError as e:
            raise NotFoundError(
                f"audio blob {sha256} is missing from storage; restore it from a backup"
            ) from e
        except OSError as e:
            raise self._error(f"cannot read audio blob {sha256}", e) from e

    @contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """Hold the lock of this hash (shared with 1/256 of all hashes) for the block.

        Exclusive across threads and processes on this host. Raises :class:`StorageError` if
        the lock cannot be created or is not granted within ``LOCK_TIMEOUT_SECONDS``.
        """
        self.path_for(sha256)
        path = self._locks / f"{sha256[:2]}.lock"
        try:
            self._locks.mkdir(parents=True, exist_ok=True)
            lock = FileLock(path, timeout=LOCK_TIMEOUT_SECONDS)
            lock.acquire()
        except Timeout as e:  # before OSError: filelock's Timeout is a TimeoutError
            raise StorageError(
                f"the audio blob lock {path} was not granted within {LOCK_TIMEOUT_SECONDS:.0f} s;"
                " another process holds it, retry later"
            ) from e
        except OSError as e:
            raise self._error("cannot take the audio blob lock", e) from e
        try:
            yield
        finally:
            lock.release()

    def exists(self, sha256: str) -> bool:
        """True if a complete blob with this hash is stored."""
        return self.path_for(sha256).is_file()

    def delete(self, sha256: str) -> bool:
        """Remove a blob and the fan-out folders it leaves empty; False if it was already gone.

        Call only once no recording references the hash any more. While a backup holds
        :meth:`snapshot_hold`, the blob is moved to :meth:`retained_path` instead, for that
        backup's snapshot may reference it.
        """
        path = self.path_for(sha256)
        try:
            with self._snapshot_lock(fcntl.LOCK_EX | fcntl.LOCK_NB) as unheld:
                if unheld:
                    path.unlink()
                    self._empty_retained()
                else:
                    self._retained.mkdir(parents=True, exist_ok=True)
                    os.replace(path, self.retained_path(sha256))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._error(f"cannot delete audio blob {sha256}", e) from e
        self._prune(path.parent)
        return True

    def retained_path(self, sha256: str) -> Path:
        """Where a blob deleted during a :meth:`snapshot_hold` is kept until no hold remains."""
        self.path_for(sha256)
        return self._retained / sha256

    def snapshot_hold(self) -> AbstractContextManager[None]:
        """While held (by any thread or process), deleted blobs are retained, not unlinked.

        Shared: holders never wait for each other, and a delete never waits for a holder. On
        the way out the retained blobs are removed unless another hold remains (a failure there
        is a warning: the next delete without a hold removes them). The lock file is opened
        here, so a :class:`StorageError` comes from this call, never from the block.
        """
        return self._holding(self._open_snapshot_lock())

    @contextmanager
    def _holding(self, fd: int) -> Iterator[None]:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)
        try:
            with self._snapshot_lock(fcntl.LOCK_EX | fcntl.LOCK_NB) as unheld:
                if unheld:
                    self._empty_retained()
        except (OSError, StorageError):
            logger.warning("could not remove the blobs retained for a backup", exc_info=True)

    def _open_snapshot_lock(self) -> int:
        try:
            self._locks.mkdir(parents=True, exist_ok=True)
            return os.open(self._locks / _SNAPSHOT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise self._error("cannot open the backup snapshot lock", e) from e

    @contextmanager
    def _snapshot_lock(self, operation: int) -> Iterator[bool]:
        """``flock`` the snapshot lock file; yields whether a non-blocking request was granted."""
        fd = self._open_snapshot_lock()
        try:
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _empty_retained(self) -> None:
        """Remove the retained blobs; the caller holds the snapshot lock exclusively."""
        for name in self._listdir(self._retained):
            (self._retained / name).unlink(missing_ok=True)

    def _prune(self, leaf: Path) -> None:
        """Remove ``leaf`` and then its parent if they are empty; never below ``root``.

        ``rmdir`` refuses a folder that is not empty, so a blob another upload renamed in
        meanwhile is never lost; an upload racing the removal recreates the folder (``_commit``).
        """
        for directory in (leaf, leaf.parent):
            try:
                directory.rmdir()
            except OSError:
                return

    def check_writable(self) -> None:
        """Prove the store accepts writes by creating, syncing and removing a probe file.

        For readiness checks; raises :class:`StorageError` naming the reason.
        """
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self._tmp, prefix="probe-") as probe:
                probe.write(b"ok")
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as e:
            raise self._error("audio storage is not writable", e) from e

    def iter_blobs(self) -> Iterator[str]:
        """Yield the hash of every stored blob, in sorted order; temp files are never included.

        Meant for backups and verification; a blob added or removed while iterating may or may
        not be seen.
        """
        for top in self._subdirs(self.root):
            for sub in self._subdirs(top):
                for name in self._listdir(sub):
                    if (
                        _SHA256_HEX.fullmatch(name)
                        and name[:2] == top.name
                        and name[2:4] == sub.name
                    ):
                        yield name

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by crashed uploads; returns how many were removed.

        An upload in progress touches its temp file with every chunk, so an age well above the
        slowest expected upload (an hour, say) never removes a live one.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for name in self._listdir(self._tmp):
            path = self._tmp / name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._error(f"cannot remove stale temp file {name}", e) from e
        return removed

    def _copy(self, stream: BinaryIO, out: BinaryIO) -> tuple[str, int, bytes]:
        digest = hashlib.sha256()
        size = 0
        head = bytearray()
        while True:
            # One byte past the limit is enough to know the upload is too large.
            chunk = stream.read(min(CHUNK_BYTES, self.max_bytes - size + 1))
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLargeError(self.max_bytes)
            digest.update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            out.write(chunk)
        return digest.hexdigest(), size, bytes(head)

    def _commit(self, tmp: Path, sha256: str, size: int, head: bytes) -> StoredBlob:
        final = self.path_for(sha256)
        try:
            stored_size: int | None = final.stat().st_size
        except FileNotFoundError:
            stored_size = None
        if stored_size == size:
            _discard(tmp)
            return StoredBlob(sha256, size, final, created=False, head=head)
        if stored_size is not None:
            # Only a damaged disk or a hand edit can give a content-addressed file the wrong
            # size; the fresh, complete copy replaces it.
            logger.warning("replacing damaged audio blob", extra={"sha256": sha256})
        # A purge of another blob may remove an empty fan-out folder between our mkdir and the
        # rename (see _prune); the rename then finds no folder and is tried again.
        for attempt in range(_RENAME_ATTEMPTS):
            try:
                for directory in (final.parent.parent, final.parent):
                    if not directory.is_dir():
                        directory.mkdir(exist_ok=True)
                        _fsync_dir(directory.parent)
                os.replace(tmp, final)
                break
            except FileNotFoundError:
                if attempt == _RENAME_ATTEMPTS - 1 or not tmp.exists():
                    raise
        _fsync_dir(final.parent)
        return StoredBlob(sha256, size, final, created=True, head=head)

    def _subdirs(self, parent: Path) -> list[Path]:
        return [
            parent / name
            for name in self._listdir(parent)
            if _FAN_OUT.fullmatch(name) and (parent / name).is_dir()
        ]

    def _listdir(self, directory: Path) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise self._error(f"cannot list {directory}", e) from e

    def _error(self, what: str, cause: OSError) -> StorageError:
        reason = cause.strerror or type(cause).__name__
        advice = _ADVICE.get(cause.errno, "check the storage directory and its disk")
        return StorageError(f"{what} under {self.root}: {reason}; {advice}, then retry")


def _fsync_dir(directory: Path) -> None:
    """Make a rename or new entry in ``directory`` survive a power cut (POSIX needs this)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temp file on a failure path, where a second error must not mask the first."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        logger.warning("could not remove temp file", extra={"path": str(tmp)}, exc_info=True)
