"""Check records: "verified" as a fact with a date, kept apart from the backups they judge.

Every check of a backup (the verify before a run publishes it, ``vrp backup verify``, a
repository check, the prune's proof of the backup it keeps) writes ``checks/<id>.json`` under
the backup folder, atomically: the outcome, when it was reached, by which check, the first
problems, and the sha256 of the manifest file it judged. A record binds to those manifest
bytes, so a manifest changed after its check has no check; and it carries the sha256 of its
own canonical JSON, so a record whose outcome was edited by hand reads as no check at all.
A backup lists as verified only through a record like that. Nothing deletes a backup on the
strength of a record alone: prune checks again (see :mod:`backup.check`).

``checks/rotation.json`` holds where the periodic check (:func:`backup.check.rotating_check`)
resumes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from backup.files import make_private_dir, write_atomic
from backup.manifest import MANIFEST_NAME

logger = logging.getLogger(__name__)

CHECKS: Final = "checks"
ROTATION: Final = "rotation.json"
_CHECKSUM: Final = "checksum"
_KEPT_PROBLEMS: Final = 20

# Which check wrote a record.
SCOPE_RUN: Final = "run"
SCOPE_BACKUP: Final = "backup"
SCOPE_REPOSITORY: Final = "repository"
SCOPE_ROTATION: Final = "rotation"
SCOPE_PRUNE: Final = "prune"


@dataclass(frozen=True)
class CheckRecord:
    """The latest check of one backup."""

    backup_id: str
    manifest_sha256: str
    ok: bool
    checked_at: datetime
    scope: str
    problems: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "backup_id": self.backup_id,
            "manifest_sha256": self.manifest_sha256,
            "ok": self.ok,
            "checked_at": self.checked_at.astimezone(UTC).isoformat(),
            "scope": self.scope,
            "problems": list(self.problems),
        }
        doc[_CHECKSUM] = _checksum(doc)
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def _checksum(doc: dict[str, Any]) -> str:
    body = {key: value for key, value in doc.items() if key != _CHECKSUM}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def checks_dir(backup_dir: Path) -> Path:
    return backup_dir / CHECKS


def manifest_sha256(run_dir: Path) -> str:
    """The sha256 of the manifest file's bytes, which a record binds to."""
    return hashlib.sha256((run_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def record(
    backup_dir: Path,
    run_dir: Path,
    *,
    ok: bool,
    scope: str,
    problems: tuple[str, ...] = (),
    backup_id: str | None = None,
) -> CheckRecord:
    """Write the outcome of a check of the backup in ``run_dir`` (published or about to be);
    ``backup_id`` defaults to the folder's name."""
    entry = CheckRecord(
        backup_id=backup_id or run_dir.name,
        manifest_sha256=manifest_sha256(run_dir),
        ok=ok,
        checked_at=datetime.now(UTC),
        scope=scope,
        problems=problems[:_KEPT_PROBLEMS],
    )
    folder = checks_dir(backup_dir)
    make_private_dir(folder)
    write_atomic(folder / f"{entry.backup_id}.json", entry.to_json())
    return entry


def read(backup_dir: Path, run_dir: Path) -> CheckRecord | None:
    """The latest check of the backup in ``run_dir``; None when it was never checked, or when
    the record is damaged, edited, or about other manifest bytes than the ones there now."""
    path = checks_dir(backup_dir) / f"{run_dir.name}.json"
    try:
        doc = orjson.loads(path.read_bytes())
        entry = CheckRecord(
            backup_id=str(doc["backup_id"]),
            manifest_sha256=str(doc["manifest_sha256"]),
            ok=doc["ok"] is True,
            checked_at=datetime.fromisoformat(str(doc["checked_at"])),
            scope=str(doc["scope"]),
            problems=tuple(str(p) for p in doc["problems"]),
        )
        if doc.get(_CHECKSUM) != _checksum(doc):
            logger.warning("ignoring %s: its checksum does not match its content", path)
            return None
        current = manifest_sha256(run_dir)
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    if entry.backup_id != run_dir.name or entry.manifest_sha256 != current:
        return None
    return entry


def remove(backup_dir: Path, backup_id: str) -> None:
    """Drop the record of a deleted backup."""
    (checks_dir(backup_dir) / f"{backup_id}.json").unlink(missing_ok=True)


def remove_orphans(backup_dir: Path, backup_ids: set[str]) -> int:
    """Drop the records of backups that are not in ``backup_ids`` (a run killed between its
    verify and its publication, a backup deleted while a check ran); how many went."""
    folder = checks_dir(backup_dir)
    if not folder.is_dir():
        return 0
    orphans = [
        path
        for path in folder.glob("*.json")
        if path.name != ROTATION and path.stem not in backup_ids
    ]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def read_rotation(backup_dir: Path) -> int:
    """The slot the periodic check reads next (0 when it never ran or its file is unusable)."""
    try:
        slot = orjson.loads((checks_dir(backup_dir) / ROTATION).read_bytes())["next_slot"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return 0
    return slot if isinstance(slot, int) and slot >= 0 else 0


def write_rotation(backup_dir: Path, next_slot: int, slots: int) -> None:
    folder = checks_dir(backup_dir)
    make_private_dir(folder)
    doc = {"next_slot": next_slot, "slots": slots, "checked_at": datetime.now(UTC).isoformat()}
    write_atomic(folder / ROTATION, orjson.dumps(doc))
