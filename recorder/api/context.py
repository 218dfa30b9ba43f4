"""What the views need from the running app, kept on ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from instrumentation import Database, Steps
from recorder.config import Settings
from recorder.storage import BlobStore
from recorder.uploads import Uploads

EXTENSION = "vrp"


@dataclass(frozen=True)
class RecorderContext:
    settings: Settings
    db: Database
    store: BlobStore
    uploads: Uploads
    # The step spans of the app's requests (recorder.api.traced, the views).
    steps: Steps


def recorder_context() -> RecorderContext:
    context: RecorderContext = current_app.extensions[EXTENSION]
    return context
