"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job).

Readiness checks the database with one round trip and the audio storage with a probe write;
each failing check is named in the body, with the reason class but never a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from flask.views import MethodView

from instrumentation import conventions
from recorder.api.context import recorder_context
from recorder.api.traced import Blueprint
from recorder.schemas import HealthSchema

logger = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Liveness and readiness")


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        return {"status": "ok", "checks": {}}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A dependency is unavailable")
    def get(self) -> tuple[dict[str, Any], int]:
        ctx = recorder_context()
        checks: dict[str, str] = {}
        with ctx.steps(conventions.HEALTH_CHECK_SPAN):
            for name, check in (("database", ctx.db.ping), ("storage", _check_storage)):
                try:
                    check()
                except Exception as exc:  # readiness reports any failure instead of raising it
                    logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
                    checks[name] = f"failed: {type(exc).__name__}"
                else:
                    checks[name] = "ok"
        ready = all(value == "ok" for value in checks.values())
        return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503


def _check_storage() -> None:
    ctx = recorder_context()
    with ctx.steps(conventions.STORAGE_CHECK_SPAN):
        ctx.store.check_writable()
