"""The one exception family of the backup package.

Callers catch :class:`BackupError` for anything this package raises on purpose; the subclasses
name the failure so that a command line can choose its exit code (a bad setting is 2, a failed
verify is 1). Messages say what happened and what to do next, and never hold a password.
"""

from __future__ import annotations


class BackupError(Exception):
    """Base of every error raised on purpose by :mod:`backup`."""


class BackupConfigError(BackupError):
    """A ``VRP_BACKUP_*`` variable is unusable: the message names it, its value, what is allowed."""


class BackupNotFoundError(BackupError):
    """No complete backup has this id."""

    def __init__(self, backup_id: str) -> None:
        super().__init__(
            f"no complete backup with id {backup_id!r}; `vrp backup list` shows the ids"
        )
        self.backup_id = backup_id


class BackupLockedError(BackupError):
    """Another live process is running a backup on the same folder."""

    def __init__(self, lock_path: str, pid: int) -> None:
        super().__init__(f"another backup run (pid {pid}) holds {lock_path}; wait for it to finish")
        self.lock_path = lock_path
        self.pid = pid


class EngineError(BackupError):
    """A database engine could not take or restore a snapshot (missing tool, version mismatch,
    unreachable server, corrupt copy)."""


class UnsupportedDatabaseError(EngineError):
    """The database URL names a backend this package has no engine for."""


class BlobSourceError(BackupError):
    """A blob the database references is missing from the application's storage, or does not
    match its name."""


class SourceNotReadyError(BackupError):
    """The application's database cannot be backed up as it is (e.g. it is not migrated yet);
    raised by the application's referenced-blobs query, the message says what to run."""


class BackupSpaceError(BackupError):
    """The disk holding the backup folder ran out of space; the run was discarded."""


class ManifestError(BackupError):
    """A manifest is missing, unreadable, or names something it must not (absolute paths,
    paths escaping the backup folder, symlinks)."""


class VerifyError(BackupError):
    """A backup did not pass verification; ``report`` holds every problem found."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class RestoreError(BackupError):
    """A restore was refused (target exists without ``--force``) or failed."""


class NoVerifiedBackupError(BackupError):
    """Prune found no backup that passes its check, so it deleted nothing."""
