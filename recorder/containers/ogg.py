"""Ogg (RFC 3533) holding Opus, Vorbis, Speex or FLAC: the codec's identification header in
the stream's first page, and the granule position of its last complete page.

The duration is that of what is there: the granule position (samples, at 48 kHz for Opus,
less the pre-skip) of the last page that is whole in the file, so a recording cut mid-page
still reports the time up to the cut. A stream whose pages all carry granule 0 (headers only)
holds no audio and is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

CAPTURE: Final = b"OggS"
MAX_BOS_PAGES: Final = 16
# Pages are at most 27 + 255 + 255 * 255 bytes, so the last complete one of a stream cut
# anywhere starts within this many bytes of the end.
TAIL_BYTES: Final = 4 * 65_307
_HEADER: Final = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, ...
_BOS: Final = 0x02
_OPUS_RATE: Final = 48000
NAMES: Final = {
    "opus": "Ogg Opus",
    "vorbis": "Ogg Vorbis",
    "speex": "Ogg Speex",
    "flac": "Ogg FLAC",
}


@dataclass(frozen=True, slots=True)
class _Page:
    offset: int
    flags: int
    granule: int
    serial: int
    length: int  # header, segment table and body
    body_start: int


def _page(data: bytes, offset: int) -> _Page | None:
    if offset + _HEADER.size > len(data):
        return None
    capture, version, flags, granule, serial, _seq, _crc, segments = _HEADER.unpack_from(
        data, offset
    )
    if capture != CAPTURE or version != 0:
        return None
    table = data[offset + _HEADER.size : offset + _HEADER.size + segments]
    if len(table) < segments:
        return None
    start = offset + _HEADER.size + segments
    end = start + sum(table)
    if end > len(data):
        return None
    return _Page(offset, flags, granule, serial, end - offset, start)


def _identify(packet: bytes, kind: str) -> tuple[int, int, int] | None:
    """(sample rate, channels, pre-skip) from the codec's identification header, if it is one."""
    if kind == "opus" and len(packet) >= 19 and packet[:8] == b"OpusHead":
        return _OPUS_RATE, packet[9], int.from_bytes(packet[10:12], "little")
    if kind == "vorbis" and len(packet) >= 16 and packet[:7] == b"\x01vorbis":
        return int.from_bytes(packet[12:16], "little"), packet[11], 0
    if kind == "speex" and len(packet) >= 52 and packet[:8] == b"Speex   ":
        rate, channels = struct.unpack_from("<I8xI", packet, 36)
        return rate, channels, 0
    # Ogg FLAC: 0x7F "FLAC", version (2), header count (2), "fLaC", a STREAMINFO block.
    if kind == "flac" and len(packet) >= 51 and packet[:5] == b"\x7fFLAC" and not packet[13] & 0x7F:
        info = packet[17:]
        rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
        return rate, ((info[12] >> 1) & 0x7) + 1, 0
    return None


def read(f: BinaryIO, size: int, kind: str) -> Stream:
    """The first ``kind`` stream (``opus``, ``vorbis``, ``speex``, ``flac``) of the Ogg file."""
    name = NAMES[kind]
    f.seek(0)
    head = f.read(MAX_BOS_PAGES * 65_307)
    offset, page = 0, _page(head, 0)
    header: tuple[int, int, int] | None = None
    serial = 0
    # The file opens with one BOS page per stream (a Skeleton stream may come first).
    while page is not None and page.flags & _BOS and header is None:
        packet = head[page.body_start : page.offset + page.length]
        header, serial = _identify(packet, kind), page.serial
        offset += page.length
        page = _page(head, offset)
    if header is None:
        raise missing(name, "has no identification header in its first page")
    rate, channels, pre_skip = header
    granule = _last_granule(f, size, serial)
    if granule is None or granule <= 0:
        raise missing(name, "has no complete audio page")
    samples = max(granule - pre_skip, 0)
    return Stream(rate, channels, samples / rate if rate else None)


def _last_granule(f: BinaryIO, size: int, serial: int) -> int | None:
    start = max(size - TAIL_BYTES, 0)
    f.seek(start)
    tail = f.read(TAIL_BYTES)
    position = len(tail)
    while (position := tail.rfind(CAPTURE, 0, position)) >= 0:
        page = _page(tail, position)
        # -1: no packet ends on this page; an earlier one says how far the stream got.
        if page is not None and page.serial == serial and page.granule != -1:
            return page.granule
    return None
