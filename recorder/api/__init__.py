"""The recorder's HTTP API: the Flask app factory and its blueprints."""

from __future__ import annotations

from recorder.api.app import create_app

__all__ = ["create_app"]
