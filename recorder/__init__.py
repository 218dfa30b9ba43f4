"""Voice Recorder Pro: recordings (audio files plus metadata) behind a Flask API."""

from __future__ import annotations

__version__ = "0.1.0"
