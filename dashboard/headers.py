"""Headers on every response of the dashboard's server: no framing, no type sniffing.

The pages must not be framed by another site (clickjacking a signed-in browser): both the
legacy ``X-Frame-Options`` and CSP ``frame-ancestors`` say so, since browsers honour one or the
other. ``nosniff`` keeps a browser from reading a JSON or OTLP answer as HTML or script. The
CSP sets nothing else: Dash's pages run inline scripts and styles that a stricter policy would
have to list one by one.
"""

from __future__ import annotations

import flask
from werkzeug.wrappers import Response

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _add_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def install_security_headers(server: flask.Flask) -> None:
    """Add :data:`SECURITY_HEADERS` to every response of ``server``."""
    server.after_request(_add_headers)
