"""What the views need from the running app, kept on ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from instrumentation import Database
from recorder.config import Settings
from recorder.storage import BlobStore

EXTENSION = "vrp"


@dataclass(frozen=True)
class RecorderContext:
    settings: Settings
    db: Database
    store: BlobStore


def recorder_context() -> RecorderContext:
    context: RecorderContext = current_app.extensions[EXTENSION]
    return context
