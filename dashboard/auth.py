"""Access to the UI and to ``/api/`` when ``VRP_DASHBOARD_TOKEN`` is set.

A browser signs in once with the token on ``/login`` and gets a signed cookie (HttpOnly,
SameSite=Lax, 12 hours; Secure over HTTPS, or always with ``VRP_DASHBOARD_COOKIE_SECURE`` for a
dashboard behind a TLS-terminating proxy); scripts send ``Authorization: Bearer <token>``.
Without either, ``/api/`` and Dash's own XHRs (``/_dash-...``) answer 401 JSON and every other
UI path redirects to the login form, so no data reaches an anonymous browser. Left open: the
login form, ``/healthz``, Dash's static files, its favicon and ``/assets/`` (no data in them),
and the OTLP receiver ``/v1/*``, which checks the bearer token itself. Open paths are matched
whole or up to a ``/``: ``/loginx`` is not the login form.

Each sign-in is a session of its own (:mod:`dashboard.sessions`): signing out ends it, and a
copy of its cookie is refused from then on. The cookie is signed by itsdangerous with a key
derived from the token, so changing the token signs everyone out; tokens are compared with
:func:`hmac.compare_digest`. After signing in, the browser goes back to the page it asked for,
but only to a path on this server (:func:`local_path`). Without a token configured nothing is
required: the CLI refuses a non-loopback bind in that case.
"""

from __future__ import annotations

import hashlib
import unicodedata
from urllib.parse import quote, urlsplit

import flask
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import escape
from werkzeug.wrappers import Response

from dashboard.attempts import TokenAttempts, check_bearer, token_matches
from dashboard.sessions import Sessions
from dashboard.settings import DashboardSettings

COOKIE_NAME = "vrp_dashboard_session"
COOKIE_MAX_AGE_S = 12 * 3600
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# The process-is-up probe: cheap, no data, open to load balancers and orchestrators.
HEALTH_PATH = "/healthz"
OPEN_PATHS = frozenset(("/_favicon.ico", LOGIN_PATH, HEALTH_PATH))
OPEN_PREFIXES = ("/v1/", "/assets/", "/_dash-component-suites/")
DATA_PREFIXES = ("/api/", "/_dash-")
# Longer ``next`` targets are not pages of this dashboard; they are dropped, not parsed.
MAX_NEXT_LENGTH = 2048
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

    Wrong tokens count against the client's network in ``attempts``
    (:mod:`dashboard.attempts`): past the limit, a wrong token gets 429 (the login form says to
    wait) instead of being checked; the right token always passes.
    """

    def __init__(self, token: str, attempts: TokenAttempts, *, cookie_secure: bool = False) -> None:
        self._token = token
        self._serializer = URLSafeTimedSerializer(_key(token), salt=_SALT)
        self._attempts = attempts
        self._sessions = Sessions(COOKIE_MAX_AGE_S)
        self._cookie_secure = cookie_secure

    def _session_id(self, request: flask.Request) -> str | None:
        """The id of the session the request's cookie names, if the signature holds."""
        value = request.cookies.get(COOKIE_NAME)
        if not value:
            return None
        try:
            payload = self._serializer.loads(value, max_age=COOKIE_MAX_AGE_S)
        except BadSignature:
            return None
        session_id = payload.get("sid") if isinstance(payload, dict) else None
        return session_id if isinstance(session_id, str) else None

    def cookie_ok(self, request: flask.Request) -> bool:
        session_id = self._session_id(request)
        return session_id is not None and self._sessions.is_open(session_id)

    def _refuse_bearer(self, request: flask.Request) -> Response | None:
        """None for the right bearer token; else a 429 when wrong tokens from the client's
        network are refused for now, or a 401 once the failure is counted."""
        authorization = request.headers.get("Authorization", "")
        wait = check_bearer(authorization, self._token, self._attempts, request.remote_addr)
        if wait is None:
            return None
        return too_many(wait) if wait else unauthorized()

    def guard(self) -> Response | None:
        """``before_request``: None lets the request through, else the refusal to send."""
        request = flask.request
        path = request.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        if self.cookie_ok(request):
            return None
        if request.headers.get("Authorization"):
            refusal = self._refuse_bearer(request)
            if refusal is None or refusal.status_code == 429 or path.startswith(DATA_PREFIXES):
                return refusal
        if path.startswith(DATA_PREFIXES):
            return unauthorized()
        target = quote(local_path(request.full_path), safe="/")
        return flask.redirect(f"{LOGIN_PATH}?next={target}")

    def login(self) -> Response:
        request = flask.request
        next_path = local_path(request.values.get("next", "/"))
        if request.method == "GET":
            return _login_page(next_path, error=None, status=200)
        if not token_matches(request.form.get("token"), self._token):
            wait = self._attempts.retry_after(request.remote_addr)
            if wait:
                page = _login_page(
                    next_path, error=f"Too many wrong tokens: try again in {wait} s.", status=429
                )
                page.headers["Retry-After"] = str(wait)
                return page
            self._attempts.failed(request.remote_addr)
            return _login_page(next_path, error="Wrong token.", status=401)
        response = flask.redirect(next_path)
        response.set_cookie(
            COOKIE_NAME,
            self._serializer.dumps({"sid": self._sessions.open()}),
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="Lax",
            secure=self._cookie_secure or request.is_secure,
        )
        return response

    def logout(self) -> Response:
        request = flask.request
        session_id = self._session_id(request)
        if session_id is not None:
            self._sessions.close(session_id)
        response = flask.redirect(LOGIN_PATH)
        response.delete_cookie(
            COOKIE_NAME,
            httponly=True,
            samesite="Lax",
            secure=self._cookie_secure or request.is_secure,
        )
        return response

    def install(self, server: flask.Flask) -> None:
        server.before_request(self.guard)
        server.add_url_rule(LOGIN_PATH, "vrp_login", self.login, methods=["GET", "POST"])
        server.add_url_rule(LOGOUT_PATH, "vrp_logout", self.logout, methods=["GET", "POST"])


def unauthorized(
    message: str = "sign in on /login or send Authorization: Bearer <VRP_DASHBOARD_TOKEN>",
) -> Response:
    """The 401 JSON answer of every guarded path, naming how to get in."""
    response = flask.jsonify(code=401, status="Unauthorized", message=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="vrp-dashboard"'
    return response


def too_many(wait: int) -> Response:
    """The 429 JSON answer to an address past the wrong-token limit."""
    response = flask.jsonify(
        code=429,
        status="Too Many Requests",
        message=f"too many wrong tokens from this address; retry in {wait} s",
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


def _unsafe(character: str) -> bool:
    # Whitespace, separators and control or format characters: browsers drop some of them
    # inside URLs (``/%09/evil.com`` is ``//evil.com`` to them) and a newline cannot go into a
    # Location header at all.
    return character.isspace() or unicodedata.category(character)[0] in "CZ"


def local_path(candidate: str) -> str:
    """``candidate`` when it is a path on this server, else ``/`` (no open redirect).

    A path starts with one ``/`` and has no scheme, no host, no backslash (browsers read it as
    ``/``) and no whitespace or control character.
    """
    candidate = candidate.rstrip("?") or "/"
    if (
        len(candidate) > MAX_NEXT_LENGTH
        or not candidate.startswith("/")
        or candidate.startswith("//")
        or "\\" in candidate
        or any(_unsafe(character) for character in candidate)
    ):
        return "/"
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
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


def install_auth(server: flask.Flask, settings: DashboardSettings) -> None:
    """Require ``settings.token`` on the UI and ``/api/`` of ``server`` (nothing without one).

    Wrong tokens count in the server's ``token_attempts`` (a
    :class:`~dashboard.server.DashboardServer`'s, shared with its receiver), else in a new one.
    """
    if settings.token:
        attempts = getattr(server, "token_attempts", None)
        if attempts is None:
            attempts = TokenAttempts()
        TokenAuth(settings.token, attempts, cookie_secure=settings.cookie_secure).install(server)
