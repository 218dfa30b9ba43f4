"""Verify from the remote alone: every object downloaded, checked, decrypted, then verified.

For each backup, the snapshot file's sealed part is decrypted (a failure names the file), every
object it references is downloaded once (a verify of several backups shares the blobs), its
ciphertext hashed against the snapshot file, decrypted (age authenticates every chunk, so a
flipped byte anywhere is found) and written into a scratch repository in the system's temp
folder, where :func:`backup.verify.verify_run_dir` does what a local verify does: the
database artifact's checksum, the snapshot opened and its row counts compared, every blob's
content hashed against its name. Each problem names the remote object (``data/aa/<id>``) and,
for a blob, the blob it holds.
"""

from __future__ import annotations

from pyrage import x25519

from backup.catalog import Catalog
from backup.encryption import DecryptionError
from backup.errors import BackupNotFoundError, ManifestError
from backup.remote import (
    FetchProblem,
    Remote,
    fetch_backup,
    list_snapshots,
    scratch_repository,
)
from backup.verify import Problem, VerifyReport, verify_run_dir


def verify_snapshots(
    remote: Remote,
    identities: list[x25519.Identity],
    *,
    backup_id: str | None = None,
    whole: bool = False,
) -> list[VerifyReport]:
    """Verify one backup (``backup_id``, default the newest) or every one (``whole``)."""
    snapshots, refused = list_snapshots(remote)
    if whole:
        chosen = snapshots
    elif backup_id is not None:
        chosen = [s for s in snapshots if s.id == backup_id]
        if not chosen:
            raise BackupNotFoundError(backup_id)
    else:
        chosen = snapshots[-1:]
    reports = [
        VerifyReport(name, (Problem(name, "the snapshot file is unreadable or malformed"),))
        for name in (refused if whole else [])
    ]
    with scratch_repository("vrp-remote-verify-") as scratch:
        for snapshot in chosen:
            fetched: list[FetchProblem] = []
            try:
                published = fetch_backup(remote, snapshot, identities, scratch, problems=fetched)
            except (DecryptionError, ManifestError) as exc:
                reports.append(VerifyReport(snapshot.id, (Problem(snapshot.path, str(exc)),)))
                continue
            problems = [Problem(p.file, p.message, p.expected, p.actual, p.blob) for p in fetched]
            if published:
                named = {p.blob for p in fetched if p.blob is not None}
                report = verify_run_dir(
                    scratch / "runs" / snapshot.id,
                    Catalog(scratch).blob_archive(),
                    full=True,
                )
                problems += [p for p in report.problems if p.blob is None or p.blob not in named]
                reports.append(
                    VerifyReport(
                        snapshot.id, tuple(problems), report.files, report.bytes, full=True
                    )
                )
            else:
                reports.append(VerifyReport(snapshot.id, tuple(problems), full=True))
    return reports
