"""A minimal FLAC writer for tests: mono 16-bit, fixed block size, VERBATIM subframes.

Real encoders (``flac``) are not installed here, and a sample of several frames is needed to cut
a file between frames. VERBATIM subframes store the samples as they are, which every decoder
reads (RFC 9639, section 9.2.5); frame headers carry their CRC-8 and frames their CRC-16.
"""

from __future__ import annotations

import math
import struct

from recorder.containers.flac import crc8, crc16


def _coded_number(value: int) -> bytes:
    """A frame number coded like UTF-8, as FLAC frame headers carry it (up to 2 bytes here)."""
    if value < 0x80:
        return bytes([value])
    return bytes([0xC0 | (value >> 6), 0x80 | (value & 0x3F)])


def make_flac(seconds: float, rate: int = 8000, block_size: int = 1024) -> bytes:
    """A complete FLAC file of a 440 Hz tone; each frame holds ``block_size`` samples."""
    total = round(seconds * rate)
    samples = [round(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(total)]
    streaminfo = (
        struct.pack(">HH", block_size, block_size)
        + bytes(6)  # minimum and maximum frame sizes: unknown
        + ((rate << 44) | (0 << 41) | (15 << 36) | total).to_bytes(8, "big")
        + bytes(16)  # MD5 of the audio: not computed
    )
    out = bytearray(b"fLaC" + bytes([0x80, 0, 0, len(streaminfo)]) + streaminfo)
    for number, first in enumerate(range(0, total, block_size)):
        block = samples[first : first + block_size]
        # Block size code 7 (16-bit size follows), rate from STREAMINFO, mono, 16-bit samples.
        header = b"\xff\xf8\x70\x08" + _coded_number(number) + struct.pack(">H", len(block) - 1)
        header += bytes([crc8(header)])
        frame = header + b"\x02" + struct.pack(f">{len(block)}h", *block)  # VERBATIM subframe
        out += frame + struct.pack(">H", crc16(frame))
    return bytes(out)
