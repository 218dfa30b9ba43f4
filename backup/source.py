"""What the application hands the backup package: where its data is and what it references.

The backup package knows nothing of the application's tables. The application supplies a
:class:`BackupSource`: its database URL, its blob folder, the query listing the sha256 of every
blob its rows reference (run on the snapshot, so the manifest lists exactly what the snapshot
references), and where a blob of a given sha256 lives in its folder.

An application that deletes blobs while it runs also hands in a hold: the run holds it from
before the snapshot until the backup is published, and while it is held the
application keeps every blob it deletes where ``retained_blob_path`` finds it. Without that, a
blob the snapshot references but the application deleted meanwhile would fail the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

ReferencedBlobs = Callable[[sa.Connection], Iterable[str]]
BlobPath = Callable[[Path, str], Path]
BlobHold = Callable[[], AbstractContextManager[object]]


def fan_out_path(storage_dir: Path, sha256: str) -> Path:
    """``storage_dir/ab/cd/<sha256>``: the two-level fan-out the recorder's blob store uses."""
    return storage_dir / sha256[:2] / sha256[2:4] / sha256


def no_blobs(connection: sa.Connection) -> Iterable[str]:
    """For a database that references no blobs."""
    return ()


def no_hold() -> AbstractContextManager[object]:
    """For an application that never deletes a blob while a backup may need it."""
    return nullcontext()


@dataclass(frozen=True)
class BackupSource:
    """One application's data: a database and the content-addressed blobs it references."""

    database_url: str
    storage_dir: Path
    referenced_blobs: ReferencedBlobs = no_blobs
    blob_path: BlobPath = fan_out_path
    hold_blobs: BlobHold = no_hold
    retained_blob_path: BlobPath | None = None

    def blob_candidates(self, sha256: str) -> tuple[Path, ...]:
        """Where to read a blob, in order: its place, then where a hold retains it."""
        paths = (self.blob_path(self.storage_dir, sha256),)
        if self.retained_blob_path is not None:
            paths += (self.retained_blob_path(self.storage_dir, sha256),)
        return paths
