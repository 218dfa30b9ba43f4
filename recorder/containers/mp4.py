"""ISO base media (MP4/M4A): the first track whose handler is ``soun``, and its sample entry.

Path walked: ``moov/trak/mdia/{hdlr,mdhd,minf/stbl/stsd}``. The sample entry's
``channelcount`` is a template field that ISO/IEC 14496-12 fixes at 2 and ffmpeg writes as 2
for mono AAC too, so for AAC (``mp4a`` with an ``esds``) the channel configuration and sampling
frequency come from the stream's AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1); for ALAC from
its ``alac`` box; for Opus from ``dOps``; for anything else from the sample entry itself.

A file whose ``moov`` box is missing (a recorder that crashed before writing it at the end) has
no track table and cannot be played: it is refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

NAME: Final = "MP4/M4A"
MAX_BOXES: Final = 4096  # per level; real files hold a handful
_OPUS_RATE: Final = 48000
# AudioSpecificConfig sampling frequency index -> Hz; 15 means a 24-bit value follows.
_AAC_RATES: Final = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_AAC_EXPLICIT_RATE: Final = 15
# channelConfiguration -> channels (ISO/IEC 14496-3 table 1.19, amended); 0 = in-band PCE.
_AAC_CHANNELS: Final = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
_AOT_SBR: Final = 5
_AOT_PS: Final = 29
_AOT_ESCAPE: Final = 31
_ES_DESCRIPTOR: Final = 0x03
_DECODER_CONFIG: Final = 0x04
_DECODER_SPECIFIC: Final = 0x05


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box between ``start`` and ``end``.

    A box running past ``end`` is cut to it (a truncated file); a size below the header's own
    length ends the walk (damaged structure).
    """
    offset = start
    for _ in range(MAX_BOXES):
        if offset + 8 > end:
            return
        f.seek(offset)
        header = f.read(16)
        if len(header) < 8:
            return
        size, kind = int.from_bytes(header[:4], "big"), header[4:8]
        body = offset + 8
        if size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                return
            size, body = int.from_bytes(header[8:16], "big"), offset + 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - offset
        if size < body - offset:
            return
        box_end = min(offset + size, end)
        yield kind, body, box_end
        offset = box_end


def _child(f: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(f, start, end) if k == kind), None)


def _path(f: BinaryIO, start: int, end: int, *kinds: bytes) -> tuple[int, int] | None:
    span: tuple[int, int] | None = (start, end)
    for kind in kinds:
        if span is None:
            return None
        span = _child(f, span[0], span[1], kind)
    return span


def _read(f: BinaryIO, span: tuple[int, int], limit: int = 1 << 16) -> bytes:
    f.seek(span[0])
    return f.read(min(span[1] - span[0], limit))


def read(f: BinaryIO, size: int) -> Stream:
    """The first audio track of the MP4 file ``f`` of ``size`` bytes."""
    moov = _child(f, 0, size, b"moov")
    if moov is None:
        raise missing(NAME, "has no 'moov' box (the track table written when recording ends)")
    for kind, start, end in _boxes(f, *moov):
        if kind != b"trak":
            continue
        mdia = _child(f, start, end, b"mdia")
        if mdia is None:
            continue
        hdlr = _child(f, *mdia, b"hdlr")
        if hdlr is None or _read(f, hdlr, 12)[8:12] != b"soun":
            continue
        stsd = _path(f, *mdia, b"minf", b"stbl", b"stsd")
        if stsd is None:
            raise missing(NAME, "its audio track has no sample description ('stsd')")
        rate, channels = _sample_entry(f, stsd)
        return Stream(rate, channels, _duration(f, mdia))
    raise missing(NAME, "has no audio track (a 'trak' whose handler is 'soun')")


def _duration(f: BinaryIO, mdia: tuple[int, int]) -> float | None:
    mdhd = _child(f, *mdia, b"mdhd")
    if mdhd is None:
        return None
    body = _read(f, mdhd, 32)
    if body[:1] == b"\x01" and len(body) >= 32:
        timescale, duration = struct.unpack(">IQ", body[20:32])
    elif len(body) >= 20:
        timescale, duration = struct.unpack(">II", body[12:20])
    else:
        return None
    # All ones means "unknown" (fragmented files keep their durations in the fragments).
    if not timescale or duration in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return duration / timescale


def _sample_entry(f: BinaryIO, stsd: tuple[int, int]) -> tuple[int, int]:
    # stsd: version/flags (4), entry count (4), then the entries as boxes.
    entry = next(_boxes(f, stsd[0] + 8, stsd[1]), None)
    if entry is None:
        raise missing(NAME, "its audio track has no sample entry")
    kind, start, end = entry
    body = _read(f, (start, end), 72)
    if len(body) < 28:
        raise missing(NAME, "its audio sample entry is cut short")
    # SampleEntry: reserved (6), data reference index (2); then the sound description,
    # version 0/1 (ISO and QuickTime) or 2 (QuickTime, with a float64 rate and u32 channels).
    version = int.from_bytes(body[8:10], "big")
    if version == 2 and len(body) >= 44:
        rate = int(struct.unpack(">d", body[32:40])[0])
        channels = int.from_bytes(body[40:44], "big")
        children = start + 64
    else:
        channels = int.from_bytes(body[16:18], "big")
        rate = int.from_bytes(body[24:28], "big") >> 16
        children = start + (44 if version == 1 else 28)
    if kind == b"mp4a":
        esds = _child(f, children, end, b"esds")
        config = _audio_specific_config(_read(f, esds)[4:]) if esds else None
        if config is not None:
            rate, channels = config[0] or rate, config[1] or channels
    elif kind == b"alac":
        alac = _child(f, children, end, b"alac")
        body = _read(f, alac, 28) if alac else b""
        if len(body) >= 28:
            channels = body[13]
            rate = int.from_bytes(body[24:28], "big")
    elif kind == b"Opus":
        dops = _child(f, children, end, b"dOps")
        body = _read(f, dops, 2) if dops else b""
        if len(body) >= 2:
            channels, rate = body[1], _OPUS_RATE
    return rate, channels


def _descriptors(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each MPEG-4 descriptor in ``data`` (ISO/IEC 14496-1, 8.3.3)."""
    offset = 0
    while offset + 2 <= len(data):
        tag, length, offset = data[offset], 0, offset + 1
        for _ in range(4):  # the length takes 1-4 bytes of 7 bits, high bit = more follow
            if offset >= len(data):
                return
            byte = data[offset]
            offset += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        yield tag, data[offset : offset + length]
        offset += length


def _audio_specific_config(esds: bytes) -> tuple[int, int] | None:
    """(sampling frequency, channels) of the AudioSpecificConfig in an ``esds`` body; 0s for
    what it leaves open. ``None`` when there is no such config."""
    for tag, es in _descriptors(esds):
        if tag != _ES_DESCRIPTOR or len(es) < 3:
            continue
        flags, offset = es[2], 3
        if flags & 0x80:  # streamDependenceFlag
            offset += 2
        if flags & 0x40 and offset < len(es):  # URL_Flag
            offset += 1 + es[offset]
        if flags & 0x20:  # OCRstreamFlag
            offset += 2
        for config_tag, config in _descriptors(es[offset:]):
            if config_tag != _DECODER_CONFIG:
                continue
            for info_tag, info in _descriptors(config[13:]):
                if info_tag == _DECODER_SPECIFIC:
                    return _parse_asc(info)
    return None


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def take(self, count: int) -> int:
        if count > self._left:
            raise ValueError("AudioSpecificConfig cut short")
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)


def _parse_asc(data: bytes) -> tuple[int, int] | None:
    bits = _Bits(data[:16])
    try:
        object_type = bits.take(5)
        if object_type == _AOT_ESCAPE:
            object_type = 32 + bits.take(6)
        rate = _asc_rate(bits)
        configuration = bits.take(4)
        if object_type in (_AOT_SBR, _AOT_PS):  # explicit HE-AAC: the output rate follows
            rate = _asc_rate(bits) or rate
    except ValueError:
        return None
    channels = 2 if object_type == _AOT_PS else _AAC_CHANNELS.get(configuration, 0)
    return rate, channels


def _asc_rate(bits: _Bits) -> int:
    index = bits.take(4)
    if index == _AAC_EXPLICIT_RATE:
        return bits.take(24)
    return _AAC_RATES[index] if index < len(_AAC_RATES) else 0
