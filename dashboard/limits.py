"""What the dashboard refuses from a request's head, before its body is read.

On the receiver (``POST /v1/*``): a missing or wrong bearer token when ``VRP_DASHBOARD_TOKEN``
is set (401, or 429 for an address that guessed too often; :func:`dashboard.receiver.check_token`
counts the attempts), then a declared ``Content-Length`` over ``VRP_DASHBOARD_MAX_BODY_BYTES``
(413), each answered with a ``google.rpc.Status`` as the receiver answers. Elsewhere (the UI's
callbacks, the login form, ``/api/``): a body over :data:`UI_MAX_BODY_BYTES` (413 JSON).

The server-wide limit (:func:`server_limits`) is the larger of the two, so a chunked body is cut
off there; the receiver's own reader then holds the receiver's limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard import otlp
from dashboard.attempts import TokenAttempts
from dashboard.errors import PayloadTooLargeError
from dashboard.receiver import check_token, status_body
from dashboard.settings import DashboardSettings
from instrumentation.serving import Refusal, RequestHead, json_error
from instrumentation.settings import ServerLimits

RECEIVER_PREFIX = "/v1/"
# Dash's callback requests carry the state of the page's components (tables included); the
# login form carries a token. Neither comes near this.
UI_MAX_BODY_BYTES = 4 * 1024 * 1024


def server_limits(settings: DashboardSettings) -> ServerLimits:
    return ServerLimits(
        max_body_bytes=max(settings.max_body_bytes, UI_MAX_BODY_BYTES),
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
    )


@dataclass(frozen=True)
class DashboardGate:
    """The refusals above for one dashboard (its token, its attempts, its limits)."""

    settings: DashboardSettings
    attempts: TokenAttempts

    def check(self, head: RequestHead) -> Refusal | None:
        if not head.path.startswith(RECEIVER_PREFIX):
            if head.content_length is not None and head.content_length > UI_MAX_BODY_BYTES:
                return self.too_large(head, UI_MAX_BODY_BYTES)
            return None
        if head.method != "POST":
            return None  # the app answers 405 without reading anything
        token = self.settings.token
        if token is not None:
            authorization = head.header("Authorization")
            refused = check_token(token, self.attempts, authorization, head.remote_addr)
            if refused is not None:
                return _rpc_refusal(
                    head, refused.status, refused.rpc_code, refused.message, refused.headers
                )
        limit = self.settings.max_body_bytes
        if head.content_length is not None and head.content_length > limit:
            return self.too_large(head, limit)
        return None

    def too_large(self, head: RequestHead, limit: int) -> Refusal:
        if head.path.startswith(RECEIVER_PREFIX):
            return _rpc_refusal(head, 413, 8, str(PayloadTooLargeError(limit)))
        return json_error(413, f"the request body is larger than the limit of {limit} bytes")


def _rpc_refusal(
    head: RequestHead,
    status: int,
    rpc_code: int,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> Refusal:
    """As the receiver answers: a ``google.rpc.Status`` in JSON for a JSON request, else
    protobuf."""
    mimetype = head.header("Content-Type").partition(";")[0].strip().lower()
    content_type = otlp.JSON if mimetype == otlp.JSON else otlp.PROTOBUF
    return Refusal(status, status_body(rpc_code, message, content_type), content_type, headers)
