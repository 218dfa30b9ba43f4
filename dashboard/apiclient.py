"""How the pages read their numbers: through the dashboard's own JSON API, in process.

The pages call ``/api/...`` on the same Flask server through its WSGI interface (Werkzeug's
client, no socket), so that what a page shows is exactly what ``/api/`` serves to people and
scripts: the same parameter validation, the same JSON shapes (the contract between the UI and
the backend), nothing the UI computes on the side. The bearer token, when one is configured, is
added here; the browser's own request was authenticated by :mod:`dashboard.auth` before the
Dash callback that calls this ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask
import orjson

from dashboard.errors import DashboardError

Params = Mapping[str, str | int | float | None]
# The client address of these reads: never an address whose wrong tokens are counted
# (dashboard.attempts), so a guesser on 127.0.0.1 cannot block the pages' own reads.
_IN_PROCESS = {"REMOTE_ADDR": "in-process"}


class ApiReadError(DashboardError):
    """The JSON API answered a page's read with an error; the page shows the message."""

    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"{path} answered {status}: {message}")
        self.path = path
        self.status = status


class ApiClient:
    """Reads ``/api/...`` of ``server`` in process; one instance per Dash app, thread-safe."""

    def __init__(self, server: flask.Flask, token: str | None) -> None:
        self._server = server
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, params: Params | None = None) -> dict[str, Any]:
        """The decoded JSON body of ``GET path``; :class:`ApiReadError` on any non-200 answer.

        ``None`` parameters are left out, so callers can pass optional filters as they are.
        """
        query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
        # A fresh client per call: Werkzeug's test client keeps cookies and is not meant to be
        # shared between threads, and waitress serves Dash callbacks on several.
        with self._server.test_client() as client:
            response = client.get(
                path, query_string=query, headers=self._headers, environ_base=_IN_PROCESS
            )
        try:
            body = orjson.loads(response.get_data())
        except orjson.JSONDecodeError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            raise ApiReadError(path, response.status_code, _message(body, response.status))
        return body

    def send(
        self, method: str, path: str, body: Mapping[str, object] | None = None
    ) -> dict[str, Any]:
        """``method path`` with a JSON ``body``, if any (the Alerts page's silences, made and
        ended); the decoded answer, ``{}`` for a 204; :class:`ApiReadError` on any other 4xx or
        5xx answer."""
        with self._server.test_client() as client:
            response = client.open(
                path,
                method=method,
                json=None if body is None else dict(body),
                headers=self._headers,
                environ_base=_IN_PROCESS,
            )
        if response.status_code == 204:
            return {}
        try:
            decoded = orjson.loads(response.get_data())
        except orjson.JSONDecodeError:
            decoded = None
        if response.status_code >= 400 or not isinstance(decoded, dict):
            raise ApiReadError(path, response.status_code, _message(decoded, response.status))
        return decoded


def _message(body: object, status: str) -> str:
    if isinstance(body, dict):
        errors = body.get("errors")
        if errors:
            return f"{body.get('message', status)}: {orjson.dumps(errors).decode()}"
        return str(body.get("message", status))
    return status
