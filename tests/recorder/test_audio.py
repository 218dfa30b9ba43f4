from __future__ import annotations

import io
import logging
import math
import random
import struct
import wave
from pathlib import Path

import pytest
from mutagen.flac import FLAC as MutagenFLAC
from mutagen.mp3 import MP3 as MutagenMP3
from mutagen.mp4 import MP4

from recorder import audio
from recorder.audio import HEAD_BYTES, AudioFormat, AudioInfo, detect_format, probe
from recorder.errors import UnsupportedMediaError
from tests.recorder.flacfile import make_flac
from tests.recorder.m4a import build_m4a

DATA = Path(__file__).parent / "data"


def write_pcm_wav(
    path: Path, *, channels: int, rate: int, sample_width: int, seconds: float
) -> Path:
    frames = round(rate * seconds)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(sample_width)
        writer.setframerate(rate)
        writer.writeframes(bytes(frames * channels * sample_width))
    return path


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    padding = b"\x00" if len(body) % 2 else b""
    return chunk_id + struct.pack("<I", len(body)) + body + padding


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(tag: int, channels: int, rate: int, bits: int, extra: bytes = b"") -> bytes:
    align = channels * bits // 8
    return chunk(
        b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra
    )


def extensible_fmt_chunk(channels: int, rate: int, bits: int) -> bytes:
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")
    extension = struct.pack("<HHI", 22, bits, 0x3) + pcm_guid
    return fmt_chunk(0xFFFE, channels, rate, bits, extension)


def ogg_bos_page(packet: bytes, serial: int) -> bytes:
    header = b"OggS" + bytes([0, 0x02]) + bytes(8) + struct.pack("<III", serial, 0, 0)
    return header + bytes([1, len(packet)]) + packet


def detect_file(path: Path) -> AudioFormat | None:
    return detect_format(path.read_bytes()[:HEAD_BYTES])


FIXTURES = [
    # file, format, duration (s), sample rate, channels
    ("tone_mono_8k.flac", audio.FLAC, 0.5, 8000, 1),
    ("tone_mono_8k.oga", audio.OGG_FLAC, 0.5, 8000, 1),
    ("tone_mono_8k.opus", audio.OGG_OPUS, 0.5, 48000, 1),
    ("tone_stereo_8k.ogg", audio.OGG_VORBIS, 0.5, 8000, 2),
    ("tone_mono_8k.spx", audio.OGG_SPEEX, 0.5, 8000, 1),
    ("tone_mono_8k.mp3", audio.MP3, 0.5, 8000, 1),
    ("tone_stereo_8k_id3.mp3", audio.MP3, 0.5, 8000, 2),
    ("tone_mono_16k.mp2", audio.MP2, 0.5, 16000, 1),
    ("tone_stereo_8k.m4a", audio.M4A, 0.5, 8000, 2),
    ("tone_mono_8k.m4a", audio.M4A, 0.5, 8000, 1),
    ("tone_mono_48k.webm", audio.WEBM, 0.5, 48000, 1),
    ("tone_mono_8k.aac", audio.AAC_ADTS, 0.5, 8000, 1),
]


@pytest.mark.parametrize(("name", "fmt", "duration", "rate", "channels"), FIXTURES)
def test_real_file_is_detected_and_probed(
    name: str, fmt: AudioFormat, duration: float, rate: int, channels: int
) -> None:
    path = DATA / name

    assert detect_file(path) == fmt
    info = probe(path, fmt)

    # Lossy encoders pad to whole frames, hence the tolerance (see data/README.md).
    assert info.duration_seconds == pytest.approx(duration, abs=0.16)
    assert info.sample_rate == rate
    assert info.channels == channels


def refused(data: bytes, fmt: AudioFormat | None = None) -> str:
    """The 415 message :func:`probe` gives ``data`` (detected as ``fmt`` unless given)."""
    fmt = fmt or detect_format(data[:HEAD_BYTES])
    assert fmt is not None, "the sample must pass detection to test the container check"
    with pytest.raises(UnsupportedMediaError) as caught:
        probe(io.BytesIO(data), fmt)
    return str(caught.value)


def test_ffmpeg_style_mono_m4a_reports_the_channels_of_its_audio_specific_config() -> None:
    path = DATA / "tone_mono_8k.m4a"

    # The mp4a sample entry says 2 (a template value); the AudioSpecificConfig says mono.
    assert MP4(path).info.channels == 2
    assert probe(path, audio.M4A).channels == 1


def test_mono_m4a_sample_is_what_the_remuxer_makes_of_the_adts_sample() -> None:
    adts = (DATA / "tone_mono_8k.aac").read_bytes()

    assert build_m4a(adts) == (DATA / "tone_mono_8k.m4a").read_bytes()


def _without_duration(webm: bytes) -> bytes:
    """``webm`` as a live recorder writes it: no Duration in Info (here turned into a Void)."""
    duration = webm.index(b"\x44\x89\x88")  # Duration, an 8-byte float
    return webm[:duration] + b"\xec\x89" + bytes(9) + webm[duration + 11 :]


def test_webm_recorded_live_is_measured_up_to_its_last_block() -> None:
    live = _without_duration((DATA / "tone_mono_48k.webm").read_bytes())

    info = probe(io.BytesIO(live), audio.WEBM)

    assert (info.sample_rate, info.channels) == (48000, 1)
    assert info.duration_seconds == pytest.approx(0.5, abs=0.03)  # minus the last 20 ms block


@pytest.mark.parametrize("live", [False, True])
def test_webm_cut_short_reports_the_time_up_to_the_cut(live: bool) -> None:
    webm = (DATA / "tone_mono_48k.webm").read_bytes()
    if live:
        webm = _without_duration(webm)
    whole = probe(io.BytesIO(webm), audio.WEBM).duration_seconds
    first_block = webm.index(b"\xa3", webm.index(b"\x1f\x43\xb6\x75"))  # in the first Cluster

    durations = [
        probe(io.BytesIO(webm[:keep]), audio.WEBM).duration_seconds
        for keep in range(first_block + 20, len(webm) - 150, 100)
    ]

    # A cut that loses more than one block's length (BLOCK_SLACK_SECONDS) is measured.
    quarter = webm[: first_block + (len(webm) - first_block) // 4]
    early = probe(io.BytesIO(quarter), audio.WEBM).duration_seconds

    assert whole is not None and early is not None
    assert all(d is not None and d <= whole for d in durations)
    assert durations == sorted(durations)
    assert durations[0] < 0.1
    assert 0 < early < whole / 2


def test_webm_without_an_audio_track_is_refused() -> None:
    webm = (DATA / "tone_mono_48k.webm").read_bytes()
    track_type = webm.index(b"\x83\x81\x02")
    video = webm[:track_type] + b"\x83\x81\x01" + webm[track_type + 3 :]

    assert "has no audio track (a TrackEntry of TrackType audio)" in refused(video)


def test_m4a_whose_only_track_is_video_is_refused() -> None:
    m4a = (DATA / "tone_mono_8k.m4a").read_bytes().replace(b"soun", b"vide")

    assert "has no audio track" in refused(m4a)


def test_m4a_cut_before_its_moov_box_is_refused() -> None:
    m4a = (DATA / "tone_stereo_8k.m4a").read_bytes()

    assert "has no 'moov' box" in refused(m4a[: m4a.index(b"moov") - 4])


def test_probe_reads_an_upload_stream_and_leaves_it_at_the_start() -> None:
    stream = io.BytesIO((DATA / "tone_mono_8k.flac").read_bytes())
    stream.seek(100)

    assert probe(stream, audio.FLAC) == AudioInfo(0.5, 8000, 1)
    assert stream.tell() == 0


def test_formats_map_every_name_to_an_audio_mime_type() -> None:
    assert all(audio.FORMATS[f.name] is f for f in audio.FORMATS.values())
    assert all(f.mime.startswith("audio/") for f in audio.FORMATS.values())
    assert {f.mime for f in audio.FORMATS.values()} == {
        "audio/wav",
        "audio/flac",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/webm",
    }


@pytest.mark.parametrize(
    ("channels", "rate", "sample_width", "seconds"),
    [
        (1, 8000, 2, 0.25),
        (2, 8000, 2, 0.5),
        (2, 16000, 2, 1.0),
        (1, 44100, 1, 0.1),
        (1, 48000, 3, 0.2),
    ],
)
def test_pcm_wav_reports_exact_duration_rate_and_channels(
    tmp_path: Path, channels: int, rate: int, sample_width: int, seconds: float
) -> None:
    path = write_pcm_wav(
        tmp_path / "a.wav", channels=channels, rate=rate, sample_width=sample_width, seconds=seconds
    )

    assert detect_file(path) == audio.WAV
    assert probe(path, audio.WAV) == AudioInfo(pytest.approx(seconds), rate, channels)


def test_extensible_24bit_wav_refused_by_wave_module_is_still_probed(tmp_path: Path) -> None:
    path = tmp_path / "ext.wav"
    # An odd-sized chunk ahead of fmt checks that the walk honours RIFF's even padding.
    path.write_bytes(
        riff(
            chunk(b"bext", b"x" * 7),
            extensible_fmt_chunk(2, 48000, 24),
            chunk(b"data", bytes(6 * 4800)),
        )
    )
    with pytest.raises(wave.Error):
        wave.open(str(path)).close()

    assert detect_file(path) == audio.WAV
    assert probe(path, audio.WAV) == AudioInfo(pytest.approx(0.1), 48000, 2)


def test_float_wav_is_probed(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    path.write_bytes(riff(fmt_chunk(3, 1, 16000, 32), chunk(b"data", bytes(4 * 8000))))

    assert probe(path, audio.WAV) == AudioInfo(pytest.approx(0.5), 16000, 1)


def test_truncated_wav_reports_duration_of_the_bytes_present(tmp_path: Path) -> None:
    full = write_pcm_wav(tmp_path / "full.wav", channels=1, rate=8000, sample_width=2, seconds=1.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 8000])  # header + 4000 frames of 8000

    assert probe(cut, audio.WAV) == AudioInfo(pytest.approx(0.5), 8000, 1)


@pytest.mark.parametrize("placeholder", [0, 0xFFFFFFFF])
def test_wav_left_unfinished_by_a_crashed_recorder_is_measured_from_disk(
    tmp_path: Path, placeholder: int
) -> None:
    path = tmp_path / "crashed.wav"
    fmt = fmt_chunk(1, 2, 8000, 16)
    data = b"data" + struct.pack("<I", placeholder) + bytes(4 * 2000)
    path.write_bytes(b"RIFF" + struct.pack("<I", placeholder) + b"WAVE" + fmt + data)

    assert probe(path, audio.WAV) == AudioInfo(pytest.approx(0.25), 8000, 2)


def test_wav_with_fmt_but_no_data_chunk_is_refused() -> None:
    assert "has no 'data' chunk" in refused(riff(fmt_chunk(1, 1, 22050, 16)))


def test_wav_with_an_empty_data_chunk_is_a_recording_of_no_time() -> None:
    data = riff(fmt_chunk(1, 1, 22050, 16), chunk(b"data", b""))

    assert probe(io.BytesIO(data), audio.WAV) == AudioInfo(0.0, 22050, 1)


def test_wav_with_its_data_chunk_before_fmt_is_probed() -> None:
    data = riff(chunk(b"data", bytes(16000)), fmt_chunk(1, 1, 16000, 16))

    assert probe(io.BytesIO(data), audio.WAV) == AudioInfo(0.5, 16000, 1)


_MP3 = (DATA / "tone_mono_8k.mp3").read_bytes()
_AAC = (DATA / "tone_mono_8k.aac").read_bytes()
_NOISE = random.Random(20261128).randbytes(4000)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(b"fLaC", "has no STREAMINFO block", id="flac-alone"),
        pytest.param(b"fLaC" + bytes([0x84]) + _NOISE, "has no STREAMINFO", id="flac-noise"),
        pytest.param(
            b"fLaC\x80" + (DATA / "tone_mono_8k.flac").read_bytes()[5:42],  # STREAMINFO, last
            "has no audio frame after its metadata",
            id="flac-metadata-only",
        ),
        pytest.param(
            (DATA / "tone_mono_8k.flac").read_bytes()[:42],
            "its metadata is cut short",
            id="flac-cut-in-metadata",
        ),
        pytest.param(_MP3[:4] + _NOISE[:60], "fewer than 3 consecutive", id="mp3-header-noise"),
        pytest.param(_MP3[:72], "fewer than 3 consecutive", id="one-mp3-frame"),
        pytest.param(_AAC[:7] + _NOISE[:40], "fewer than 3 consecutive", id="adts-header-noise"),
        pytest.param(
            b"ID3\x03\x00\x00\x00\x00\x00\x14" + bytes(20) + _NOISE,
            "has no audio frame where the stream should start",
            id="id3-noise",
        ),
        pytest.param(
            b"ID3\x04\x00\x00\x00\x10\x00\x00" + _NOISE * 80,
            "has no audio frame where the stream should start",
            id="id3-large-tag-noise",
        ),
        pytest.param(
            b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isomiso2" + _NOISE,
            "has no 'moov' box",
            id="ftyp-m4a-noise",
        ),
        pytest.param(
            riff(chunk(b"data", bytes(1000))), "has no 'fmt ' chunk", id="wav-without-fmt"
        ),
        pytest.param(
            riff(fmt_chunk(1, 1, 8000, 16))[:30], "'fmt ' chunk is cut short", id="wav-cut-fmt"
        ),
        pytest.param(
            riff(chunk(b"fmt ", bytes(8)), chunk(b"data", bytes(100))),
            "'fmt ' chunk is cut short",
            id="wav-short-fmt",
        ),
        pytest.param(
            riff(fmt_chunk(1, 0, 8000, 16), chunk(b"data", bytes(100))),
            "no valid channel count (0)",
            id="wav-zero-channels",
        ),
        pytest.param(
            riff(fmt_chunk(1, 1, 2_000_000_000, 16), chunk(b"data", bytes(100))),
            "no valid sample rate",
            id="wav-absurd-rate",
        ),
        pytest.param(
            (DATA / "tone_mono_48k.webm").read_bytes()[:40], "has no Segment", id="ebml-only"
        ),
        pytest.param(
            (DATA / "tone_mono_8k.opus").read_bytes()[:841],
            "has no complete audio page",
            id="opus-headers-only",
        ),
    ],
)
def test_files_that_only_start_like_audio_are_refused_naming_what_is_missing(
    data: bytes, problem: str
) -> None:
    message = refused(data)

    assert problem in message
    assert message.endswith("upload the complete recording")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Hello, this is a plain text file.\n" * 20, id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100), id="png"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj" + bytes(100), id="pdf"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100), id="jpeg"),
        pytest.param(b"PK\x03\x04" + bytes(100), id="zip"),
        pytest.param(b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(100), id="avi"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAV", id="truncated-wav"),
        pytest.param(b"fLa", id="truncated-flac"),
        pytest.param(b"OggS\x00\x02", id="truncated-ogg"),
        pytest.param(b"ID3\x04\x00", id="truncated-id3"),
        pytest.param(b"ID3\x04\x00\x00\x80\x00\x00\x00" + bytes(100), id="id3-bad-size"),
        pytest.param(b"\xff\xfb", id="truncated-mpeg"),
        pytest.param(b"\xff\xfb\xf0\x00" + bytes(2000), id="mpeg-bad-bitrate"),
        pytest.param(b"\x1a\x45\xdf\xa3", id="truncated-ebml"),
        pytest.param(b"\x00\x00\x00\x18ftyp", id="truncated-ftyp"),
    ],
)
def test_non_audio_and_cut_headers_are_not_detected(head: bytes) -> None:
    assert detect_format(head) is None


def test_random_bytes_are_not_detected() -> None:
    rng = random.Random(20240501)
    heads = [rng.randbytes(HEAD_BYTES) for _ in range(2000)]
    # Start some with an MPEG frame sync, the cheapest magic to hit by accident.
    heads += [
        b"\xff" + bytes([0xE0 | rng.randrange(32)]) + rng.randbytes(HEAD_BYTES - 2)
        for _ in range(2000)
    ]

    assert [h[:4].hex() for h in heads if detect_format(h) is not None] == []


def test_mpeg_frame_sync_needs_a_second_frame_where_the_first_ends() -> None:
    head = bytearray((DATA / "tone_mono_8k.mp3").read_bytes()[:HEAD_BYTES])
    assert detect_format(bytes(head)) == audio.MP3

    head[72] = 0x00  # first frame of MPEG-2.5 layer III at 8 kbit/s, 8 kHz is 72 bytes

    assert detect_format(bytes(head)) is None


def test_single_mpeg_frame_shorter_than_head_is_detected() -> None:
    one_frame = (DATA / "tone_mono_8k.mp3").read_bytes()[:72]

    assert detect_format(one_frame) == audio.MP3


def test_id3_tag_in_front_of_adts_or_flac_is_classified_by_the_stream_behind_it(
    tmp_path: Path,
) -> None:
    tag = b"ID3\x03\x00\x00\x00\x00\x00\x14" + bytes(20)
    aac = tmp_path / "tagged.aac"
    aac.write_bytes(tag + (DATA / "tone_mono_8k.aac").read_bytes())
    flac = tag + (DATA / "tone_mono_8k.flac").read_bytes()[:HEAD_BYTES]

    assert detect_file(aac) == audio.AAC_ADTS
    assert probe(aac, audio.AAC_ADTS).sample_rate == 8000
    assert detect_format(flac) == audio.FLAC


def test_id3_tag_longer_than_the_head_is_taken_as_mp3() -> None:
    cover_art_sized = b"ID3\x04\x00\x00\x00\x10\x00\x00"  # 256 KiB tag
    head = cover_art_sized + bytes(HEAD_BYTES - 10)

    assert detect_format(head) == audio.MP3


def test_ogg_audio_behind_a_skeleton_stream_is_detected() -> None:
    opus = (DATA / "tone_mono_8k.opus").read_bytes()
    head = ogg_bos_page(b"fishead\x00" + bytes(56), serial=1) + opus

    assert detect_format(head[:HEAD_BYTES]) == audio.OGG_OPUS


def test_ogg_with_a_video_stream_is_not_audio() -> None:
    vorbis = (DATA / "tone_stereo_8k.ogg").read_bytes()
    theora = ogg_bos_page(b"\x80theora" + bytes(34), serial=7)

    assert detect_format(theora) is None
    assert detect_format((theora + vorbis)[:HEAD_BYTES]) is None


def test_ogg_with_an_unknown_codec_is_not_detected() -> None:
    assert detect_format(ogg_bos_page(b"\x80kate\x00\x00\x00" + bytes(56), serial=3)) is None


@pytest.mark.parametrize(
    ("brands", "expected"),
    [
        (b"M4A \x00\x00\x00\x00M4A mp42isom", audio.M4A),
        (b"mp42\x00\x00\x00\x00mp42isom", audio.M4A),
        (b"qt  \x00\x00\x00\x00qt  M4A ", audio.M4A),
        (b"heic\x00\x00\x00\x00mif1heic", None),
        (b"avif\x00\x00\x00\x00avifmif1miaf", None),
        (b"M4V \x00\x00\x00\x00M4V isom", None),
    ],
)
def test_iso_media_is_audio_only_for_audio_or_generic_brands(
    brands: bytes, expected: AudioFormat | None
) -> None:
    ftyp = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands

    assert detect_format(ftyp + bytes(64)) == expected


def test_matroska_that_is_not_webm_is_not_detected() -> None:
    webm = (DATA / "tone_mono_48k.webm").read_bytes()[:HEAD_BYTES]
    doctype = webm.index(b"\x42\x82\x84webm")
    matroska = webm[:doctype] + b"\x42\x82\x84mkv_" + webm[doctype + 7 :]

    assert detect_format(webm) == audio.WEBM
    assert detect_format(matroska) is None


@pytest.mark.parametrize(("name", "fmt"), [(f[0], f[1]) for f in FIXTURES])
def test_a_cut_file_is_either_probed_or_refused_with_415(name: str, fmt: AudioFormat) -> None:
    data = (DATA / name).read_bytes()
    for keep in range(0, len(data), max(1, len(data) // 97)):
        try:
            info = probe(io.BytesIO(data[:keep]), fmt)
        except UnsupportedMediaError:
            continue
        assert info.sample_rate > 0 and info.channels > 0
        if info.duration_seconds is not None:
            assert math.isfinite(info.duration_seconds) and info.duration_seconds >= 0


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("tone_mono_8k.mp3", audio.MP3),
        ("tone_stereo_8k_id3.mp3", audio.MP3),
        ("tone_mono_16k.mp2", audio.MP2),
        ("tone_mono_8k.aac", audio.AAC_ADTS),
    ],
)
def test_a_frame_stream_cut_in_half_reports_about_half_its_duration(
    name: str, fmt: AudioFormat
) -> None:
    data = (DATA / name).read_bytes()
    whole = probe(io.BytesIO(data), fmt)

    half = probe(io.BytesIO(data[: len(data) // 2]), fmt)

    assert whole.duration_seconds is not None and half.duration_seconds is not None
    assert half.duration_seconds == pytest.approx(whole.duration_seconds / 2, rel=0.25)
    assert (half.sample_rate, half.channels) == (whole.sample_rate, whole.channels)


def test_noise_behind_a_valid_container_header_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(7)
    heads = {
        audio.FLAC: (DATA / "tone_mono_8k.flac").read_bytes()[:4],
        audio.M4A: (DATA / "tone_stereo_8k.m4a").read_bytes()[:28],
        audio.WEBM: (DATA / "tone_mono_48k.webm").read_bytes()[:40],
        audio.OGG_OPUS: (DATA / "tone_mono_8k.opus").read_bytes()[:47],
        audio.WAV: riff()[:12],
    }
    with caplog.at_level(logging.DEBUG, logger="recorder.audio"):
        for fmt, head in heads.items():
            for _ in range(200):
                with pytest.raises(UnsupportedMediaError):
                    probe(io.BytesIO(head + rng.randbytes(rng.randrange(4000))), fmt)


def test_a_missing_file_is_an_os_error_not_a_verdict_on_the_upload(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "gone.wav", audio.WAV)


def _ogg_crc(page: bytes) -> int:
    """The CRC-32 of an Ogg page (RFC 3533: polynomial 0x04C11DB7, no reflection, init 0)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], granule: int, serial: int, sequence: int, flags: int) -> bytes:
    table = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(table))
    page = header + table + b"".join(packets)
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def _opus_in_pages_of(packets_per_page: int) -> tuple[bytes, list[int]]:
    """The Opus sample re-paged with ``packets_per_page`` audio packets a page (each 20 ms).

    Returns the file and the offset at which each audio page starts.
    """
    data = (DATA / "tone_mono_8k.opus").read_bytes()
    headers, audio_page = data[:841], data[841:]
    serial, final_granule = struct.unpack_from("<I", audio_page, 14)[0], audio_page[6:14]
    table = audio_page[27 : 27 + audio_page[26]]
    body, packets, start, end = audio_page[27 + len(table) :], [], 0, 0
    for lace in table:
        end += lace
        if lace < 255:
            packets.append(body[start:end])
            start = end
    assert {p[0] for p in packets} == {0x08}, "SILK 20 ms, one frame a packet"
    pre_skip = int.from_bytes(headers[38:40], "little")
    out, offsets = bytearray(headers), []
    for index in range(0, len(packets), packets_per_page):
        chunk = packets[index : index + packets_per_page]
        last = index + packets_per_page >= len(packets)
        granule = (
            int.from_bytes(final_granule, "little", signed=True)
            if last
            else pre_skip + 960 * (index + len(chunk))
        )
        offsets.append(len(out))
        out += _ogg_page(chunk, granule, serial, 2 + index // packets_per_page, 4 if last else 0)
    return bytes(out), offsets


def test_ogg_cut_mid_page_reports_the_time_up_to_the_last_whole_page() -> None:
    whole, pages = _opus_in_pages_of(6)  # granules 0.12, 0.24, 0.36, 0.48 s, then the end

    assert probe(io.BytesIO(whole), audio.OGG_OPUS) == AudioInfo(0.5, 48000, 1)
    for page, seconds in enumerate((0.12, 0.24, 0.36, 0.48)):
        cut = whole[: pages[page + 1] + 40]  # inside the next page
        assert probe(io.BytesIO(cut), audio.OGG_OPUS) == AudioInfo(pytest.approx(seconds), 48000, 1)


@pytest.mark.parametrize(("name", "fmt"), [(f[0], f[1]) for f in FIXTURES])
def test_damaged_real_files_are_probed_or_refused_never_crash(name: str, fmt: AudioFormat) -> None:
    data = (DATA / name).read_bytes()
    rng = random.Random(name)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            info = probe(io.BytesIO(bytes(damaged)), fmt)
        except UnsupportedMediaError:
            continue
        assert audio.MIN_SAMPLE_RATE <= info.sample_rate <= audio.MAX_SAMPLE_RATE
        assert 1 <= info.channels <= audio.MAX_CHANNELS


def test_flac_cut_between_frames_reports_the_time_up_to_the_cut() -> None:
    whole = make_flac(2.0, rate=8000, block_size=1024)  # 16 frames, the last of 640 samples
    metadata, frame = 42, 8 + 1 + 2 * 1024 + 2  # header, VERBATIM subframe, CRC-16
    assert MutagenFLAC(io.BytesIO(whole)).info.length == 2.0

    assert probe(io.BytesIO(whole), audio.FLAC) == AudioInfo(2.0, 8000, 1)
    assert probe(io.BytesIO(whole[:-1]), audio.FLAC).duration_seconds == 15 * 1024 / 8000
    for frames in range(1, 15):
        cut = whole[: metadata + frames * frame + 100]  # 100 bytes into the next frame
        duration = probe(io.BytesIO(cut), audio.FLAC).duration_seconds
        assert duration == frames * 1024 / 8000


def test_mp3_with_a_xing_header_cut_short_reports_about_the_time_there() -> None:
    cbr = (DATA / "tone_mono_8k.mp3").read_bytes()  # MPEG-2.5 layer III, 72-byte frames
    # A Xing frame (after the 4-byte header and 9 bytes of mono MPEG-2 side information)
    # stating the frame and byte counts of the stream, as VBR encoders write it.
    xing = cbr[:4] + bytes(9) + b"Xing" + struct.pack(">III", 3, len(cbr) // 72, len(cbr))
    vbr = xing + bytes(72 - len(xing)) + cbr
    half = vbr[: len(vbr) // 2]
    assert MutagenMP3(io.BytesIO(half)).info.length == pytest.approx(0.648)  # the header's

    whole = probe(io.BytesIO(vbr), audio.MP3).duration_seconds
    cut = probe(io.BytesIO(half), audio.MP3).duration_seconds

    assert whole == pytest.approx(0.648)
    assert cut is not None and whole / 4 < cut < 3 * whole / 4


_CLUSTER_FLOOD = b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff" + b"\xe7\x81\x01"


@pytest.mark.timeout(60)  # a hang guard: each reader bounds its search from the end
@pytest.mark.parametrize(
    ("name", "fmt", "tail"),
    [
        ("tone_mono_8k.flac", audio.FLAC, b"\xff\xf8" * 500_000),
        ("tone_mono_8k.opus", audio.OGG_OPUS, b"OggS" * 250_000),
        ("tone_mono_48k.webm", audio.WEBM, (_CLUSTER_FLOOD + b"\xec\x80" * 4000) * 100),
    ],
)
def test_a_tail_crafted_to_look_like_many_frames_is_searched_a_bounded_number_of_times(
    name: str, fmt: AudioFormat, tail: bytes
) -> None:
    data = (DATA / name).read_bytes() + tail
    try:
        info = probe(io.BytesIO(data), fmt)
    except UnsupportedMediaError:
        return
    assert info.duration_seconds is None or info.duration_seconds <= 1.0
