"""WebM (the Matroska profile browsers record): EBML header, Segment, Tracks, TrackEntry.

A file is audio when its Segment holds a TrackEntry of TrackType 2 (audio) with an Audio
element; SamplingFrequency and Channels take the defaults the Matroska specification gives them
when absent (8000 Hz, 1 channel).

Files recorded live (MediaRecorder) carry no Duration in their Info element, and a recording
cut short carries the Duration it was meant to have, so the duration is measured from the data:
the time of the last block of the audio track in the last Cluster, found from the end of the
file (clusters start at least every 32.767 s, block timestamps being 16-bit). The Info Duration
is kept when the last block starts less than :data:`BLOCK_SLACK_SECONDS` before it (the last
block's own length is not recorded anywhere cheap).
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
_CLUSTER_BYTES: Final = b"\x1f\x43\xb6\x75"
_CLUSTER_TIMESTAMP: Final = 0xE7
_SIMPLE_BLOCK: Final = 0xA3
_BLOCK_GROUP: Final = 0xA0
_BLOCK: Final = 0xA1
_TRACK_NUMBER: Final = 0xD7
TAIL_BYTES: Final = 1 << 20  # where the last cluster starts, for audio bitrates
# Cluster IDs tried from the end: a real last cluster parses at once; only a file crafted
# with the ID all over its tail would make more attempts, each one a walk over elements.
MAX_CLUSTER_CANDIDATES: Final = 8
# Longer than one audio block: Opus packets are at most 120 ms, AAC frames at 8 kHz 128 ms.
BLOCK_SLACK_SECONDS: Final = 0.25
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
    info: tuple[int, int] | None = None
    for element_id, start, end in _elements(f, *segment):
        if element_id == _INFO:
            info = (start, end)
        elif element_id == _TRACKS:
            rate, channels, track = _audio_track(f, (start, end))
            return Stream(rate, channels, _duration(f, size, info, track))
        elif element_id == _CLUSTER:
            break  # audio data before any track description
    raise missing(NAME, "has no Tracks element, so no audio track")


def _audio_track(f: BinaryIO, tracks: tuple[int, int]) -> tuple[int, int, int]:
    """(sampling frequency, channels, track number) of the first audio TrackEntry."""
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
        return int(rate or 0), channels, _uint(f, _child(f, (start, end), _TRACK_NUMBER), 0)
    raise missing(NAME, "has no audio track (a TrackEntry of TrackType audio)")


def _duration(f: BinaryIO, size: int, info: tuple[int, int] | None, track: int) -> float | None:
    scale = _DEFAULT_TIMESTAMP_SCALE
    declared = None
    if info is not None:
        scale = _uint(f, _child(f, info, _TIMESTAMP_SCALE), _DEFAULT_TIMESTAMP_SCALE)
        ticks = _float(f, _child(f, info, _DURATION), None)
        declared = ticks * scale / _NANOSECONDS if ticks is not None and ticks > 0 else None
    last = _last_block_ticks(f, size, track)
    measured = last * scale / _NANOSECONDS if last is not None else None
    if measured is None or (declared is not None and measured + BLOCK_SLACK_SECONDS >= declared):
        return declared
    return measured


def _last_block_ticks(f: BinaryIO, size: int, track: int) -> int | None:
    """Timestamp of the last block of ``track`` in the last Cluster that parses, if any."""
    start = max(size - TAIL_BYTES, 0)
    f.seek(start)
    tail = f.read(size - start)
    position = len(tail)
    for _ in range(MAX_CLUSTER_CANDIDATES):
        position = tail.rfind(_CLUSTER_BYTES, 0, position)
        if position < 0:
            return None
        ticks = _cluster_last_block(f, start + position, size, track)
        if ticks is not None:
            return ticks
    return None


def _cluster_last_block(f: BinaryIO, offset: int, size: int, track: int) -> int | None:
    cluster = next(_elements(f, offset, size), None)
    if cluster is None or cluster[0] != _CLUSTER:
        return None
    base = latest = None
    for element_id, start, end in _elements(f, cluster[1], cluster[2]):
        if element_id == _CLUSTER:
            break  # a cluster of unknown size runs until the next one
        if element_id == _CLUSTER_TIMESTAMP:
            base = _uint(f, (start, end), 0)
            continue
        if element_id == _BLOCK_GROUP:
            block = _child(f, (start, end), _BLOCK)
            if block is None:
                continue
            start, end = block
        elif element_id != _SIMPLE_BLOCK:
            continue
        f.seek(start)
        header = f.read(11)  # track number (1-8 bytes), signed 16-bit relative timestamp
        number = read_vint(header, 0, keep_marker=False)
        if number is None or number[0] != track or len(header) < number[1] + 2:
            continue
        relative = int.from_bytes(header[number[1] : number[1] + 2], "big", signed=True)
        latest = relative if latest is None else max(latest, relative)
    if base is None or latest is None:
        return None
    return max(base + latest, 0)
