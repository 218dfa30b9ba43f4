"""Readers of audio containers, just far enough to prove a file holds an audio stream.

Each module reads one container family from a seekable binary file and returns a
:class:`Stream` (sample rate, channel count, duration when the container says) or raises
:class:`~recorder.errors.UnsupportedMediaError` with a message naming what is missing. They are
hand-written because the one library at hand, mutagen, is built to read tags: it accepts a
``fLaC`` or ``RIFF....WAVE`` followed by junk, scans MP3 files for any byte pattern that looks
like a frame, and reports the ``channelcount`` template field of an MP4 sample entry (2 for
every ffmpeg-made mono AAC file) over the stream's own AudioSpecificConfig.

Readers never read the whole file: headers, box and element sizes, a few frame headers, and
for the duration of what is there the end of the file (at most 1 MiB) where the last page,
cluster or frame begins.
"""

from __future__ import annotations

from dataclasses import dataclass

from recorder.errors import UnsupportedMediaError

ADVICE = "upload the complete recording"


@dataclass(frozen=True, slots=True)
class Stream:
    """The first audio stream of a file; ``duration_seconds`` is ``None`` when not recorded."""

    sample_rate: int
    channels: int
    duration_seconds: float | None


def missing(container: str, what: str) -> UnsupportedMediaError:
    """The error for a file that starts like ``container`` but lacks ``what``."""
    return UnsupportedMediaError(f"the file starts like {container} but {what}; {ADVICE}")
