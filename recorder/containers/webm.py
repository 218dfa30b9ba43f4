"""WebM (the Matroska profile browsers record): EBML header, Segment, Tracks, TrackEntry.

A file is audio when its Segment holds a TrackEntry of TrackType 2 (audio) with an Audio
element; SamplingFrequency and Channels take the defaults the Matroska specification gives them
when absent (8000 Hz, 1 channel). The duration is the Info element's Duration, which files
recorded live (MediaRecorder) usually lack: finding it would mean walking every cluster.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

NAME: Final = "WebM"
MAGIC: Final = b"\x1a\x45\xdf\xa3"
DOCTYPE: Final = 0x4282
MAX_ELEMENTS: Final = 4096  # per level
_SEGMENT: Final = 0x18538067
_INFO: Final = 0x1549A966
_TIMESTAMP_SCALE: Final = 0x2AD7B1
_DURATION: Final = 0x4489
_TRACKS: Final = 0x1654AE6B
_TRACK_ENTRY: Final = 0xAE
_TRACK_TYPE: Final = 0x83
_AUDIO_TRACK: Final = 2
_AUDIO: Final = 0xE1
_SAMPLING_FREQUENCY: Final = 0xB5
_CHANNELS: Final = 0x9F
_CLUSTER: Final = 0x1F43B675
_DEFAULT_RATE: Final = 8000.0
_DEFAULT_TIMESTAMP_SCALE: Final = 1_000_000  # nanoseconds per tick
_NANOSECONDS: Final = 1e9


def read_vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int] | None:
    """Decode an EBML variable-length integer; (value, bytes used), or None if cut or invalid.

    An element size whose value bits are all ones means "unknown size" (a live recording
    writing its Segment and Clusters before their length is known); it comes back as -1.
    """
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _elements(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, body start, body end) of each element between ``start`` and ``end``.

    An unknown size runs to ``end``; an element running past ``end`` is cut to it.
    """
    offset = start
    for _ in range(MAX_ELEMENTS):
        if offset >= end:
            return
        f.seek(offset)
        header = f.read(12)
        element = read_vint(header, 0, keep_marker=True)
        size = read_vint(header, element[1], keep_marker=False) if element else None
        if element is None or size is None:
            return
        body = offset + element[1] + size[1]
        body_end = end if size[0] < 0 else min(body + size[0], end)
        yield element[0], body, body_end
        offset = body_end


def _child(f: BinaryIO, span: tuple[int, int], element_id: int) -> tuple[int, int] | None:
    return next(((s, e) for i, s, e in _elements(f, *span) if i == element_id), None)


def _bytes(f: BinaryIO, span: tuple[int, int]) -> bytes:
    f.seek(span[0])
    return f.read(min(span[1] - span[0], 8))


def _uint(f: BinaryIO, span: tuple[int, int] | None, default: int) -> int:
    return int.from_bytes(_bytes(f, span), "big") if span else default


def _float(f: BinaryIO, span: tuple[int, int] | None, default: float | None) -> float | None:
    data = _bytes(f, span) if span else b""
    if len(data) not in (4, 8):
        return default
    value = float(struct.unpack(">f" if len(data) == 4 else ">d", data)[0])
    return value if math.isfinite(value) else default


def read(f: BinaryIO, size: int) -> Stream:
    """The first audio track of the WebM file ``f`` of ``size`` bytes."""
    top = list(_elements(f, 0, size))
    if not top or top[0][0] != int.from_bytes(MAGIC, "big"):
        raise missing(NAME, "has no EBML header")
    segment = next(((s, e) for i, s, e in top[1:] if i == _SEGMENT), None)
    if segment is None:
        raise missing(NAME, "has no Segment after its EBML header")
    duration: float | None = None
    for element_id, start, end in _elements(f, *segment):
        if element_id == _INFO:
            duration = _duration(f, (start, end))
        elif element_id == _TRACKS:
            return _audio_track(f, (start, end), duration)
        elif element_id == _CLUSTER:
            break  # audio data before any track description
    raise missing(NAME, "has no Tracks element, so no audio track")


def _duration(f: BinaryIO, info: tuple[int, int]) -> float | None:
    ticks = _float(f, _child(f, info, _DURATION), None)
    scale = _uint(f, _child(f, info, _TIMESTAMP_SCALE), _DEFAULT_TIMESTAMP_SCALE)
    if ticks is None or not ticks > 0:
        return None
    return ticks * scale / _NANOSECONDS


def _audio_track(f: BinaryIO, tracks: tuple[int, int], duration: float | None) -> Stream:
    for element_id, start, end in _elements(f, *tracks):
        if element_id != _TRACK_ENTRY:
            continue
        if _uint(f, _child(f, (start, end), _TRACK_TYPE), 0) != _AUDIO_TRACK:
            continue
        audio = _child(f, (start, end), _AUDIO)
        if audio is None:
            raise missing(NAME, "its audio track has no Audio element (sampling frequency)")
        rate = _float(f, _child(f, audio, _SAMPLING_FREQUENCY), _DEFAULT_RATE)
        channels = _uint(f, _child(f, audio, _CHANNELS), 1)
        return Stream(int(rate or 0), channels, duration)
    raise missing(NAME, "has no audio track (a TrackEntry of TrackType audio)")
