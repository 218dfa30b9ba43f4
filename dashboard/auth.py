"""Access to the UI and to ``/api/`` when ``VRP_DASHBOARD_TOKEN`` is set.

A browser signs in once with the token on ``/login`` and gets a signed cookie (HttpOnly,
SameSite=Lax, Secure over HTTPS, 12 hours); scripts send ``Authorization: Bearer <token>``.
Without either, ``/api/`` and Dash's own XHRs (``/_dash-...``) answer 401 JSON and every other
UI path redirects to the login form, so no data reaches an anonymous browser. Left open: the
login form, ``/healthz``, Dash's static files and ``/assets/`` (no data in them), and the OTLP
receiver ``/v1/*``, which checks the bearer token itself.

The cookie is signed by itsdangerous with a key derived from the token, so changing the token
signs everyone out; tokens are compared with :func:`hmac.compare_digest`. Without a token
configured nothing is required: the CLI refuses a non-loopback bind in that case.
"""

from __future__ import annotations

import hashlib
import hmac

import flask
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import escape
from werkzeug.wrappers import Response

from dashboard.attempts import TokenAttempts
from dashboard.server import HEALTH_PATH

COOKIE_NAME = "vrp_dashboard_session"
COOKIE_MAX_AGE_S = 12 * 3600
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
OPEN_PREFIXES = ("/v1/", "/assets/", "/_dash-component-suites/", "/_favicon.ico", LOGIN_PATH)
DATA_PREFIXES = ("/api/", "/_dash-")
_SALT = "vrp-dashboard-login"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: VRP telemetry</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body class="bg-light"><main class="container" style="max-width: 420px; margin-top: 12vh">
<h1 class="h4 mb-3">VRP telemetry dashboard</h1>
<form method="post" action="/login" id="login-form" class="card card-body">
<label for="token" class="form-label">Access token (<code>VRP_DASHBOARD_TOKEN</code>)</label>
<input type="password" class="form-control mb-3" id="token" name="token" required autofocus
 autocomplete="current-password">
<input type="hidden" name="next" value="{next}">
{error}<button type="submit" id="login-submit" class="btn btn-primary">Sign in</button>
</form></main></body></html>
"""


def _key(token: str) -> bytes:
    # The signing key is derived, not the token itself, so a leaked cookie reveals nothing
    # that could be replayed as a bearer token.
    return hashlib.sha256(b"vrp-dashboard-cookie:" + token.encode()).digest()


class TokenAuth:
    """The checks above, installed on a Flask app by :meth:`install`.

    Wrong tokens count against the client's address in ``attempts``
    (:mod:`dashboard.attempts`): past the limit, a bearer token gets 429 and the login form
    says to wait, whether the token is right or not.
    """

    def __init__(self, token: str, attempts: TokenAttempts) -> None:
        self._token = token.encode()
        self._serializer = URLSafeTimedSerializer(_key(token), salt=_SALT)
        self._attempts = attempts

    def token_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def bearer_ok(self, request: flask.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        if header:
            self._attempts.failed(request.remote_addr)
        return False

    def cookie_ok(self, request: flask.Request) -> bool:
        value = request.cookies.get(COOKIE_NAME)
        if not value:
            return False
        try:
            self._serializer.loads(value, max_age=COOKIE_MAX_AGE_S)
        except BadSignature:
            return False
        return True

    def guard(self) -> Response | None:
        """``before_request``: None lets the request through, else the refusal to send."""
        request = flask.request
        path = request.path
        if path == HEALTH_PATH or path.startswith(OPEN_PREFIXES):
            return None
        if self.cookie_ok(request):
            return None
        if request.headers.get("Authorization"):
            wait = self._attempts.retry_after(request.remote_addr)
            if wait:
                return _too_many(wait)
            if self.bearer_ok(request):
                return None
        if path.startswith(DATA_PREFIXES):
            response = flask.jsonify(
                code=401,
                status="Unauthorized",
                message="sign in on /login or send Authorization: Bearer <VRP_DASHBOARD_TOKEN>",
            )
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="vrp-dashboard"'
            return response
        return flask.redirect(f"{LOGIN_PATH}?next={_local_path(request.full_path)}")

    def login(self) -> Response:
        request = flask.request
        next_path = _local_path(request.values.get("next", "/"))
        if request.method == "GET":
            return _login_page(next_path, error=None, status=200)
        wait = self._attempts.retry_after(request.remote_addr)
        if wait:
            page = _login_page(
                next_path, error=f"Too many wrong tokens: try again in {wait} s.", status=429
            )
            page.headers["Retry-After"] = str(wait)
            return page
        if not self.token_matches(request.form.get("token")):
            self._attempts.failed(request.remote_addr)
            return _login_page(next_path, error="Wrong token.", status=401)
        response = flask.redirect(next_path)
        response.set_cookie(
            COOKIE_NAME,
            self._serializer.dumps({"v": 1}),
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
        )
        return response

    def install(self, server: flask.Flask) -> None:
        server.before_request(self.guard)
        server.add_url_rule(LOGIN_PATH, "vrp_login", self.login, methods=["GET", "POST"])
        server.add_url_rule(LOGOUT_PATH, "vrp_logout", _logout, methods=["GET", "POST"])


def _too_many(wait: int) -> Response:
    response = flask.jsonify(
        code=429,
        status="Too Many Requests",
        message=f"too many wrong tokens from this address; retry in {wait} s",
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


def _logout() -> Response:
    response = flask.redirect(LOGIN_PATH)
    response.delete_cookie(COOKIE_NAME, httponly=True, samesite="Lax")
    return response


def _local_path(candidate: str) -> str:
    """``candidate`` when it is a path on this server, else ``/`` (no open redirect)."""
    candidate = candidate.rstrip("?") or "/"
    if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return "/"
    return candidate


def _login_page(next_path: str, *, error: str | None, status: int) -> Response:
    message = (
        f'<div class="alert alert-danger py-2" id="login-error">{escape(error)}</div>'
        if error
        else ""
    )
    body = LOGIN_PAGE.format(next=escape(next_path), error=message)
    return Response(body, status=status, mimetype="text/html")


def install_auth(server: flask.Flask, token: str | None) -> None:
    """Require ``token`` on the UI and ``/api/`` of ``server`` (nothing when it is None).

    Wrong tokens count in the server's ``token_attempts`` (a
    :class:`~dashboard.server.DashboardServer`'s, shared with its receiver), else in a new one.
    """
    if token:
        attempts = getattr(server, "token_attempts", None) or TokenAttempts()
        TokenAuth(token, attempts).install(server)
