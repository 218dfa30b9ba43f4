"""The catalog: the complete backups on disk, read from their manifests.

Layout under ``backup_dir``::

    runs/<id>/manifest.json           a complete backup (the manifest is written last)
    runs/<id>/database.*.zst          the database snapshot
    checks/<id>.json                  the latest check of each backup (see backup.checks)
    blobs/<aa>/<sha256>.zst           the shared blob archive (see backup.blobs)
    tmp/<id>/                         a run in progress, or one that was killed
    tmp/verify-<pid>-<random>/        a verify's scratch (see backup.scratch)
    .lock                             the run lock (see backup.lock)

A run is built in ``tmp/<id>/`` and renamed into ``runs/`` only once its manifest is durable,
so ``runs/`` never holds an incomplete backup; a folder there without a valid manifest (a
hand-made copy gone wrong) is skipped and logged, never listed.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from backup import checks
from backup import manifest as manifests
from backup.blobs import BlobArchive
from backup.errors import BackupNotFoundError, ManifestError
from backup.files import fsync_dir

logger = logging.getLogger(__name__)

RUNS: Final = "runs"
BLOBS: Final = "blobs"
TMP: Final = "tmp"
LOCK: Final = ".lock"
_ID: Final = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def valid_id(backup_id: str) -> bool:
    """Ids look like ``20261128T201500Z-3f9a1c``: sortable by time, safe as a folder name."""
    return bool(_ID.fullmatch(backup_id))


@dataclass(frozen=True)
class BackupInfo:
    """One complete backup, as retention, listing and the dashboard need it.

    ``verified`` is True when the latest check of these manifest bytes passed; ``checked_at``
    says when that check (passed or failed) ran, None when no valid record exists.
    """

    id: str
    path: Path
    created_at: datetime
    trigger: str
    verified: bool
    blobs: frozenset[str]
    bytes: int
    stored_bytes: int
    engine: str = ""
    files: int = 0
    checked_at: datetime | None = None


class Catalog:
    """The complete backups under ``backup_dir``."""

    def __init__(self, backup_dir: Path) -> None:
        self.backup_dir = backup_dir
        self.runs_dir = backup_dir / RUNS
        self.tmp_dir = backup_dir / TMP

    def list(self) -> list[BackupInfo]:
        """Complete backups (manifest present and valid), oldest first."""
        if not self.runs_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.runs_dir.iterdir()):
            if not valid_id(entry.name) or not entry.is_dir() or entry.is_symlink():
                continue
            try:
                found.append(self._info(entry))
            except ManifestError as exc:
                logger.warning("skipping %s: %s", entry, exc)
        return sorted(found, key=lambda info: (info.created_at, info.id))

    def unreadable(self) -> list[Path]:
        """Run folders whose manifest is present but refused (damaged, tampered, malformed).

        They are not backups, but the blobs they reference cannot be known either: retention
        must not take those blobs for garbage while such a folder is there.
        """
        if not self.runs_dir.is_dir():
            return []
        refused = []
        for entry in sorted(self.runs_dir.iterdir()):
            if not valid_id(entry.name) or not entry.is_dir() or entry.is_symlink():
                continue
            if not (entry / manifests.MANIFEST_NAME).exists():
                continue
            try:
                self._info(entry)
            except ManifestError:
                refused.append(entry)
        return refused

    def get(self, backup_id: str) -> BackupInfo:
        """The complete backup with this id; BackupNotFoundError when there is none,
        ManifestError when its manifest is refused."""
        path = self.runs_dir / backup_id
        if not valid_id(backup_id) or not path.is_dir() or path.is_symlink():
            raise BackupNotFoundError(backup_id)
        if not (path / manifests.MANIFEST_NAME).exists():
            raise BackupNotFoundError(backup_id)
        # A folder whose manifest is present but refused (tampered, malformed) says why.
        return self._info(path)

    def manifest(self, backup_id: str) -> manifests.Manifest:
        """The validated manifest of a complete backup."""
        return manifests.read(self.get(backup_id).path)

    def delete(self, backup_id: str) -> None:
        """Remove a backup's run folder; blobs are left to the caller (retention)."""
        info = self.get(backup_id)
        # Drop the manifest first: a crash halfway leaves a folder that no longer lists.
        (info.path / manifests.MANIFEST_NAME).unlink()
        fsync_dir(info.path)
        shutil.rmtree(info.path)
        fsync_dir(self.runs_dir)
        checks.remove(self.backup_dir, backup_id)

    def blob_archive(self) -> BlobArchive:
        return BlobArchive(self.backup_dir / BLOBS)

    def _info(self, path: Path) -> BackupInfo:
        doc = manifests.read(path)
        if doc.id != path.name:
            raise ManifestError(f"manifest id {doc.id!r} does not match its folder")
        check = checks.read(self.backup_dir, path)
        return BackupInfo(
            id=doc.id,
            path=path,
            created_at=doc.created_at,
            trigger=doc.trigger,
            verified=check is not None and check.ok,
            blobs=frozenset(b.sha256 for b in doc.blobs),
            bytes=doc.bytes,
            stored_bytes=doc.stored_bytes,
            engine=doc.engine,
            files=doc.files,
            checked_at=check.checked_at if check is not None else None,
        )
