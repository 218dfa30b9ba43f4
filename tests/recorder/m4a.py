"""Remux an ADTS AAC stream into an M4A file the way ffmpeg's mp4 muxer lays it out.

There is no ffmpeg on the machine that made ``data/tone_mono_8k.m4a``, so this writes it:
``python -m tests.recorder.m4a data/tone_mono_8k.aac data/tone_mono_8k.m4a``. Like
``ffmpeg -i x.aac -c copy x.m4a`` it keeps the AAC frames as they are, puts ``mdat`` first and
``moov`` last, and writes the ``mp4a`` sample entry's ``channelcount`` as 2 whatever the stream
holds (the template value of ISO/IEC 14496-12), with the real channel configuration in the
AudioSpecificConfig of the ``esds`` box.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_SAMPLES_PER_FRAME = 1024
_MOVIE_TIMESCALE = 1000
_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 descriptor with the 4-byte length form ffmpeg writes."""
    size = len(body)
    length = bytes(
        [0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F]
    )
    return bytes([tag]) + length + bytes([size & 0x7F]) + body


def adts_frames(adts: bytes) -> tuple[list[bytes], int, int, int]:
    """(raw AAC frames, object type, sampling frequency index, channel configuration)."""
    frames, offset = [], 0
    profile = rate_index = channels = 0
    while offset + 7 <= len(adts):
        header = adts[offset : offset + 7]
        length = ((header[3] & 0x3) << 11) | (header[4] << 3) | (header[5] >> 5)
        header_length = 7 if header[1] & 0x1 else 9
        profile = (header[2] >> 6) + 1
        rate_index = (header[2] >> 2) & 0xF
        channels = ((header[2] & 0x1) << 2) | (header[3] >> 6)
        frames.append(adts[offset + header_length : offset + length])
        offset += length
    return frames, profile, rate_index, channels


def build_m4a(adts: bytes) -> bytes:
    frames, object_type, rate_index, channel_config = adts_frames(adts)
    rate = _ADTS_RATES[rate_index]
    samples = len(frames) * _SAMPLES_PER_FRAME
    asc = ((object_type << 11) | (rate_index << 7) | (channel_config << 3)).to_bytes(2, "big")
    decoder_config = descriptor(
        0x04,
        bytes([0x40, 0x15]) + bytes(3) + struct.pack(">II", 0, 0) + descriptor(0x05, asc),
    )
    es = descriptor(0x03, struct.pack(">HB", 1, 0) + decoder_config + descriptor(0x06, b"\x02"))
    mp4a = box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHHI", 2, 16, 0, 0, rate << 16),
        full_box(b"esds", 0, 0, es),
    )
    ftyp = box(b"ftyp", b"M4A ", struct.pack(">I", 512), b"M4A isomiso2")
    mdat = box(b"mdat", *frames)
    chunk_offset = len(ftyp) + 8
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), mp4a),
        full_box(b"stts", 0, 0, struct.pack(">III", 1, len(frames), _SAMPLES_PER_FRAME)),
        full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(frames), 1)),
        full_box(
            b"stsz",
            0,
            0,
            struct.pack(">II", 0, len(frames)),
            *(struct.pack(">I", len(f)) for f in frames),
        ),
        full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
    )
    minf = box(
        b"minf",
        full_box(b"smhd", 0, 0, bytes(4)),
        box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = box(
        b"mdia",
        full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, rate, samples, 0x55C4, 0)),
        full_box(b"hdlr", 0, 0, bytes(4), b"soun", bytes(12), b"SoundHandler\x00"),
        minf,
    )
    movie_duration = samples * _MOVIE_TIMESCALE // rate
    tkhd = full_box(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, 1, 0, movie_duration),
        bytes(8),
        struct.pack(">HHHH", 0, 1, 0x0100, 0),
        _IDENTITY,
        bytes(8),
    )
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, _MOVIE_TIMESCALE, movie_duration, 0x10000, 0x0100),
        bytes(10),
        _IDENTITY,
        bytes(24),
        struct.pack(">I", 2),
    )
    moov = box(b"moov", mvhd, box(b"trak", tkhd, mdia))
    return ftyp + mdat + moov


if __name__ == "__main__":
    Path(sys.argv[2]).write_bytes(build_m4a(Path(sys.argv[1]).read_bytes()))
