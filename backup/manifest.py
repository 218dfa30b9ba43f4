"""The manifest: what one backup holds, with a sha256 for every artifact, written last.

A run folder without ``manifest.json`` is not a backup. The manifest names the database
artifact(s) by a path relative to the run folder, and the audio blobs the snapshot references
by their sha256 (the blobs themselves live in the shared archive, see :mod:`backup.blobs`).
Reading a manifest validates it: artifact paths must be plain relative names that stay inside
the run folder (no absolute path, no ``..``, no symlink on the way), and blob names must be
sha256 hex digests, so that a tampered manifest cannot make verify or restore touch files
outside the backup.

The manifest carries a checksum of itself (format 2): ``checksum`` is the sha256 of its canonical
JSON (sorted keys, no whitespace) without that field, so a changed byte in any value (a size, a
hash, a row count) is refused on reading, and verify also compares the file with its canonical
rendering, which catches a changed byte in the whitespace. Format 1 manifests (written before
the checksum, never released) are still read for listing and restoring, but verify reports that
they cannot be proven: take a new backup.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson

from backup.errors import ManifestError
from backup.files import write_atomic

MANIFEST_NAME: Final = "manifest.json"
FORMAT: Final = 2
UNCHECKED_FORMAT: Final = 1
CHECKSUM_KEY: Final = "checksum"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Artifact:
    """One file of the run folder. ``sha256`` is of the stored (compressed) bytes; ``bytes``
    is the logical size before compression."""

    path: str
    sha256: str
    bytes: int
    stored_bytes: int
    compression: str = "zstd"


@dataclass(frozen=True)
class BlobEntry:
    """An audio blob the snapshot references, by the sha256 of its content."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    id: str
    created_at: datetime
    finished_at: datetime
    trigger: str
    engine: str
    database: str
    artifacts: tuple[Artifact, ...]
    blobs: tuple[BlobEntry, ...]
    stored_bytes: int
    tables: dict[str, int] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts) + sum(b.bytes for b in self.blobs)

    @property
    def files(self) -> int:
        return len(self.artifacts) + len(self.blobs)

    @property
    def database_artifact(self) -> Artifact:
        return self.artifacts[0]

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": self.format,
            "id": self.id,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "trigger": self.trigger,
            "engine": self.engine,
            "database": self.database,
            "tables": self.tables,
            "artifacts": [a.__dict__ for a in self.artifacts],
            "blobs": [b.__dict__ for b in self.blobs],
            "bytes": self.bytes,
            "stored_bytes": self.stored_bytes,
            "files": self.files,
        }
        if self.format != UNCHECKED_FORMAT:
            document[CHECKSUM_KEY] = checksum_of(document)
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def checksum_of(document: dict[str, Any]) -> str:
    """The sha256 of a manifest document's canonical JSON, its own checksum left out."""
    body = {key: value for key, value in document.items() if key != CHECKSUM_KEY}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _check_checksum(doc: dict[str, Any]) -> None:
    # A format-2 document, or any document with the field (a flipped "format" value must not
    # turn the check off), must hash to its recorded checksum.
    if doc.get("format") == UNCHECKED_FORMAT and CHECKSUM_KEY not in doc:
        return
    recorded, actual = doc.get(CHECKSUM_KEY), checksum_of(doc)
    if recorded != actual:
        raise ManifestError(
            f"manifest checksum mismatch (expected sha256 {recorded}, actual {actual}); the "
            "manifest was changed or damaged, so this backup cannot be trusted"
        )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ManifestError(f"manifest field {name!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise ManifestError(f"manifest field {name!r} has no time zone")
    return parsed.astimezone(UTC)


def check_relative(name: str) -> str:
    """Refuse a manifest path that is absolute or climbs out of the run folder."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or "\\" in name or name.startswith("~"):
        raise ManifestError(f"manifest path {name!r} is absolute; refusing this manifest")
    if any(part in ("..", ".", "") for part in name.split("/")):
        raise ManifestError(f"manifest path {name!r} escapes the backup folder; refusing it")
    return name


def resolve_inside(root: Path, name: str) -> Path:
    """``root / name``, refusing escapes and symlinks anywhere below ``root``."""
    check_relative(name)
    current = root
    for part in PurePosixPath(name).parts:
        current = current / part
        if current.is_symlink():
            raise ManifestError(f"manifest path {name!r} is a symlink; refusing this manifest")
    resolved = current.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ManifestError(f"manifest path {name!r} escapes the backup folder; refusing it")
    return current


def _sha(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ManifestError(f"{what} is not a sha256 hex digest: {value!r}")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"{what} is not a byte count: {value!r}")
    return value


def parse(data: bytes) -> Manifest:
    """Parse and validate a manifest document; ManifestError names what is wrong."""
    try:
        doc = orjson.loads(data)
        if doc.get("format") not in (UNCHECKED_FORMAT, FORMAT):
            raise ManifestError(
                f"manifest format {doc.get('format')!r} is not {UNCHECKED_FORMAT} or {FORMAT}"
            )
        _check_checksum(doc)
        artifacts = tuple(
            Artifact(
                path=check_relative(str(a["path"])),
                sha256=_sha(a["sha256"], f"artifact {a['path']!r} sha256"),
                bytes=_int(a["bytes"], "artifact bytes"),
                stored_bytes=_int(a["stored_bytes"], "artifact stored_bytes"),
                compression=str(a.get("compression", "zstd")),
            )
            for a in doc["artifacts"]
        )
        if not artifacts:
            raise ManifestError("manifest lists no database artifact")
        blobs = tuple(
            BlobEntry(sha256=_sha(b["sha256"], "blob"), bytes=_int(b["bytes"], "blob bytes"))
            for b in doc["blobs"]
        )
        return Manifest(
            id=str(doc["id"]),
            created_at=_parse_time(doc["created_at"], "created_at"),
            finished_at=_parse_time(doc["finished_at"], "finished_at"),
            trigger=str(doc["trigger"]),
            engine=str(doc["engine"]),
            database=str(doc["database"]),
            artifacts=artifacts,
            blobs=blobs,
            stored_bytes=_int(doc["stored_bytes"], "stored_bytes"),
            tables={str(k): int(v) for k, v in dict(doc.get("tables", {})).items()},
            format=int(doc["format"]),
        )
    except ManifestError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"manifest is malformed ({type(exc).__name__}: {exc})") from exc


def read(run_dir: Path) -> Manifest:
    """The validated manifest of a run folder."""
    path = run_dir / MANIFEST_NAME
    if path.is_symlink():
        raise ManifestError(f"{path} is a symlink; refusing this manifest")
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc


def write(run_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (temp file, fsync, rename, directory fsync)."""
    write_atomic(run_dir / MANIFEST_NAME, manifest.to_json())
