"""An upload is stored only if it holds an audio stream; anything else is 415 naming why."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from recorder.config import Settings
from tests.recorder.fixtures import MakeClient, make_wav, stored_blobs, upload

DATA = Path(__file__).parent / "data"
_NOISE = random.Random(415).randbytes(3000)


def _wave_header(
    data_size: int, riff_size: int, *, byte_rate: int = 16000, block_align: int = 2, bits: int = 16
) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, byte_rate, block_align, bits)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param(b"fLaC", "STREAMINFO", id="flac-alone"),
        pytest.param(
            (DATA / "tone_mono_8k.mp3").read_bytes()[:4] + _NOISE[:50],
            "consecutive valid audio frames",
            id="mp3-header-noise",
        ),
        pytest.param(
            (DATA / "tone_mono_8k.aac").read_bytes()[:7] + _NOISE[:50],
            "consecutive valid audio frames",
            id="adts-header-noise",
        ),
        pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x00" + _NOISE, "audio frame", id="id3-noise"),
        pytest.param(
            b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isomiso2" + _NOISE,
            "'moov' box",
            id="ftyp-m4a-noise",
        ),
        pytest.param(
            b"RIFF\x24\x00\x00\x00WAVEdata\x00\x10\x00\x00" + bytes(4096),
            "'fmt ' chunk",
            id="wave-without-fmt",
        ),
        pytest.param(_wave_header(0, 0)[:30], "'fmt ' chunk", id="wave-cut-in-fmt"),
        pytest.param(
            _wave_header(4096, 4132, byte_rate=0, block_align=0, bits=0) + bytes(4096),
            "neither a byte rate nor a block size",
            id="wave-fmt-without-sizes",
        ),
    ],
)
def test_upload_that_only_starts_like_audio_is_415_and_stores_nothing(
    client: FlaskClient, settings: Settings, payload: bytes, problem: str
) -> None:
    status, body = upload(client, payload, filename="hostile.bin")

    assert status == 415, body
    assert problem in body["message"]
    assert stored_blobs(settings) == []
    assert client.get("/api/recordings").get_json() == []


def test_wav_left_unfinished_by_a_crashed_recorder_is_stored_with_the_duration_there(
    client: FlaskClient,
) -> None:
    samples = bytes(2 * 8000 * 3 // 4)  # 0.75 s of mono 16-bit at 8 kHz
    payload = _wave_header(0xFFFFFFFF, 0xFFFFFFFF) + samples

    status, body = upload(client, payload, filename="crashed.wav")

    assert status == 201, body
    assert (body["duration_seconds"], body["sample_rate"], body["channels"]) == (0.75, 8000, 1)


def test_wav_cut_mid_data_is_stored_with_the_duration_of_what_arrived(client: FlaskClient) -> None:
    whole = make_wav(seconds=1.0)

    status, body = upload(client, whole[: 44 + 8000])  # the header and 4000 of 8000 frames

    assert status == 201, body
    assert body["duration_seconds"] == 0.5


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("tone_*")))
def test_every_real_sample_is_stored_with_its_stream(client: FlaskClient, name: str) -> None:
    channels = 2 if "stereo" in name else 1
    rate = 48000 if name.endswith((".opus", ".webm")) else 16000 if "16k" in name else 8000

    status, body = upload(client, (DATA / name).read_bytes(), filename=name)

    assert status == 201, body
    assert (body["sample_rate"], body["channels"]) == (rate, channels)
    assert body["duration_seconds"] == pytest.approx(0.5, abs=0.16)


def test_an_upload_spooled_to_disk_is_checked_and_stored_whole(make_client: MakeClient) -> None:
    client, _ = make_client(VRP_MAX_UPLOAD_BYTES=str(4 * 1024 * 1024))
    payload = make_wav(seconds=60.0)  # 960 KB: werkzeug spools uploads over 500 KB to a file

    status, body = upload(client, payload)

    assert status == 201, body
    assert body["duration_seconds"] == 60.0
    assert client.get(f"/api/recordings/{body['id']}/audio").data == payload
