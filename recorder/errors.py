"""The one exception family of the recorder package.

Callers catch :class:`RecorderError` to handle anything this package raises on purpose; each
subclass names one failure and maps to one HTTP status in the API layer (noted per class).
Messages say what happened and what the caller can do about it.

Classes that refuse a caller's request (404, 409, 412, 413, 415, 422) set ``client_error = True``:
a unit of work they roll back is logged at DEBUG, not as a warning (see
:mod:`instrumentation.transactions`), and a span they end keeps status UNSET.
"""

from __future__ import annotations

from typing import ClassVar


class RecorderError(Exception):
    """Base of every error raised on purpose by :mod:`recorder`."""


class NotFoundError(RecorderError):
    """The recording or blob asked for does not exist (HTTP 404)."""

    client_error: ClassVar[bool] = True


class ConflictError(RecorderError):
    """The request clashes with the current state of a resource (HTTP 409)."""

    client_error: ClassVar[bool] = True


class PreconditionFailedError(RecorderError):
    """An ``If-Match`` / ``If-Unmodified-Since`` precondition did not hold (HTTP 412)."""

    client_error: ClassVar[bool] = True


class IdempotencyKeyReusedError(RecorderError):
    """An ``Idempotency-Key`` already names a different upload (HTTP 422)."""

    client_error: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__(
            "the Idempotency-Key header names an earlier upload with a different title, tags "
            "or audio; send a new key for a new recording, or repeat the original request "
            "unchanged"
        )


class PayloadTooLargeError(RecorderError):
    """An upload is bigger than the configured limit (HTTP 413)."""

    client_error: ClassVar[bool] = True

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"upload exceeds the limit of {max_bytes} bytes; send a shorter recording "
            "or ask the operator to raise the upload size limit"
        )
        self.max_bytes = max_bytes


class UnsupportedMediaError(RecorderError):
    """An upload is not audio in a format the service recognises (HTTP 415)."""

    client_error: ClassVar[bool] = True


class StorageError(RecorderError):
    """Audio storage cannot be read or written: disk full, unwritable directory (HTTP 503).

    ``__cause__`` holds the underlying :class:`OSError`.
    """


class PreconditionRequiredError(RecorderError):
    """The server requires ``If-Match`` on updates and the request lacks it (HTTP 428)."""


class ConfigError(RecorderError):
    """A ``VRP_*`` / ``OTEL_*`` setting is invalid; the message names the variable and value.

    The CLI turns it into one line on stderr and exit code 2.
    """


class SchemaOutOfDateError(RecorderError):
    """The database schema is behind the migrations shipped with this version."""
