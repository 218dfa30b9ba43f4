"""Map the recorder's and the database layer's errors onto JSON HTTP responses.

Bodies have the flask-smorest shape (``code``, ``status``, ``message``, optionally ``errors``)
so that a client handles every error the same way, and never hold a stack trace.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from instrumentation import CommitOutcomeUnknownError, TransactionRetryError, record_error
from recorder.api.context import recorder_context
from recorder.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    PreconditionRequiredError,
    RecorderError,
    StorageError,
    UnsupportedMediaError,
)

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[RecorderError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    PreconditionFailedError: 412,
    PayloadTooLargeError: 413,
    UnsupportedMediaError: 415,
    IdempotencyKeyReusedError: 422,
    PreconditionRequiredError: 428,
    StorageError: 503,
}


def error_response(code: int, message: str, **extra: object) -> Response:
    response = jsonify(
        {"code": code, "status": HTTP_STATUS_CODES.get(code, "Error"), "message": message, **extra}
    )
    response.status_code = code
    return response


def _recorder_error(error: RecorderError) -> Response:
    code = next(
        (status for kind, status in STATUS_BY_ERROR.items() if isinstance(error, kind)), 400
    )
    if code >= 500:
        record_error(error)
        logger.error("%s", error, exc_info=error)
        response = error_response(code, "audio storage is unavailable; try again later")
        response.headers["Retry-After"] = "5"
        return response
    return error_response(code, str(error))


def _stale(error: StaleDataError) -> Response:
    return error_response(
        409, "the recording was changed by another request meanwhile; fetch it and retry"
    )


def _integrity(error: IntegrityError) -> Response:
    logger.warning("integrity error: %s", type(error.orig).__name__)
    return error_response(409, "the change conflicts with existing data")


def _gave_up(error: TransactionRetryError) -> Response:
    record_error(error)
    logger.error("%s", error)
    response = error_response(503, "the database is busy; try again shortly")
    response.headers["Retry-After"] = "1"
    return response


def _outcome_unknown(error: CommitOutcomeUnknownError) -> Response:
    record_error(error)
    logger.error("%s", error)
    response = error_response(
        503,
        "the database connection was lost while the change was being committed, so whether it "
        "was saved is unknown; fetch the resource to check before repeating the request",
        outcome="unknown",
    )
    response.headers["Retry-After"] = "1"
    return response


# Werkzeug raises these itself (routing, the request size limit), so flask-smorest's handler
# answers them with no message; they get one here like every other error.
def _no_route(error: NotFound) -> Response:
    return error_response(
        404, f"no resource at {request.path}; the API's paths are in /api/openapi.json"
    )


def _wrong_method(error: MethodNotAllowed) -> Response:
    allowed = ", ".join(sorted(error.valid_methods or ()))
    response = error_response(405, f"{request.method} is not allowed here; use {allowed}")
    response.headers["Allow"] = allowed
    return response


def _request_too_large(error: RequestEntityTooLarge) -> Response:
    if request.method == "POST":  # an upload: the limit its user can act on
        return error_response(
            413, str(PayloadTooLargeError(recorder_context().settings.max_upload_bytes))
        )
    return error_response(
        413, f"the request body is larger than the limit of {request.max_content_length} bytes"
    )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(NotFound, _no_route)
    app.register_error_handler(MethodNotAllowed, _wrong_method)
    app.register_error_handler(RequestEntityTooLarge, _request_too_large)
    app.register_error_handler(RecorderError, _recorder_error)
    app.register_error_handler(StaleDataError, _stale)
    app.register_error_handler(IntegrityError, _integrity)
    app.register_error_handler(TransactionRetryError, _gave_up)
    app.register_error_handler(CommitOutcomeUnknownError, _outcome_unknown)
