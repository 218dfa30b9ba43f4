"""RIFF/WAVE: the ``fmt `` chunk describes the stream, the ``data`` chunk holds it.

A recorder killed mid-write leaves the RIFF and data sizes at 0 or 0xFFFFFFFF (the values
written before the length was known), and a cut upload claims more bytes than it holds; both
are measured from the bytes actually present instead. Chunks are walked directly rather than
with the :mod:`wave` module, which reads integer PCM only (not WAVE_FORMAT_EXTENSIBLE, IEEE
float or ADPCM) and refuses unfinished headers.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

NAME: Final = "WAV"
MAX_CHUNKS: Final = 256
_FMT: Final = struct.Struct("<HHIIH")  # format tag, channels, rate, byte rate, block align
_FMT_MIN_BYTES: Final = 16
_UNKNOWN_SIZES: Final = (0, 0xFFFFFFFF)


def read(f: BinaryIO, size: int) -> Stream:
    """The stream of the WAV file ``f`` of ``size`` bytes; 415 without a whole ``fmt ``."""
    f.seek(0)
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise missing(NAME, "has no RIFF/WAVE header")
    fmt: tuple[int, ...] | None = None
    data_bytes: int | None = None
    offset = 12
    for _ in range(MAX_CHUNKS):
        f.seek(offset)
        chunk = f.read(8)
        if len(chunk) < 8:
            break
        chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
        available = size - offset - 8
        if chunk_id == b"fmt ":
            body = f.read(_FMT.size)
            if chunk_size < _FMT_MIN_BYTES or len(body) < _FMT.size:
                raise missing(NAME, "its 'fmt ' chunk is cut short")
            fmt = _FMT.unpack(body)
        elif chunk_id == b"data":
            unsure = chunk_size in _UNKNOWN_SIZES or chunk_size > available
            data_bytes = max(available, 0) if unsure else chunk_size
            if fmt is not None or unsure:
                break
        offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise missing(NAME, "has no 'fmt ' chunk, so its sample rate and channels are unknown")
    if data_bytes is None:
        raise missing(NAME, "has no 'data' chunk, so it holds no audio")
    _tag, channels, sample_rate, byte_rate, block_align = fmt
    # With no channels both sizes are 0 anyway, and the channel check names that better.
    if channels and not byte_rate and not block_align:
        raise missing(
            NAME,
            "its 'fmt ' chunk gives neither a byte rate nor a block size, so it cannot be read",
        )
    # Byte rate is the average for compressed formats; PCM writers sometimes leave it at 0.
    byte_rate = byte_rate or block_align * sample_rate
    duration = data_bytes / byte_rate if byte_rate else None
    return Stream(sample_rate, channels, duration)
