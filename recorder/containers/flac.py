"""Native FLAC: ``fLaC``, metadata blocks (STREAMINFO first), then frames.

A file is audio when STREAMINFO is whole and a frame header follows the last metadata block.

STREAMINFO's total sample count is what the encoder meant to write (0 when it did not know, as a
live encoder writes it), so the duration is measured from the data: the last frame header in
the file (found from the end, recognised by its sync code, its CRC-8 and its agreement with
STREAMINFO) says which sample it starts at. A file that ends inside that frame reports the time
up to its start; one that ends with the CRC-16 of the stream's last frame reports STREAMINFO's
total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Final

from recorder.containers import Stream, missing

NAME: Final = "FLAC"
MAGIC: Final = b"fLaC"
MAX_BLOCKS: Final = 1024
# Where the last frame header lies: frames are at most a few hundred KiB (65535 samples of 8
# channels of 32 bits, uncompressed, is the absolute worst case).
TAIL_BYTES: Final = 1 << 20
# Sync codes tried from the end. A real last frame is found among the first few (a sync code
# inside frame data is rare and fails the CRC-8); only a crafted tail makes many attempts.
MAX_SYNC_CANDIDATES: Final = 4096
_SYNC: Final = re.compile(b"\xff[\xf8\xf9]")
_STREAMINFO: Final = 0
_STREAMINFO_BYTES: Final = 34
_INVALID_BLOCK: Final = 127
_NO_STREAMINFO: Final = "has no STREAMINFO block, so its sample rate and channels are unknown"
# Block size codes 1-5 and 8-15 (codes 6 and 7 put the size at the end of the header).
_BLOCK_SIZES: Final = {
    1: 192,
    **{code: 576 << (code - 2) for code in range(2, 6)},
    **{code: 256 << (code - 8) for code in range(8, 16)},
}
# Sample rate codes 1-11 (0: as in STREAMINFO; 12-14: given at the end of the header).
_RATES: Final = (0, 88200, 176400, 192000, 8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000)
_SAMPLE_SIZES: Final = (0, 8, 12, 0, 16, 20, 24, 32)  # code 3 is reserved


def _crc_table(polynomial: int, width: int) -> tuple[int, ...]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ polynomial if crc & top else crc << 1) & mask
        table.append(crc)
    return tuple(table)


_CRC8: Final = _crc_table(0x07, 8)
_CRC16: Final = _crc_table(0x8005, 16)


def crc8(data: bytes) -> int:
    """The CRC-8 of a FLAC frame header (polynomial x^8 + x^2 + x + 1, initial value 0)."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def crc16(data: bytes) -> int:
    """The CRC-16 of a FLAC frame (polynomial x^16 + x^15 + x^2 + 1, initial value 0)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


@dataclass(frozen=True, slots=True)
class _StreamInfo:
    max_block_size: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    total_samples: int


def read(f: BinaryIO, size: int, start: int = 0) -> Stream:
    """The stream of the FLAC file ``f`` of ``size`` bytes whose ``fLaC`` is at ``start``."""
    f.seek(start)
    if f.read(4) != MAGIC:
        raise missing(NAME, "has no fLaC marker")
    info: _StreamInfo | None = None
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
    frames = f.tell()
    first = f.read(16)
    if info is None or _frame_start(first, 0, info) is None:
        raise missing(NAME, "has no audio frame after its metadata")
    return Stream(info.sample_rate, info.channels, _duration(f, size, frames, info))


def _streaminfo(body: bytes) -> _StreamInfo:
    return _StreamInfo(
        max_block_size=int.from_bytes(body[2:4], "big"),
        sample_rate=(body[10] << 12) | (body[11] << 4) | (body[12] >> 4),
        channels=((body[12] >> 1) & 0x7) + 1,
        bits_per_sample=(((body[12] & 0x1) << 4) | (body[13] >> 4)) + 1,
        total_samples=((body[13] & 0x0F) << 32) | int.from_bytes(body[14:18], "big"),
    )


def _duration(f: BinaryIO, size: int, frames: int, info: _StreamInfo) -> float | None:
    if not info.sample_rate:
        return None
    start = max(size - TAIL_BYTES, frames)
    f.seek(start)
    tail = f.read(size - start)
    candidates = [match.start() for match in _SYNC.finditer(tail)]
    for position in reversed(candidates[-MAX_SYNC_CANDIDATES:]):
        found = _frame_start(tail, position, info)
        if found is None:
            continue
        first_sample, block_size = found
        last_frame = tail[position:]
        # The stream's last frame, whole when the file ends with its CRC-16.
        if (
            info.total_samples
            and first_sample + block_size >= info.total_samples
            and crc16(last_frame[:-2]) == int.from_bytes(last_frame[-2:], "big")
        ):
            return info.total_samples / info.sample_rate
        return first_sample / info.sample_rate
    return info.total_samples / info.sample_rate if info.total_samples else None


def _frame_start(data: bytes, offset: int, info: _StreamInfo) -> tuple[int, int] | None:
    """(first sample, block size) of the frame whose header is at ``offset``, if it is one.

    A header counts when its sync code, reserved bits and CRC-8 are right and it agrees with
    STREAMINFO on channels, and on rate and sample size when it states them.
    """
    header = data[offset : offset + 16]
    if len(header) < 6 or header[0] != 0xFF or header[1] & 0xFE != 0xF8 or header[3] & 0x1:
        return None
    size_code, rate_code = header[2] >> 4, header[2] & 0xF
    channel_code, sample_size_code = header[3] >> 4, (header[3] >> 1) & 0x7
    channels = channel_code + 1 if channel_code < 8 else 2  # 8-10: stereo decorrelation
    if size_code == 0 or rate_code == 15 or channel_code > 10 or sample_size_code == 3:
        return None
    if channels != info.channels:
        return None
    if rate_code < len(_RATES) and rate_code and _RATES[rate_code] != info.sample_rate:
        return None
    if sample_size_code and _SAMPLE_SIZES[sample_size_code] != info.bits_per_sample:
        return None
    coded = _utf8_number(header, 4)
    if coded is None:
        return None
    number, position = coded
    if size_code in (6, 7):
        extra = 1 if size_code == 6 else 2
        block_size = int.from_bytes(header[position : position + extra], "big") + 1
        position += extra
    else:
        block_size = _BLOCK_SIZES[size_code]
    position += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if position >= len(header) or crc8(header[:position]) != header[position]:
        return None
    variable = header[1] & 0x1  # blocking strategy: sample numbers instead of frame numbers
    return (number if variable else number * info.max_block_size), block_size


def _utf8_number(data: bytes, offset: int) -> tuple[int, int] | None:
    """The frame or sample number coded like UTF-8 (1-7 bytes, up to 36 bits), and its end."""
    if offset >= len(data):
        return None
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    length = 0
    while length < 8 and first & (0x80 >> length):
        length += 1
    if not 2 <= length <= 7:
        return None
    value = first & ((1 << (7 - length)) - 1)
    continuation = data[offset + 1 : offset + length]
    if len(continuation) < length - 1:
        return None
    for byte in continuation:
        if byte & 0xC0 != 0x80:
            return None
        value = (value << 6) | (byte & 0x3F)
    return value, offset + length
