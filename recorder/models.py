"""The recorder's tables: recordings, tags and the link between them.

Timestamps are stored in UTC and always come back timezone-aware (SQLite keeps no zone, so
:class:`UTCDateTime` normalises on the way in and out). ``version`` drives SQLAlchemy's
optimistic concurrency: an UPDATE that finds another version raises ``StaleDataError``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and returned timezone-aware on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store them all zone-less in UTC so order holds.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class RecordingStatus(enum.StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    DELETED = "deleted"


recording_tags = sa.Table(
    "recording_tags",
    Base.metadata,
    sa.Column(
        "recording_id",
        sa.ForeignKey("recordings.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag_id", sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (sa.Index("uq_tags_name_lower", sa.func.lower(sa.text("name")), unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(sa.String(200))
    original_filename: Mapped[str | None] = mapped_column(sa.String(255))
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    mime_type: Mapped[str] = mapped_column(sa.String(64))
    # recorder.audio.FORMATS name; NULL for rows stored before revision 0002.
    audio_format: Mapped[str | None] = mapped_column(sa.String(16))
    # The client's Idempotency-Key and a digest of what it created (title, tags, audio).
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True, index=True)
    idempotency_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    duration_seconds: Mapped[float | None] = mapped_column(sa.Float)
    sample_rate: Mapped[int | None] = mapped_column(sa.Integer)
    channels: Mapped[int | None] = mapped_column(sa.SmallInteger)
    status: Mapped[RecordingStatus] = mapped_column(
        sa.Enum(
            RecordingStatus,
            name="recording_status",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=RecordingStatus.ACTIVE,
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)

    tags: Mapped[list[Tag]] = relationship(
        secondary=recording_tags, lazy="selectin", order_by=Tag.name
    )

    __mapper_args__ = {"version_id_col": version}
