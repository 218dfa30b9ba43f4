"""MPEG audio (layer II and III) and ADTS AAC: streams of self-describing frames.

There is no container to parse, only frame headers, and a valid-looking header is a 1-in-10^4
accident in arbitrary bytes. A file is audio when :data:`MIN_FRAMES` consecutive frames follow
each other where each header says the previous frame ends, all sharing the header bits that one
stream keeps (version, layer, rate, channel mode / ADTS profile). The duration is left to the
caller (mutagen reads Xing/VBRI/LAME headers for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

MIN_FRAMES: Final = 3
MP3: Final = "mp3"
MP2: Final = "mp2"
AAC: Final = "aac"
NAMES: Final = {MP3: "MP3", MP2: "MPEG audio (MP2)", AAC: "ADTS AAC"}

HEADER_BYTES: Final = 7  # ADTS; an MPEG audio header needs the first 4 of them
MAX_FRAME_BYTES: Final = 8191  # ADTS's 13-bit frame length; MPEG audio frames are shorter

_MPEG_SAMPLE_RATES: Final = {
    3: (44100, 48000, 32000),  # MPEG-1
    2: (22050, 24000, 16000),  # MPEG-2
    0: (11025, 12000, 8000),  # MPEG-2.5
}
# kbit/s by bitrate index; MPEG-2 and 2.5 share one table for layers II and III.
_MPEG1_L2_KBPS: Final = (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384)
_MPEG1_L3_KBPS: Final = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_KBPS: Final = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_MONO: Final = 3
_LAYER_III: Final = 1
_LAYER_II: Final = 2

_ADTS_SAMPLE_RATES: Final = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
# Channel configuration 0 means "layout given in-band" (a program config element): 0 here.
_ADTS_CHANNELS: Final = (0, 1, 2, 3, 4, 5, 6, 8)
# AAC caps a frame at 6144 bits per channel; configuration 0 is bounded by 8 channels.
_AAC_MAX_FRAME_BYTES_PER_CHANNEL: Final = 768


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame header: what it says about the stream, and where the next frame starts."""

    kind: str
    length: int
    key: int  # header bits that every frame of one stream shares
    sample_rate: int
    channels: int  # 0 for ADTS channel configuration 0


def frame_at(data: bytes, offset: int) -> Frame | None:
    """Parse the MPEG audio (layer II/III) or ADTS frame header at ``offset``, if valid."""
    header = data[offset : offset + HEADER_BYTES]
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 0x3
    layer = (header[1] >> 1) & 0x3
    if layer == 0:
        return _adts_frame(header)
    if version == 1 or layer not in (_LAYER_II, _LAYER_III):
        return None
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0x3
    # Free-format (index 0) is legal but rare and has no computable frame length.
    if bitrate_index in (0, 15) or rate_index == 3 or header[3] & 0x3 == 2:
        return None
    sample_rate = _MPEG_SAMPLE_RATES[version][rate_index]
    if version == 3:
        table = _MPEG1_L3_KBPS if layer == _LAYER_III else _MPEG1_L2_KBPS
    else:
        table = _MPEG2_KBPS
    # Layer III frames of MPEG-2/2.5 hold half the samples of MPEG-1 ones (576 vs 1152).
    factor = 72 if layer == _LAYER_III and version != 3 else 144
    padding = (header[2] >> 1) & 0x1
    length = factor * table[bitrate_index] * 1000 // sample_rate + padding
    channels = 1 if header[3] >> 6 == _MPEG_MONO else 2
    kind = MP3 if layer == _LAYER_III else MP2
    return Frame(kind, length, (header[1] << 8) | (header[2] & 0x0C), sample_rate, channels)


def _adts_frame(header: bytes) -> Frame | None:
    if len(header) < HEADER_BYTES or header[1] & 0xF6 != 0xF0:
        return None
    rate_index = (header[2] >> 2) & 0xF
    if rate_index >= len(_ADTS_SAMPLE_RATES):
        return None  # sampling frequency index 13-15: reserved or explicit, not in ADTS
    length = ((header[3] & 0x3) << 11) | (header[4] << 3) | (header[5] >> 5)
    header_length = 7 if header[1] & 0x1 else 9
    channels = _ADTS_CHANNELS[((header[2] & 0x1) << 2) | (header[3] >> 6)]
    longest = header_length + _AAC_MAX_FRAME_BYTES_PER_CHANNEL * (channels or 8)
    if not header_length <= length <= longest:
        return None
    key = (header[1] << 8) | (header[2] & 0xFC)
    return Frame(AAC, length, key, _ADTS_SAMPLE_RATES[rate_index], channels)


def frames(data: bytes, limit: int) -> list[Frame]:
    """Up to ``limit`` consecutive frames of one stream from the start of ``data``."""
    found: list[Frame] = []
    offset = 0
    while len(found) < limit:
        frame = frame_at(data, offset)
        if frame is None or (found and frame.key != found[0].key):
            break
        found.append(frame)
        offset += frame.length
    return found


def read(f: BinaryIO, start: int, kind: str) -> Stream:
    """The stream of frames of ``kind`` starting at ``start`` (after any ID3 tag) in ``f``.

    Zero bytes between a tag and the first frame (padding some taggers add) are skipped.
    ``Stream.channels`` is 0 for ADTS channel configuration 0. The duration is left unknown.
    """
    f.seek(start)
    data = f.read(MAX_FRAME_BYTES * MIN_FRAMES + HEADER_BYTES)
    stripped = data.lstrip(b"\x00")
    found = frames(stripped, MIN_FRAMES)
    name = NAMES[kind]
    if not found or found[0].kind != kind:
        raise missing(name, "has no audio frame where the stream should start")
    if len(found) < MIN_FRAMES:
        raise missing(name, f"has fewer than {MIN_FRAMES} consecutive valid audio frames")
    return Stream(found[0].sample_rate, found[0].channels, None)
