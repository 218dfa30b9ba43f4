"""Native FLAC: ``fLaC``, metadata blocks (STREAMINFO first), then frames.

A file is audio when STREAMINFO is whole and a frame sync code follows the last metadata block.
Duration is STREAMINFO's total sample count (0 means "unknown", as a live encoder writes it).
"""

from __future__ import annotations

from typing import BinaryIO, Final

from recorder.containers import Stream, missing

NAME: Final = "FLAC"
MAGIC: Final = b"fLaC"
MAX_BLOCKS: Final = 1024
_STREAMINFO: Final = 0
_STREAMINFO_BYTES: Final = 34
_INVALID_BLOCK: Final = 127
_NO_STREAMINFO: Final = "has no STREAMINFO block, so its sample rate and channels are unknown"


def read(f: BinaryIO, start: int = 0) -> Stream:
    """The stream of the FLAC file ``f`` whose ``fLaC`` marker is at ``start``."""
    f.seek(start)
    if f.read(4) != MAGIC:
        raise missing(NAME, "has no fLaC marker")
    info: Stream | None = None
    for index in range(MAX_BLOCKS):
        header = f.read(4)
        if len(header) < 4:
            raise missing(NAME, _NO_STREAMINFO if info is None else "its metadata is cut short")
        last, kind = header[0] & 0x80, header[0] & 0x7F
        length = int.from_bytes(header[1:], "big")
        if kind == _INVALID_BLOCK or (index == 0 and kind != _STREAMINFO):
            raise missing(NAME, _NO_STREAMINFO)
        if kind == _STREAMINFO:
            body = f.read(length)
            if length != _STREAMINFO_BYTES or len(body) < length:
                raise missing(NAME, "its STREAMINFO block is damaged")
            info = _streaminfo(body)
        else:
            f.seek(length, 1)
        if last:
            break
    sync = f.read(2)
    if info is None or len(sync) < 2 or sync[0] != 0xFF or sync[1] & 0xFE != 0xF8:
        raise missing(NAME, "has no audio frame after its metadata")
    return info


def _streaminfo(body: bytes) -> Stream:
    sample_rate = (body[10] << 12) | (body[11] << 4) | (body[12] >> 4)
    channels = ((body[12] >> 1) & 0x7) + 1
    total_samples = ((body[13] & 0x0F) << 32) | int.from_bytes(body[14:18], "big")
    duration = total_samples / sample_rate if total_samples and sample_rate else None
    return Stream(sample_rate, channels, duration)
