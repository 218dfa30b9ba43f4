"""A small application for the backup tests: a SQLite or PostgreSQL table of rows that
reference content-addressed blobs in a folder, the shape the backup package expects."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from backup.manifest import CHECKSUM_KEY, checksum_of
from backup.repository import init_repository
from backup.settings import BackupSettings, load_backup_settings
from backup.source import BackupSource, fan_out_path

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, sha256 TEXT, payload BLOB)"


def referenced_blobs(connection: sa.Connection) -> Iterator[str]:
    for (sha256,) in connection.execute(sa.text("SELECT DISTINCT sha256 FROM items")):
        if sha256 is not None:
            yield sha256


def write_blob(storage: Path, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    path = fan_out_path(storage, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha256


def make_sqlite_app(
    root: Path, *, rows: int = 50, blobs: int = 4, blob_bytes: int = 20_000
) -> BackupSource:
    """A WAL SQLite database with ``rows`` rows referencing ``blobs`` blobs."""
    storage = root / "storage"
    db = root / "app.db"
    shas = [write_blob(storage, os.urandom(blob_bytes)) for _ in range(blobs)]
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(SCHEMA)
    connection.executemany(
        "INSERT INTO items (sha256, payload) VALUES (?, ?)",
        [(shas[i % len(shas)] if shas else None, os.urandom(200)) for i in range(rows)],
    )
    connection.commit()
    connection.close()
    return BackupSource(f"sqlite:///{db}", storage, referenced_blobs)


def backup_settings(root: Path, **env: str) -> BackupSettings:
    """The settings of a backup repository at ``root/backups``, made with ``vrp backup init``'s
    code (a folder named in VRP_BACKUP_DIR must be a repository)."""
    settings = load_backup_settings({"VRP_BACKUP_DIR": str(root / "backups"), **env}, cwd=root)
    init_repository(settings.backup_dir)
    return settings


def repository_dir(path: Path) -> Path:
    """``path`` made a backup repository, as ``vrp backup init`` makes it; returns ``path``."""
    init_repository(path)
    return path


def sqlite_rows(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        connection.close()


def flip_byte(path: Path, offset: int) -> None:
    """Flip every bit of one byte; a negative offset counts from the end."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def tamper_manifest(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Change a manifest document and sign it again, as a deliberate forger would: for the
    tests of the defences behind the manifest's own checksum (paths, row counts)."""
    doc = orjson.loads(path.read_bytes())
    change(doc)
    doc[CHECKSUM_KEY] = checksum_of(doc)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
