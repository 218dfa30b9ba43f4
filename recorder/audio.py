"""Audio format detection from magic bytes, then a check that the file really holds audio.

The service never trusts the client's filename or ``Content-Type``. :func:`detect_format` looks
only at the first :data:`HEAD_BYTES` bytes of the upload and names the format they announce (or
``None``: 415). :func:`probe` then reads the container far enough to find an audio stream with
a known sample rate and channel count (:mod:`recorder.containers`), and raises
:class:`~recorder.errors.UnsupportedMediaError` (415) naming what is missing otherwise: a
``fLaC`` without STREAMINFO, an MP3 frame header followed by junk, an ``ftyp`` without a
``moov`` box, a ``RIFF....WAVE`` without a whole ``fmt `` chunk are not recordings. A real file
cut short (a recorder that crashed mid-write, an interrupted copy) is still accepted, with the
duration of what is there where the format allows measuring it.

What each format reports:

==========================  ==================  ===========  ==============================
format                      duration            sample rate  channels
==========================  ==================  ===========  ==============================
WAV (PCM, float, extens.)   of the bytes there  fmt chunk    fmt chunk
FLAC                        last frame header   STREAMINFO   STREAMINFO
Ogg FLAC/Vorbis/Speex/Opus  last granule        ID header    ID header
MP3, MP2                    mutagen, to a cut   frame        frame
M4A (first audio track)     mdhd                ASC / entry  AudioSpecificConfig / entry
AAC (ADTS)                  estimate (bitrate)  frame        frame
WebM (first audio track)    last block          Audio        Audio
==========================  ==================  ===========  ==============================

Opus always decodes at 48 kHz whatever rate the recording was made at (RFC 7845, section 5.1),
so 48000 is the stream's real rate. Browsers record WebM live and write no Duration: it is the
time of the last block, found from the end of the file (:mod:`recorder.containers.webm`).
WAV, FLAC, Ogg, WebM, MPEG audio and ADTS report the time up to a cut (for MPEG audio the
lesser of mutagen's length, which trusts a Xing/VBRI header, and the bytes there at its bitrate);
M4A's ``mdhd`` states the length the encoder wrote with the ``moov`` box, and a file cut before
that box is refused (it has no track table).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Final

from mutagen.aac import AAC
from mutagen.mp3 import MP3 as MutagenMP3

from recorder.containers import Stream, flac, mp4, mpeg, ogg, wav, webm
from recorder.errors import UnsupportedMediaError

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
    """What :func:`probe` read: the rate and channels of the first audio stream, and its
    duration, ``None`` when the format does not record it (never 0 for "unknown")."""

    duration_seconds: float | None
    sample_rate: int
    channels: int


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
    if head[:4] == webm.MAGIC:
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
# accepted and probe() requires an audio track in it.
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


def _detect_ebml(head: bytes) -> AudioFormat | None:
    size = webm.read_vint(head, 4, keep_marker=False)
    if size is None:
        return None
    offset = 4 + size[1]
    end = len(head) if size[0] < 0 else min(offset + size[0], len(head))
    while offset < end:
        element = webm.read_vint(head, offset, keep_marker=True)
        if element is None:
            return None
        length = webm.read_vint(head, offset + element[1], keep_marker=False)
        if length is None or length[0] < 0:
            return None
        body = offset + element[1] + length[1]
        if element[0] == webm.DOCTYPE:
            doctype = head[body : body + length[0]].rstrip(b"\x00")
            # Matroska (mka/mkv) is not served: browsers only play its WebM profile.
            return WEBM if doctype == b"webm" else None
        offset = body + length[0]
    return None


# --- ID3 and MPEG audio / ADTS frames -------------------------------------------------------


def _id3_size(head: bytes) -> int | None:
    """The length of the ID3v2 tag at the start of ``head`` (footer included), if valid."""
    if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4) or head[4] == 0xFF:
        return None
    if any(b & 0x80 for b in head[6:10]):
        return None
    size = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    return size + 10 if head[5] & 0x10 else size  # ID3v2.4 footer


def _detect_after_id3(head: bytes) -> AudioFormat | None:
    size = _id3_size(head)
    if size is None:
        return None
    # An ID3 tag mostly fronts MP3, sometimes ADTS AAC or FLAC. When the tag is small enough to
    # see past, let the stream behind it decide; a large tag (cover art) is assumed to be MP3,
    # which probe() then checks.
    behind = head[size:]
    if behind[:4] == flac.MAGIC:
        return FLAC
    return _detect_mpeg_stream(behind) or MP3


_FRAME_FORMATS: Final = {mpeg.MP3: MP3, mpeg.MP2: MP2, mpeg.AAC: AAC_ADTS}


def _detect_mpeg_stream(head: bytes) -> AudioFormat | None:
    first = mpeg.frame_at(head, 0)
    if first is None:
        return None
    # A single valid-looking header is a 1-in-10^4 accident in arbitrary bytes; the next frame
    # must follow where the first one says it ends, whenever that lies within the head.
    if first.length + mpeg.HEADER_BYTES <= len(head):
        second = mpeg.frame_at(head, first.length)
        if second is None or second.key != first.key:
            return None
    return _FRAME_FORMATS[first.kind]


# --- probing ---------------------------------------------------------------------------------

_OGG_KINDS: Final = {
    OGG_FLAC.name: "flac",
    OGG_OPUS.name: "opus",
    OGG_VORBIS.name: "vorbis",
    OGG_SPEEX.name: "speex",
}
# Outside these a stream description is junk read as numbers (the widest real recordings are
# 768 kHz and 255-channel Opus/WAV).
MIN_SAMPLE_RATE: Final = 1000
MAX_SAMPLE_RATE: Final = 768_000
MAX_CHANNELS: Final = 255
_NAMES: Final = {
    WAV.name: "WAV",
    FLAC.name: "FLAC",
    OGG_OPUS.name: "Ogg Opus",
    OGG_VORBIS.name: "Ogg Vorbis",
    OGG_FLAC.name: "Ogg FLAC",
    OGG_SPEEX.name: "Ogg Speex",
    MP3.name: "MP3",
    MP2.name: "MPEG audio (MP2)",
    M4A.name: "MP4/M4A",
    AAC_ADTS.name: "ADTS AAC",
    WEBM.name: "WebM",
}


def probe(source: Path | BinaryIO, fmt: AudioFormat) -> AudioInfo:
    """Read the first audio stream of ``source`` (a path, or a seekable binary file).

    ``fmt`` is what :func:`detect_format` said about the file. Raises
    :class:`~recorder.errors.UnsupportedMediaError` naming what is missing when the container
    does not parse as far as an audio stream with a plausible sample rate and channel count;
    :class:`OSError` when the source cannot be read. A file object is left at its start.
    """
    with _opened(source) as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        try:
            stream = _READERS[fmt.name](f, size)
        except (UnsupportedMediaError, OSError):
            raise
        # The readers raise UnsupportedMediaError for what they check; anything else they meet
        # in untrusted bytes (struct.error, IndexError, ValueError...) still means the container
        # does not parse, and is kept at DEBUG for whoever improves the reader.
        except Exception:
            logger.debug(
                "audio container unreadable", extra={"audio_format": fmt.name}, exc_info=True
            )
            raise UnsupportedMediaError(
                f"the file starts like {_NAMES[fmt.name]} but its stream header cannot be "
                "read; upload the complete recording"
            ) from None
        finally:
            f.seek(0)
    return _checked(stream, fmt)


@contextmanager
def _opened(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as f:
            yield f
    else:
        yield source


def _checked(stream: Stream, fmt: AudioFormat) -> AudioInfo:
    name = _NAMES[fmt.name]
    if not MIN_SAMPLE_RATE <= stream.sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedMediaError(
            f"the {name} stream has no valid sample rate ({stream.sample_rate} Hz); "
            "upload the complete recording"
        )
    if not 1 <= stream.channels <= MAX_CHANNELS:
        raise UnsupportedMediaError(
            f"the {name} stream has no valid channel count ({stream.channels}); "
            "upload the complete recording"
        )
    duration = stream.duration_seconds
    if duration is not None and (not math.isfinite(duration) or duration < 0):
        duration = None
    return AudioInfo(duration, int(stream.sample_rate), int(stream.channels))


def _read_flac(f: BinaryIO, size: int) -> Stream:
    f.seek(0)
    return flac.read(f, size, _id3_size(f.read(10)) or 0)


def _read_frames(f: BinaryIO, size: int, fmt: AudioFormat) -> Stream:
    """MPEG audio or ADTS: frames checked here, duration (and ADTS in-band layout) by mutagen."""
    f.seek(0)
    start = _id3_size(f.read(10)) or 0
    stream = mpeg.read(f, start, next(k for k, v in _FRAME_FORMATS.items() if v == fmt))
    f.seek(0)
    try:
        info = (AAC if fmt == AAC_ADTS else MutagenMP3)(f).info
    except Exception:
        # The frames are valid; only the length estimate is missing.
        logger.debug("audio duration unreadable", extra={"audio_format": fmt.name}, exc_info=True)
        return stream
    channels = stream.channels or getattr(info, "channels", 0)
    length = info.length or None
    if length and info.bitrate:
        # A Xing/VBRI header states the frames the encoder wrote; a file cut short holds fewer.
        length = min(length, (size - start) * 8 / info.bitrate)
    return Stream(stream.sample_rate, channels, length)


_READERS: Final[dict[str, Callable[[BinaryIO, int], Stream]]] = {
    WAV.name: wav.read,
    FLAC.name: _read_flac,
    M4A.name: mp4.read,
    WEBM.name: webm.read,
    **{name: partial(ogg.read, kind=kind) for name, kind in _OGG_KINDS.items()},
    **{fmt.name: partial(_read_frames, fmt=fmt) for fmt in _FRAME_FORMATS.values()},
}
