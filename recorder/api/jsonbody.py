"""Every JSON body the API reads is bounded in size and in nesting depth (400 beyond either).

Python's JSON parser recurses once per nesting level, so ``[[[[...]]]]`` a few thousand levels
deep raises :class:`RecursionError` (or exhausts a small thread stack) instead of a parse error;
and a body is read whole before it is parsed. Neither the standard library nor orjson (whose
own limit is a fixed 1024 levels, reported as a generic decode error) offers a configurable
depth bound, so the depth is counted here with a linear scan before any parser sees the text.

The bound sits on the request object and on the app's JSON provider, which every reader of a
body goes through, so that no route can bypass it:

* webargs (flask-smorest's ``@blp.arguments(..., location="json")``) parses
  ``request.get_data()`` with the standard library: :meth:`BoundedJSONRequest.get_data` checks
  the body of any request with a JSON media type before handing it out;
* ``request.get_json()`` / ``request.json``, with or without ``force=True``, parse with the
  app's JSON provider, :class:`BoundedJSONProvider`, which checks whatever it is asked to load.

The limits are the app's ``JSON_MAX_BYTES`` and ``JSON_MAX_DEPTH`` config keys (defaults
:data:`DEFAULT_MAX_BYTES` and :data:`DEFAULT_MAX_DEPTH`: far above what any operation of this
API takes, far below what hurts the process).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from flask import Flask, Request, Response, current_app
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from recorder.api.errors import error_response
from recorder.errors import RecorderError

DEFAULT_MAX_BYTES: Final = 1024 * 1024
DEFAULT_MAX_DEPTH: Final = 32
MAX_BYTES_KEY: Final = "JSON_MAX_BYTES"
MAX_DEPTH_KEY: Final = "JSON_MAX_DEPTH"

# A whole JSON string (escapes included, so an escaped quote does not end it) or one bracket.
# Brackets inside strings are text, not nesting. A string left open runs to the end of the body
# (the parser stops there with a 400 of its own): were an open string not to match, the search
# would start again at every quote inside it, quadratic in the body's length. The quantifiers
# are possessive and the pattern always matches from a quote, so nothing is ever retried.
_STRUCTURE: Final = re.compile(r'"[^"\\]*+(?:\\[\s\S]?[^"\\]*+)*+(?:"|\Z)|[\[\]{}]')
_OPENING: Final = frozenset("[{")


class JSONBodyError(RecorderError):
    """A JSON request body exceeds the size or depth bound (HTTP 400).

    ``bound`` names which (``"size"`` or ``"depth"``) and ``limit`` its value.
    """

    def __init__(self, bound: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.bound = bound
        self.limit = limit


def _max_bytes(app: Flask) -> int:
    return int(app.config.get(MAX_BYTES_KEY, DEFAULT_MAX_BYTES))


def _max_depth(app: Flask) -> int:
    return int(app.config.get(MAX_DEPTH_KEY, DEFAULT_MAX_DEPTH))


def _too_large(max_bytes: int) -> JSONBodyError:
    return JSONBodyError(
        "size",
        max_bytes,
        f"the JSON body is larger than the limit of {max_bytes} bytes; "
        "send only the fields to change",
    )


def check_size(size: int, max_bytes: int) -> None:
    """Raise :class:`JSONBodyError` when a body of ``size`` bytes is over ``max_bytes``."""
    if size > max_bytes:
        raise _too_large(max_bytes)


def check_depth(text: str, max_depth: int) -> None:
    """Raise :class:`JSONBodyError` when ``text`` nests arrays/objects deeper than ``max_depth``.

    Linear in the length of ``text`` and stops at the first level too deep; never recurses.
    """
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in _OPENING:
            depth += 1
            if depth > max_depth:
                raise JSONBodyError(
                    "depth",
                    max_depth,
                    f"the JSON body nests arrays or objects more than {max_depth} levels deep; "
                    "send a flatter document",
                )
        elif token[0] != '"':
            depth -= 1


def check_json(data: str | bytes, max_bytes: int, max_depth: int) -> None:
    """Check ``data`` (text, or bytes in any encoding JSON allows) against both bounds."""
    size = len(data.encode()) if isinstance(data, str) else len(data)
    check_size(size, max_bytes)
    if isinstance(data, bytes):
        # Undecodable bytes become U+FFFD: the brackets around them still count.
        data = data.decode(json.detect_encoding(data), errors="replace")
    check_depth(data, max_depth)


class BoundedJSONProvider(DefaultJSONProvider):
    """The app's JSON (``app.json``), whose ``loads`` checks the bounds first.

    Flask parses ``request.get_json()`` with ``app.json.loads`` (the request context sets
    ``request.json_module = app.json``), whatever the media type when ``force=True``.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_json(s, _max_bytes(self._app), _max_depth(self._app))
        return super().loads(s, **kwargs)


class BoundedJSONRequest(Request):
    """A Flask request whose JSON body is checked against both bounds before anyone parses it."""

    _json_checked = False

    def get_data(  # type: ignore[override]
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> bytes | str:
        if self.is_json and not self._json_checked:
            # The app's MAX_CONTENT_LENGTH (sized for uploads) may be the tighter bound.
            app = current_app
            limit = min(_max_bytes(app), self.max_content_length or _max_bytes(app))
            if self.content_length is not None:
                check_size(self.content_length, limit)  # refused before reading anything
            else:
                # A body without a length (chunked) is read no further than the bound.
                self.max_content_length = limit
            try:
                data = super().get_data(cache=True)
            except RequestEntityTooLarge:
                raise _too_large(limit) from None
            check_json(data, limit, _max_depth(app))
            self._json_checked = True
        return super().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)


def _bounds_exceeded(error: JSONBodyError) -> Response:
    return error_response(400, str(error), bound=error.bound, limit=error.limit)


def install(app: Flask) -> None:
    """Make ``app`` read every JSON body through :class:`BoundedJSONRequest`."""
    app.request_class = BoundedJSONRequest
    app.json = BoundedJSONProvider(app)
    app.config.setdefault(MAX_BYTES_KEY, DEFAULT_MAX_BYTES)
    app.config.setdefault(MAX_DEPTH_KEY, DEFAULT_MAX_DEPTH)
    app.register_error_handler(JSONBodyError, _bounds_exceeded)
