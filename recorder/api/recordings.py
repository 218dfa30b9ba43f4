"""``/api/recordings``: upload, list, read, change, delete and stream recordings."""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any
from urllib.parse import quote

from flask import Response, request, send_file, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import RAISE
from werkzeug.datastructures import FileStorage

from instrumentation import conventions
from recorder import services
from recorder.api.context import recorder_context
from recorder.api.traced import Blueprint
from recorder.audio import FORMATS
from recorder.errors import NotFoundError, PreconditionFailedError, PreconditionRequiredError
from recorder.schemas import (
    DeleteQuerySchema,
    IdempotencyKeyHeaderSchema,
    IfMatchHeaderSchema,
    RecordingCreateSchema,
    RecordingListQuerySchema,
    RecordingSchema,
    RecordingUpdateSchema,
    UploadFilesSchema,
)
from recorder.uploads import Upload

blp = Blueprint(
    "recordings",
    __name__,
    url_prefix="/api/recordings",
    description="Voice recordings: audio plus metadata",
)

FILENAME_MAX = 255
# Download names keep this much of the original stem (the extension is added after it).
DOWNLOAD_STEM_MAX = 200
# Characters a download name drops: path separators, quotes, and what file systems refuse.
_UNSAFE_IN_FILENAMES = frozenset('/\\"*:<>?|;')
# RFC 5987 attr-char: what filename* may carry unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"
# Extensions for rows stored before revision 0002 recorded their format: one per MIME type.
_LEGACY_EXTENSIONS = {"audio/ogg": "ogg", "audio/mpeg": "mp3"}


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


def _extension(recording: Any) -> str:
    audio_format = FORMATS.get(recording.audio_format or "")
    if audio_format is not None:
        return audio_format.extension
    if recording.mime_type in _LEGACY_EXTENSIONS:
        return _LEGACY_EXTENSIONS[recording.mime_type]
    return next((f.extension for f in FORMATS.values() if f.mime == recording.mime_type), "bin")


def _safe_stem(filename: str) -> str:
    name = unicodedata.normalize("NFC", filename)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    kept = "".join(ch for ch in stem if ch.isprintable() and ch not in _UNSAFE_IN_FILENAMES)
    return kept.strip(" .")[:DOWNLOAD_STEM_MAX]


def _content_disposition(recording: Any) -> dict[str, str]:
    """``inline`` with the original name (RFC 6266): UTF-8 ``filename*``, ASCII ``filename``.

    The stem is the client's file name without its extension, stripped of characters no file
    system or header takes; the extension is the detected format's, whatever the client said.
    """
    stem = _safe_stem(recording.original_filename or "")
    # The fallback for old clients: accents dropped, and no "%" that some would decode.
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = ascii_stem.replace("%", "_").strip(" .")
    extension = _extension(recording)
    full = f"{stem or 'recording'}.{extension}"
    fallback = f"{ascii_stem or 'recording'}.{extension}"
    return {"filename": fallback, "filename*": f"UTF-8''{quote(full, safe=_ATTR_CHARS)}"}


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

    @blp.arguments(IdempotencyKeyHeaderSchema, location="headers")
    @blp.arguments(UploadFilesSchema, location="files", unknown=RAISE)
    @blp.arguments(RecordingCreateSchema, location="form")
    @blp.response(201, RecordingSchema)
    @blp.alt_response(413, description="The upload is larger than the configured limit")
    @blp.alt_response(415, description="The file is not audio in a supported format")
    @blp.alt_response(
        422, description="Invalid fields, or an Idempotency-Key already used for another upload"
    )
    @blp.alt_response(
        503, description="The database is busy, or the outcome of the upload is unknown"
    )
    @blp.doc(
        description="Upload a recording. With an `Idempotency-Key` header a repeat of the same "
        "upload returns the recording the first one created (201, the same Location, and "
        "`Idempotent-Replayed: true`) instead of creating another."
    )
    def post(
        self, headers: dict[str, str], files: dict[str, FileStorage], form: dict[str, Any]
    ) -> Any:
        upload = files["file"]
        uploaded = recorder_context().uploads.create(
            Upload(
                title=form["title"],
                stream=upload.stream,
                original_filename=_client_filename(upload),
                tags=form["tags"],
                idempotency_key=headers.get("idempotency_key"),
            )
        )
        recording = uploaded.recording
        recording_id = recording.public_id
        location = url_for("recordings.Recording", recording_id=recording_id)
        response_headers = {"Location": location, "ETag": _etag(recording.version)}
        if uploaded.replayed:
            response_headers["Idempotent-Replayed"] = "true"
        return recording, 201, response_headers


@blp.route("/<uuid:recording_id>")
class Recording(MethodView):
    @blp.response(200, RecordingSchema)
    @blp.alt_response(404, description="No such recording")
    def get(self, recording_id: uuid.UUID) -> Any:
        return _with_etag(services.get_recording(recorder_context().db, recording_id))

    @blp.arguments(IfMatchHeaderSchema, location="headers")
    @blp.arguments(RecordingUpdateSchema)
    @blp.response(200, RecordingSchema)
    @blp.alt_response(400, description="The body is not JSON, or too large or deep")
    @blp.alt_response(404, description="No such recording")
    @blp.alt_response(409, description="The recording is deleted, or changed concurrently")
    @blp.alt_response(412, description="If-Match does not name the current version")
    @blp.alt_response(415, description="The body is not sent as application/json")
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
    @blp.alt_response(404, description="No such recording")
    @blp.doc(description="Soft delete; `purge=true` removes the row and, if unused, its audio.")
    def delete(self, args: dict[str, Any], recording_id: uuid.UUID) -> None:
        ctx = recorder_context()
        if args["purge"]:
            ctx.uploads.purge(recording_id)
        else:
            services.delete_recording(ctx.db, recording_id)


@blp.route("/<uuid:recording_id>/audio")
class RecordingAudio(MethodView):
    @blp.response(
        200,
        content_type="application/octet-stream",
        description="The audio, with its own Content-Type; honours Range requests (206)",
    )
    @blp.alt_response(206, description="The byte range asked for with Range")
    @blp.alt_response(304, description="Unchanged since the ETag sent in If-None-Match")
    @blp.alt_response(404, description="No such recording")
    @blp.alt_response(416, description="The Range lies outside the file")
    def get(self, recording_id: uuid.UUID) -> Response:
        ctx = recorder_context()
        recording = services.get_recording(ctx.db, recording_id)
        with ctx.steps(conventions.STORAGE_OPEN_SPAN):
            path = ctx.store.path_for(recording.sha256)
            if not path.is_file():
                raise NotFoundError(
                    f"the audio of recording {recording_id} is missing from storage"
                )
            response = send_file(
                path,
                mimetype=recording.mime_type,
                conditional=True,
                etag=recording.sha256,
                last_modified=recording.created_at,
                max_age=3600,
            )
            response.headers.set("Content-Disposition", "inline", **_content_disposition(recording))
        return response
