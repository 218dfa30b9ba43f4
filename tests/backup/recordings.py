"""A recorder-shaped database at the sizes users have: the recorder's own tables, thousands
of recordings with tags, referencing a set of audio blobs in a folder."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recorder.backup_source import blob_path
from recorder.models import Base, Recording, Tag, recording_tags
from tests.backup.helpers import write_blob


def sa_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, poolclass=sa.NullPool)


def fill_recordings(
    url: str, storage: Path, *, recordings: int, blobs: int = 20, tags: int = 50
) -> None:
    """Create the recorder's tables in ``url`` and fill them; the audio goes to ``storage``."""
    shas = [write_blob(storage, os.urandom(4_000)) for _ in range(blobs)]
    assert all(blob_path(storage, sha).is_file() for sha in shas)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    engine = sa_engine(url)
    try:
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(Tag), [{"id": i + 1, "name": f"tag-{i}"} for i in range(tags)])
            conn.execute(
                sa.insert(Recording),
                [
                    {
                        "id": i + 1,
                        "public_id": uuid.uuid4(),
                        "title": f"Interview {i}: {os.urandom(24).hex()}",
                        "original_filename": f"take-{i:06d}.wav",
                        "sha256": shas[i % blobs],
                        "mime_type": "audio/wav",
                        "audio_format": "wav",
                        "idempotency_key": str(uuid.uuid4()),
                        "idempotency_fingerprint": os.urandom(32).hex(),
                        "size_bytes": 4_000,
                        "duration_seconds": 12.5 + i % 60,
                        "sample_rate": 44_100,
                        "channels": 1,
                        "status": "active",
                        "created_at": start + timedelta(minutes=i),
                        "updated_at": start + timedelta(minutes=i),
                        "version": 1,
                    }
                    for i in range(recordings)
                ],
            )
            conn.execute(
                sa.insert(recording_tags),
                [
                    {"recording_id": i + 1, "tag_id": (i * 7 + k) % tags + 1}
                    for i in range(recordings)
                    for k in range(2)
                ],
            )
    finally:
        engine.dispose()
