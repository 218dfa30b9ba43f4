"""flask-smorest's Blueprint and Api with their own work under step spans.

flask-smorest reads a view's arguments (webargs: headers, query, form, files, JSON; the body is
read and parsed there) before the view runs, and dumps its result with the response schema and
encodes it as JSON after. Both happen inside the request but outside the view's own code, so
they get their spans here, from the app's :class:`~instrumentation.spans.Steps`:

* ``http.request.parse``: each ``@blp.arguments`` location parsed and validated (a span per
  decorator; a 422 ends it with ``error.type``);
* ``http.response.serialize``: from the moment the view returns to the response object being
  ready (schema dump, JSON encoding, headers), and the generation of ``/api/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import flask_smorest
from flask import g
from webargs.flaskparser import FlaskParser

from instrumentation import Steps, conventions
from recorder.api.context import recorder_context

# Where a view's wrapper leaves the serialize span it started for flask-smorest's wrapper.
_SERIALIZING = "vrp_serialize_span"


def _steps() -> Steps:
    return recorder_context().steps


class _TracedParser(FlaskParser):
    def parse(self, *args: Any, **kwargs: Any) -> Any:
        with _steps()(conventions.HTTP_REQUEST_PARSE_SPAN):
            return super().parse(*args, **kwargs)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with argument parsing and response serialisation traced."""

    ARGUMENTS_PARSER = _TracedParser()

    def response(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        document = super().response(*args, **kwargs)

        def decorator(view: Callable[..., Any]) -> Any:
            # flask-smorest's wrapper runs the view, then dumps and encodes what it returned:
            # the span starts when the view returns and ends when that wrapper does.
            @wraps(view)
            def returning(*view_args: Any, **view_kwargs: Any) -> Any:
                result = view(*view_args, **view_kwargs)
                setattr(g, _SERIALIZING, _steps().start(conventions.HTTP_RESPONSE_SERIALIZE_SPAN))
                return result

            serializing = document(returning)

            @wraps(serializing)
            def serialized(*view_args: Any, **view_kwargs: Any) -> Any:
                try:
                    return serializing(*view_args, **view_kwargs)
                finally:
                    span = g.pop(_SERIALIZING, None)
                    if span is not None:
                        span.end()

            return serialized

        return decorator


class Api(flask_smorest.Api):
    """flask-smorest's Api with the OpenAPI document's generation traced."""

    def _openapi_json(self) -> Any:
        with _steps()(conventions.HTTP_RESPONSE_SERIALIZE_SPAN):
            return super()._openapi_json()
