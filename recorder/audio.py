"""Audio format detection from magic bytes, and best-effort metadata probing.

The service never trusts the client's filename or ``Content-Type``: :func:`detect_format` looks
only at the first :data:`HEAD_BYTES` bytes of the upload, and an upload it returns ``None`` for
is rejected (415). Everything it recognises is stored.

:func:`probe` then reads duration, sample rate and channel count. It is best effort and never
raises: a truncated or damaged file yields the fields that can still be read and ``None`` for
the rest. A file that starts like a WAV but has no ``fmt`` chunk at all is still accepted and
stored, with every field ``None``: the bytes are the user's recording, telling audio from junk
would mean decoding it, and losing a recording over unreadable metadata is the worse failure.

What each format reports:

==========================  ========  ===========  ========
format                      duration  sample rate  channels
==========================  ========  ===========  ========
WAV (PCM, float, extens.)   yes       yes          yes
FLAC, Ogg FLAC              yes       yes          yes
Ogg Vorbis, Ogg Speex       yes       yes          yes
Ogg Opus                    yes       48000        yes
MP3, MP2                    yes       yes          yes
M4A (first audio track)     yes       yes          yes
AAC (ADTS)                  estimate  yes          yes
WebM                        None      None         None
==========================  ========  ===========  ========

Opus always decodes at 48 kHz whatever rate the recording was made at (RFC 7845, section 5.1),
so 48000 is the stream's real rate. WebM would need a walk over the Matroska clusters, and the
files browsers record carry no duration in their header, so it is not cheap and not done.
"""

from __future__ import annotations

import logging
import math
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from mutagen import FileType
from mutagen.aac import AAC
from mutagen.flac import FLAC as MutagenFLAC
from mutagen.mp3 import MP3 as MutagenMP3
from mutagen.mp4 import MP4
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis

logger = logging.getLogger(__name__)

HEAD_BYTES: Final = 8192
"""How many leading bytes :func:`detect_format` wants. Fewer are fine for a shorter file.

8 KiB holds a WebM EBML header, every BOS page of a multiplexed Ogg stream, and the start of the
second frame of any MPEG audio or ADTS stream, which detection checks to tell audio from a
lucky byte pattern.
"""


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A recognised container/codec: a short stable ``name`` to store, and what to serve it as."""

    name: str
    mime: str
    extension: str


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What :func:`probe` could read; ``None`` means unknown, never zero."""

    duration_seconds: float | None
    sample_rate: int | None
    channels: int | None


WAV: Final = AudioFormat("wav", "audio/wav", "wav")
FLAC: Final = AudioFormat("flac", "audio/flac", "flac")
OGG_OPUS: Final = AudioFormat("opus", "audio/ogg", "opus")
OGG_VORBIS: Final = AudioFormat("vorbis", "audio/ogg", "ogg")
OGG_FLAC: Final = AudioFormat("oggflac", "audio/ogg", "oga")
OGG_SPEEX: Final = AudioFormat("speex", "audio/ogg", "spx")
MP3: Final = AudioFormat("mp3", "audio/mpeg", "mp3")
MP2: Final = AudioFormat("mp2", "audio/mpeg", "mp2")
M4A: Final = AudioFormat("m4a", "audio/mp4", "m4a")
AAC_ADTS: Final = AudioFormat("aac", "audio/aac", "aac")
WEBM: Final = AudioFormat("webm", "audio/webm", "webm")

FORMATS: Final[Mapping[str, AudioFormat]] = MappingProxyType(
    {
        f.name: f
        for f in (
            WAV,
            FLAC,
            OGG_OPUS,
            OGG_VORBIS,
            OGG_FLAC,
            OGG_SPEEX,
            MP3,
            MP2,
            M4A,
            AAC_ADTS,
            WEBM,
        )
    }
)
"""Every format :func:`detect_format` can return, by ``name`` (to map a stored name back)."""

_UNKNOWN: Final = AudioInfo(None, None, None)


def detect_format(head: bytes) -> AudioFormat | None:
    """Identify the audio format of a file from its first :data:`HEAD_BYTES` bytes.

    Returns ``None`` for anything that is not one of :data:`FORMATS`, including empty input, a
    header cut short, images, documents, video-only containers and random bytes.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"fLaC":
        return FLAC
    if head[:4] == b"OggS":
        return _detect_ogg(head)
    if head[4:8] == b"ftyp":
        return _detect_iso_bmff(head)
    if head[:4] == _EBML_MAGIC:
        return _detect_ebml(head)
    if head[:3] == b"ID3":
        return _detect_after_id3(head)
    return _detect_mpeg_stream(head)


# --- Ogg -------------------------------------------------------------------------------------

# First packet of each logical stream (RFC 3533 "beginning of stream" page), by codec.
_OGG_AUDIO: Final = (
    (b"OpusHead", OGG_OPUS),
    (b"\x01vorbis", OGG_VORBIS),
    (b"\x7fFLAC", OGG_FLAC),
    (b"Speex   ", OGG_SPEEX),
)
_OGG_VIDEO: Final = (b"\x80theora", b"OVP80", b"\x80daala")
_OGG_BOS: Final = 0x02


def _detect_ogg(head: bytes) -> AudioFormat | None:
    # A multiplexed file opens with one BOS page per stream (a Skeleton stream may come first),
    # so walk them all: any video stream makes it a video, else the first audio stream wins.
    found = None
    offset = 0
    while head[offset : offset + 4] == b"OggS" and offset + 27 <= len(head):
        if head[offset + 4] != 0 or not head[offset + 5] & _OGG_BOS:
            break
        segments = head[offset + 26]
        table = head[offset + 27 : offset + 27 + segments]
        packet = head[offset + 27 + segments : offset + 27 + segments + 8]
        if packet.startswith(_OGG_VIDEO):
            return None
        if found is None:
            found = next((fmt for magic, fmt in _OGG_AUDIO if packet.startswith(magic)), None)
        offset += 27 + segments + sum(table)
    return found


# --- ISO base media (MP4/M4A) ----------------------------------------------------------------

# Brands that promise audio. The generic ISO/MP4 brands may hold video too: such a file is
# accepted and probe() reads its first audio track, if it has one.
_M4A_BRANDS: Final = frozenset({b"M4A ", b"M4B ", b"F4A ", b"F4B "})
_GENERIC_MP4_BRANDS: Final = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"dash"}
)


def _detect_iso_bmff(head: bytes) -> AudioFormat | None:
    if len(head) < 16:
        return None
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    if major in _M4A_BRANDS or major in _GENERIC_MP4_BRANDS:
        return M4A
    # Another major brand (qt, heic, avif, M4V, 3gp...) is only audio if it says so explicitly.
    compatible = head[16 : min(box_size, len(head))]
    brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
    return M4A if brands & _M4A_BRANDS else None


# --- EBML (WebM) -----------------------------------------------------------------------------

_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID: Final = 0x4282


def _read_vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int] | None:
    """Decode an EBML variable-length integer; returns (value, bytes used) or None if cut."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def _detect_ebml(head: bytes) -> AudioFormat | None:
    size = _read_vint(head, 4, keep_marker=False)
    if size is None:
        return None
    offset = 4 + size[1]
    end = min(offset + size[0], len(head))
    while offset < end:
        element = _read_vint(head, offset, keep_marker=True)
        if element is None:
            return None
        length = _read_vint(head, offset + element[1], keep_marker=False)
        if length is None:
            return None
        body = offset + element[1] + length[1]
        if element[0] == _EBML_DOCTYPE_ID:
            doctype = head[body : body + length[0]].rstrip(b"\x00")
            # Matroska (mka/mkv) is not served: browsers only play its WebM profile.
            return WEBM if doctype == b"webm" else None
        offset = body + length[0]
    return None


# --- ID3 and MPEG audio / ADTS frames -------------------------------------------------------


def _detect_after_id3(head: bytes) -> AudioFormat | None:
    if len(head) < 10 or head[3] not in (2, 3, 4) or head[4] == 0xFF:
        return None
    if any(b & 0x80 for b in head[6:10]):
        return None
    size = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    if head[5] & 0x10:
        size += 10  # ID3v2.4 footer
    # An ID3 tag mostly fronts MP3, sometimes ADTS AAC or FLAC. When the tag is small enough to
    # see past, let the stream behind it decide; a large tag (cover art) is assumed to be MP3.
    behind = head[size:]
    if behind[:4] == b"fLaC":
        return FLAC
    return _detect_mpeg_stream(behind) or MP3


_MPEG_SAMPLE_RATES: Final = {
    3: (44100, 48000, 32000),  # MPEG-1
    2: (22050, 24000, 16000),  # MPEG-2
    0: (11025, 12000, 8000),  # MPEG-2.5
}
# kbit/s by bitrate index; MPEG-2 and 2.5 share one table for layers II and III.
_MPEG1_L2_KBPS: Final = (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384)
_MPEG1_L3_KBPS: Final = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_KBPS: Final = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# AAC caps a frame at 6144 bits per channel; channel configuration 0 (layout given in-band)
# is bounded by the 8 channels of configuration 7.
_AAC_MAX_FRAME_BYTES_PER_CHANNEL: Final = 768
_ADTS_CHANNELS: Final = (8, 1, 2, 3, 4, 5, 6, 8)
_LAYER_III: Final = 1
_LAYER_II: Final = 2


@dataclass(frozen=True, slots=True)
class _Frame:
    fmt: AudioFormat
    length: int
    key: int  # header bits that every frame of one stream shares


_FRAME_HEADER_BYTES: Final = 7  # ADTS; an MPEG audio header needs the first 4 of them


def _mpeg_frame(data: bytes, offset: int) -> _Frame | None:
    """Parse the MPEG audio (layer II/III) or ADTS frame header at ``offset``, if valid."""
    header = data[offset : offset + _FRAME_HEADER_BYTES]
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
    fmt = MP3 if layer == _LAYER_III else MP2
    return _Frame(fmt, length, (header[1] << 8) | (header[2] & 0x0C))


def _adts_frame(header: bytes) -> _Frame | None:
    if len(header) < 7 or header[1] & 0xF6 != 0xF0:
        return None
    if (header[2] >> 2) & 0xF > 12:
        return None  # sampling frequency index 13-15: reserved or explicit, not in ADTS
    length = ((header[3] & 0x3) << 11) | (header[4] << 3) | (header[5] >> 5)
    header_length = 7 if header[1] & 0x1 else 9
    channel_config = ((header[2] & 0x1) << 2) | (header[3] >> 6)
    channels = _ADTS_CHANNELS[channel_config]
    if not header_length <= length <= header_length + _AAC_MAX_FRAME_BYTES_PER_CHANNEL * channels:
        return None
    return _Frame(AAC_ADTS, length, (header[1] << 8) | (header[2] & 0xFC))


def _detect_mpeg_stream(head: bytes) -> AudioFormat | None:
    first = _mpeg_frame(head, 0)
    if first is None:
        return None
    # A single valid-looking header is a 1-in-10^4 accident in arbitrary bytes; the next frame
    # must follow where the first one says it ends, whenever that lies within the head.
    if first.length + _FRAME_HEADER_BYTES <= len(head):
        second = _mpeg_frame(head, first.length)
        if second is None or second.key != first.key:
            return None
    return first.fmt


# --- probing ---------------------------------------------------------------------------------

_MUTAGEN_TYPES: Final[dict[str, type[FileType]]] = {
    FLAC.name: MutagenFLAC,
    OGG_FLAC.name: OggFLAC,
    OGG_OPUS.name: OggOpus,
    OGG_VORBIS.name: OggVorbis,
    OGG_SPEEX.name: OggSpeex,
    MP3.name: MutagenMP3,
    MP2.name: MutagenMP3,
    M4A.name: MP4,
    AAC_ADTS.name: AAC,
}
_OPUS_RATE: Final = 48000


def probe(path: Path, fmt: AudioFormat) -> AudioInfo:
    """Read duration, sample rate and channel count of the audio file at ``path``.

    ``fmt`` is what :func:`detect_format` said about the file. Never raises: whatever cannot be
    read (unsupported format, damaged or truncated file, unreadable path) comes back as
    ``None`` and the reason is logged at DEBUG.
    """
    try:
        if fmt == WAV:
            return _probe_wav(path)
        kind = _MUTAGEN_TYPES.get(fmt.name)
        if kind is None:
            return _UNKNOWN
        info = kind(path).info
    # Parsers of untrusted bytes fail in many ways (mutagen's own errors, struct.error,
    # EOFError, OSError...). Metadata is optional, so none of them may fail an upload.
    except Exception:
        logger.debug(
            "audio metadata unreadable",
            extra={"path": str(path), "audio_format": fmt.name},
            exc_info=True,
        )
        return _UNKNOWN
    sample_rate = _OPUS_RATE if fmt == OGG_OPUS else getattr(info, "sample_rate", None)
    return _info(getattr(info, "length", None), sample_rate, getattr(info, "channels", None))


def _info(duration: float | None, sample_rate: int | None, channels: int | None) -> AudioInfo:
    """Normalise the zeros parsers use for "unknown" into None."""
    if not sample_rate or not channels:
        # Without a stream description a length of 0 is "no audio found", not a real 0 s.
        return AudioInfo(None, sample_rate or None, channels or None)
    if duration is None or not math.isfinite(duration) or duration < 0:
        duration = None
    return AudioInfo(duration, int(sample_rate), int(channels))


_WAV_MIN_HEADER: Final = 44  # RIFF header + 16-byte fmt chunk + data chunk header


def _probe_wav(path: Path) -> AudioInfo:
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            sample_rate = reader.getframerate()
            frames = reader.getnframes()
            frame_bytes = reader.getsampwidth() * channels
    except (wave.Error, EOFError):
        # The 3.11 wave module reads integer PCM (format tag 1) only. WAVE_FORMAT_EXTENSIBLE
        # (24-bit and multichannel recorders), IEEE float and ADPCM files are valid WAVs it
        # refuses, as are files whose RIFF size was never filled in; the chunk walk reads them.
        return _probe_wav_chunks(path)
    available = path.stat().st_size - _WAV_MIN_HEADER
    if frames == 0 or frames * frame_bytes > available:
        # A recorder killed mid-write leaves the data size at 0 or 0xFFFFFFFF, and a cut upload
        # claims more frames than it holds; count the bytes actually on disk instead.
        return _probe_wav_chunks(path)
    return _info(frames / sample_rate if sample_rate else None, sample_rate, channels)


_WAV_MAX_CHUNKS: Final = 256
_WAV_FMT: Final = struct.Struct("<HHIIH")  # format tag, channels, rate, byte rate, block align
_UNKNOWN_DATA_SIZES: Final = (0, 0xFFFFFFFF)


def _probe_wav_chunks(path: Path) -> AudioInfo:
    """Read the ``fmt`` and ``data`` chunk headers directly; tolerant of unfinished headers."""
    with path.open("rb") as f:
        file_size = path.stat().st_size
        if f.read(12)[8:12] != b"WAVE":
            return _UNKNOWN
        fmt: tuple[int, ...] | None = None
        data_bytes: int | None = None
        offset = 12
        for _ in range(_WAV_MAX_CHUNKS):
            f.seek(offset)
            header = f.read(8)
            if len(header) < 8:
                break
            chunk_id, size = header[:4], int.from_bytes(header[4:], "little")
            available = file_size - offset - 8
            if chunk_id == b"fmt ":
                body = f.read(min(size, _WAV_FMT.size))
                if len(body) == _WAV_FMT.size:
                    fmt = _WAV_FMT.unpack(body)
            elif chunk_id == b"data":
                unsure = size in _UNKNOWN_DATA_SIZES or size > available
                data_bytes = available if unsure else size
                if fmt is not None or unsure:
                    break
            offset += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        return _UNKNOWN
    _tag, channels, sample_rate, byte_rate, _align = fmt
    duration = data_bytes / byte_rate if data_bytes is not None and byte_rate else None
    return _info(duration, sample_rate, channels)
