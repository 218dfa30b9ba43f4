"""What the API refuses from a request's head, before its body is read: a declared
``Content-Length`` over the upload limit (413, the JSON error shape of :mod:`recorder.api.errors`).

The server (:func:`server_limits`, :mod:`instrumentation.serving`) applies the same limit to
chunked bodies, cutting them off once they pass it.
"""

from __future__ import annotations

from dataclasses import dataclass

from instrumentation.serving import Refusal, RequestHead, json_error
from instrumentation.settings import ServerLimits
from recorder.config import Settings
from recorder.errors import PayloadTooLargeError

# Form fields beside the file (title, tags) never need more than this on top of the audio.
FORM_OVERHEAD_BYTES = 64 * 1024


def max_body_bytes(settings: Settings) -> int:
    """The largest request body the API reads: an upload at the limit, plus its form fields."""
    return settings.max_upload_bytes + FORM_OVERHEAD_BYTES


def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        max_body_bytes=max_body_bytes(settings),
        connection_limit=settings.api_connection_limit,
        channel_timeout=settings.api_channel_timeout,
    )


@dataclass(frozen=True)
class BodyLimitGate:
    """Refuses a declared body over :func:`max_body_bytes` as the app itself would."""

    max_upload_bytes: int
    max_body_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimitGate:
        return cls(settings.max_upload_bytes, max_body_bytes(settings))

    def check(self, head: RequestHead) -> Refusal | None:
        if head.content_length is not None and head.content_length > self.max_body_bytes:
            return self.too_large(head, self.max_body_bytes)
        return None

    def too_large(self, head: RequestHead, limit: int) -> Refusal:
        if head.method == "POST":  # an upload: the limit its user can act on
            return json_error(413, str(PayloadTooLargeError(self.max_upload_bytes)))
        return json_error(413, f"the request body is larger than the limit of {limit} bytes")
