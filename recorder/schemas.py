"""marshmallow schemas for everything the API reads and writes.

Every input schema rejects unknown fields, trims strings and bounds their length, and parses
dates strictly (ISO 8601 with a zone offset). Output schemas are what the OpenAPI document
shows, so they are declared field by field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate

from recorder.models import RecordingStatus

TITLE_MAX = 200
TAG_MAX = 50
TAGS_PER_RECORDING = 20
QUERY_MAX = 200
PAGE_SIZE_MAX = 100
SORT_KEYS = ("created_at", "title", "duration")
_TAG_PATTERN = re.compile(r"^[\w][\w .\-]*$")
# Control characters (C0, DEL and C1, such as the terminal's CSI) make titles unprintable in
# logs and UIs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A JSON string may spell a lone UTF-16 surrogate ("\\ud800"): a Python str, but no Unicode text,
# so storing or logging it fails with UnicodeEncodeError.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
IDEMPOTENCY_KEY_MAX = 255
# Printable ASCII (space included): what every HTTP stack carries unchanged in a header value.
_IDEMPOTENCY_KEY = re.compile(r"\A[\x20-\x7e]+\Z")


class Trimmed(fields.String):
    """A string with surrounding whitespace removed before validation; no control characters."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if _CONTROL.search(text):
            raise ma.ValidationError("Must not contain control characters.")
        if _SURROGATE.search(text):
            raise ma.ValidationError("Must be valid Unicode text (no lone surrogate code points).")
        return text


class StrictDateTime(fields.AwareDateTime):
    """ISO 8601 date-time that must carry a zone offset (``Z`` or ``+01:00``), returned in UTC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            # 0001-01-01T00:00:00+14:00 parses, but its UTC instant is before year 1.
            return moment.astimezone(UTC)
        except OverflowError:
            raise ma.ValidationError("Must be a date-time from year 1 to 9999 in UTC.") from None


def _tag_name() -> Trimmed:
    return Trimmed(
        validate=[
            validate.Length(1, TAG_MAX),
            validate.Regexp(
                _TAG_PATTERN,
                error="Tags hold letters, digits, spaces, '.', '-' and '_' and start with a "
                "letter or digit.",
            ),
        ]
    )


class TagList(fields.List):
    """Tags from a form: repeated ``tags`` fields, or one comma-separated value, or both."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_tag_name(), validate=validate.Length(max=TAGS_PER_RECORDING), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ma.ValidationError("Must be a list of tag names.")
        parts = [part for item in value for part in item.split(",") if part.strip()]
        return _dedupe(super()._deserialize(parts, attr, data, **kwargs))


def _dedupe(tags: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for tag in tags:
        seen.setdefault(tag.casefold(), tag)
    return list(seen.values())


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class UploadFilesSchema(StrictSchema):
    file = Upload(required=True, metadata={"description": "The audio file"})


class RecordingCreateSchema(StrictSchema):
    title = Trimmed(required=True, validate=validate.Length(1, TITLE_MAX))
    tags = TagList(load_default=list)


class RecordingUpdateSchema(StrictSchema):
    title = Trimmed(validate=validate.Length(1, TITLE_MAX))
    tags = fields.List(_tag_name(), validate=validate.Length(max=TAGS_PER_RECORDING))
    status = fields.Enum(RecordingStatus, by_value=True)

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give at least one of title, tags, status.", "_schema")

    @ma.post_load
    def _dedupe_tags(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "tags" in data:
            data["tags"] = _dedupe(data["tags"])
        return data


class RecordingListQuerySchema(StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=PAGE_SIZE_MAX))
    status = fields.Enum(RecordingStatus, by_value=True)
    tag = _tag_name()
    q = Trimmed(validate=validate.Length(1, QUERY_MAX))
    created_after = StrictDateTime()
    created_before = StrictDateTime()
    sort = fields.String(load_default="created_at", validate=validate.OneOf(SORT_KEYS))
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))

    @ma.validates_schema
    def _range(self, data: dict[str, Any], **kwargs: Any) -> None:
        after, before = data.get("created_after"), data.get("created_before")
        if after and before and after > before:
            raise ma.ValidationError("Must not be later than created_before.", "created_after")


class DeleteQuerySchema(StrictSchema):
    purge = fields.Boolean(load_default=False)


class IfMatchHeaderSchema(ma.Schema):
    """``If-Match`` with the recording's version as ETag (``"3"``); other headers pass by."""

    class Meta:
        unknown = ma.EXCLUDE

    if_match = Trimmed(data_key="If-Match", validate=validate.Length(1, 64))


class IdempotencyKeyHeaderSchema(ma.Schema):
    """``Idempotency-Key`` on uploads (optional); other headers pass by."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(1, IDEMPOTENCY_KEY_MAX),
            validate.Regexp(_IDEMPOTENCY_KEY, error="Must hold printable ASCII characters only."),
        ],
        metadata={
            "description": "A key of your choice (1-255 printable ASCII characters) that makes "
            "the upload safe to repeat: a repeat returns the recording the first one created."
        },
    )


class RecordingSchema(ma.Schema):
    id = fields.UUID(attribute="public_id", dump_only=True)
    title = fields.String(dump_only=True)
    original_filename = fields.String(dump_only=True, allow_none=True)
    sha256 = fields.String(dump_only=True)
    mime_type = fields.String(dump_only=True)
    size_bytes = fields.Integer(dump_only=True)
    duration_seconds = fields.Float(dump_only=True, allow_none=True)
    sample_rate = fields.Integer(dump_only=True, allow_none=True)
    channels = fields.Integer(dump_only=True, allow_none=True)
    status = fields.Enum(RecordingStatus, by_value=True, dump_only=True)
    tags = fields.Pluck("TagSchema", "name", many=True, dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)
    version = fields.Integer(dump_only=True)


class TagSchema(ma.Schema):
    name = fields.String(dump_only=True)
    recordings = fields.Integer(dump_only=True, metadata={"description": "recordings using it"})


class HealthSchema(ma.Schema):
    status = fields.String(dump_only=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String(), dump_only=True)
