"""The record of the last offsite copy to each remote, kept in the local repository.

``remotes/<remote id>.copy.json`` (beside the map of what was sent to that remote) is written
after every successful copy: which remote (its URL without credentials), when the copy ended,
and the newest backup the remote then held. ``vrp backup status`` reads these records, so it
shows the age of each remote's newest copy without connecting to any remote (a remote that is
down must not make ``status`` hang, and its stale record is exactly what should be seen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from backup.catalog import valid_id
from backup.files import make_private_dir, write_atomic

logger = logging.getLogger(__name__)

STATE_DIR: Final = "remotes"
_SUFFIX: Final = ".copy.json"
_ID_TIME: Final = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class LastCopy:
    """The last successful copy to one remote."""

    remote_id: str
    remote: str
    copied_at: datetime
    newest_backup: str | None

    @property
    def newest_created_at(self) -> datetime | None:
        """When the remote's newest backup was taken (its id is its start time)."""
        if self.newest_backup is None:
            return None
        return datetime.strptime(self.newest_backup[:16], _ID_TIME).replace(tzinfo=UTC)

    def to_json(self) -> dict[str, Any]:
        created = self.newest_created_at
        return {
            "remote_id": self.remote_id,
            "remote": self.remote,
            "copied_at": self.copied_at.isoformat(),
            "newest_backup": self.newest_backup,
            "newest_backup_created_at": created.isoformat() if created else None,
        }


def record_copy(backup_dir: Path, last: LastCopy) -> None:
    """Write the record of a successful copy (atomically, replacing the previous one)."""
    folder = backup_dir / STATE_DIR
    make_private_dir(folder)
    write_atomic(folder / f"{last.remote_id}{_SUFFIX}", orjson.dumps(last.to_json()))


def read_copies(backup_dir: Path) -> list[LastCopy]:
    """Every remote's last copy, by remote URL; an unreadable record is logged and skipped."""
    found = []
    for path in sorted((backup_dir / STATE_DIR).glob(f"*{_SUFFIX}")):
        try:
            doc = orjson.loads(path.read_bytes())
            newest = doc["newest_backup"]
            if newest is not None and not valid_id(str(newest)):
                raise ValueError(f"{newest!r} is not a backup id")
            found.append(
                LastCopy(
                    remote_id=str(doc["remote_id"]),
                    remote=str(doc["remote"]),
                    copied_at=datetime.fromisoformat(doc["copied_at"]),
                    newest_backup=None if newest is None else str(newest),
                )
            )
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring the unreadable %s (%s)", path, exc)
    return sorted(found, key=lambda c: c.remote)
