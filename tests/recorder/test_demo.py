"""The demo traffic of ``vrp up --demo`` against the real app served over HTTP."""

from __future__ import annotations

import io
import sys
import threading
import time
import wave
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from recorder.demo import CONCURRENT_PATCHES, SEED_RECORDINGS, DemoTraffic, tone_wav


@pytest.fixture
def api_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_tone_wav_is_a_pcm_wav_of_the_length_asked() -> None:
    data = tone_wav([440.0, 523.25], 1.5)

    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 12000


def test_demo_requests_get_the_answers_a_client_would(api_url: str) -> None:
    traffic = DemoTraffic(api_url, seed=1)

    uploads = [traffic.upload() for _ in range(SEED_RECORDINGS)]
    listing = traffic.list_page()
    metadata = traffic.get_metadata()
    audio = traffic.get_audio()
    patched = traffic.patch()
    missing = traffic.not_found()
    invalid = [traffic.invalid() for _ in range(6)]
    tags = traffic.list_tags()

    assert {r.status for r in uploads} == {201}
    assert metadata is not None and audio is not None and patched is not None
    assert (listing.status, metadata.status, tags.status) == (200, 200, 200)
    assert audio.status in (200, 206)
    assert patched.status == 200, patched.body
    assert missing.status == 404
    assert {r.status for r in invalid} == {422}


def test_concurrent_patches_from_one_version_let_one_win(api_url: str) -> None:
    traffic = DemoTraffic(api_url, seed=2)
    traffic.upload()

    results = traffic.concurrent_patches()

    statuses = sorted(r.status for r in results)
    assert len(statuses) == CONCURRENT_PATCHES
    assert statuses[0] == 200 and statuses[1] != 200, statuses
    assert set(statuses[1:]) <= {409, 412}, statuses


def test_stop_ends_the_traffic_and_its_backup_run(api_url: str) -> None:
    traffic = DemoTraffic(
        api_url,
        backup_argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        seed=3,
        pause=(0.01, 0.02),
    )
    thread = threading.Thread(target=traffic.run)
    thread.start()
    deadline = time.monotonic() + 30
    while traffic.requests_sent < SEED_RECORDINGS + 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    backup = traffic._backup

    traffic.stop()
    thread.join(timeout=20)

    assert not thread.is_alive()
    assert traffic.requests_sent >= SEED_RECORDINGS + 20
    assert backup is not None and backup.returncode is not None
