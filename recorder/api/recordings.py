"""``/api/recordings``: upload, list, read, change, delete and stream recordings."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, request, send_file, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import RAISE
from werkzeug.datastructures import FileStorage

from recorder import services
from recorder.api.context import recorder_context
from recorder.audio import FORMATS, HEAD_BYTES, detect_format, probe
from recorder.errors import (
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
    UnsupportedMediaError,
)
from recorder.schemas import (
    DeleteQuerySchema,
    IfMatchHeaderSchema,
    RecordingCreateSchema,
    RecordingListQuerySchema,
    RecordingSchema,
    RecordingUpdateSchema,
    UploadFilesSchema,
)

blp = Blueprint(
    "recordings",
    __name__,
    url_prefix="/api/recordings",
    description="Voice recordings: audio plus metadata",
)

FILENAME_MAX = 255
SUPPORTED_FORMATS = ", ".join(sorted({fmt.name.upper() for fmt in FORMATS.values()}))


@blp.before_request
def _json_bodies_only() -> None:
    if request.method == "PATCH" and not request.is_json:
        abort(415, message="send the changes as JSON with Content-Type: application/json")


def _etag(version: int) -> str:
    return f'"{version}"'


def _expected_version(header: str | None, required: bool) -> int | None:
    """The version an ``If-Match`` header names; ``None`` when absent or ``*``."""
    if header is None:
        if required:
            raise PreconditionRequiredError(
                "this server requires If-Match with the recording's ETag on updates"
            )
        return None
    if header == "*":
        return None
    tag = header.removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailedError(
            f"If-Match {header!r} is not an ETag of this resource; use the ETag header "
            "of the last GET"
        )
    return int(tag)


def _with_etag(recording: Any, status: int = 200) -> tuple[Any, int, dict[str, str]]:
    return recording, status, {"ETag": _etag(recording.version)}


def _client_filename(upload: FileStorage) -> str | None:
    """The client's file name, kept as metadata only (it never becomes a path)."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:FILENAME_MAX] or None


@blp.route("")
class Recordings(MethodView):
    @blp.arguments(RecordingListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, RecordingSchema(many=True))
    @blp.doc(description="Recordings, newest first by default; deleted ones only on request.")
    def get(self, **args: Any) -> tuple[list[Any], dict[str, str]]:
        page = services.list_recordings(recorder_context().db, services.RecordingQuery(**args))
        pages = max(1, -(-page.total // page.page_size))
        header = {
            "total": page.total,
            "total_pages": pages,
            "page": page.page,
            "first_page": 1,
            "last_page": pages,
        }
        if page.page > 1:
            header["previous_page"] = page.page - 1
        if page.page < pages:
            header["next_page"] = page.page + 1
        return page.items, {"X-Pagination": json.dumps(header)}

    @blp.arguments(UploadFilesSchema, location="files", unknown=RAISE)
    @blp.arguments(RecordingCreateSchema, location="form")
    @blp.response(201, RecordingSchema)
    @blp.alt_response(413, description="The upload is larger than the configured limit")
    @blp.alt_response(415, description="The file is not audio in a supported format")
    def post(self, files: dict[str, FileStorage], form: dict[str, Any]) -> Any:
        ctx = recorder_context()
        upload = files["file"]
        head = upload.stream.read(HEAD_BYTES)
        audio_format = detect_format(head)
        if audio_format is None:
            raise UnsupportedMediaError(
                f"the file is not audio in a supported format ({SUPPORTED_FORMATS})"
            )
        # Before anything is stored: 415 naming what is missing unless it really holds audio.
        info = probe(upload.stream, audio_format)
        upload.stream.seek(0)
        blob = ctx.store.put(upload.stream)
        new = services.NewRecording(
            title=form["title"],
            original_filename=_client_filename(upload),
            blob=blob,
            audio_format=audio_format,
            info=info,
            tags=form["tags"],
        )
        # From "the blob is on disk" to the commit of the row that references it, no purge of
        # the same audio may decide that nothing references it (see recorder.storage).
        with ctx.store.locked(blob.sha256):
            if not ctx.store.exists(blob.sha256):
                # A purge of the same audio removed it after our put; the upload has the bytes.
                upload.stream.seek(0)
                blob = ctx.store.put(upload.stream)
            try:
                recording = services.create_recording(ctx.db, new)
            except Exception:
                # A blob this request wrote must not outlive a failed insert, unless another
                # upload of the same audio has committed a row that references it.
                if blob.created and not services.blob_referenced(ctx.db, blob.sha256):
                    ctx.store.delete(blob.sha256)
                raise
        recording_id = recording.public_id
        location = url_for("recordings.Recording", recording_id=recording_id)
        return recording, 201, {"Location": location, "ETag": _etag(recording.version)}


@blp.route("/<uuid:recording_id>")
class Recording(MethodView):
    @blp.response(200, RecordingSchema)
    @blp.alt_response(404, description="No such recording")
    def get(self, recording_id: uuid.UUID) -> Any:
        return _with_etag(services.get_recording(recorder_context().db, recording_id))

    @blp.arguments(IfMatchHeaderSchema, location="headers")
    @blp.arguments(RecordingUpdateSchema)
    @blp.response(200, RecordingSchema)
    @blp.alt_response(412, description="If-Match does not name the current version")
    @blp.alt_response(428, description="If-Match is required by this server and missing")
    def patch(
        self, headers: dict[str, str], changes: dict[str, Any], recording_id: uuid.UUID
    ) -> Any:
        ctx = recorder_context()
        expected = _expected_version(headers.get("if_match"), ctx.settings.require_if_match)
        recording = services.update_recording(
            ctx.db, recording_id, services.RecordingChanges(**changes), expected
        )
        return _with_etag(recording)

    @blp.arguments(DeleteQuerySchema, location="query", unknown=RAISE)
    @blp.response(204)
    @blp.doc(description="Soft delete; `purge=true` removes the row and, if unused, its audio.")
    def delete(self, args: dict[str, Any], recording_id: uuid.UUID) -> None:
        ctx = recorder_context()
        if not args["purge"]:
            services.delete_recording(ctx.db, recording_id)
            return
        result = services.purge_recording(ctx.db, recording_id)
        if result.blob_unreferenced:
            # Checked again under the lock: an upload may have committed a reference since.
            with ctx.store.locked(result.sha256):
                if not services.blob_referenced(ctx.db, result.sha256):
                    ctx.store.delete(result.sha256)


@blp.route("/<uuid:recording_id>/audio")
class RecordingAudio(MethodView):
    @blp.response(
        200,
        content_type="application/octet-stream",
        description="The audio, with its own Content-Type; honours Range requests (206)",
    )
    @blp.alt_response(404, description="No such recording")
    def get(self, recording_id: uuid.UUID) -> Response:
        ctx = recorder_context()
        recording = services.get_recording(ctx.db, recording_id)
        path = ctx.store.path_for(recording.sha256)
        if not path.is_file():
            raise NotFoundError(f"the audio of recording {recording_id} is missing from storage")
        return send_file(
            path,
            mimetype=recording.mime_type,
            conditional=True,
            etag=recording.sha256,
            last_modified=recording.created_at,
            max_age=3600,
        )
