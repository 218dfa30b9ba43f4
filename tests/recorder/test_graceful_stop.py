"""``vrp api`` stopped with SIGTERM: requests finished, connections closed, exit status 0.

SQLite checkpoints the write-ahead log into the database and removes ``vrp.db-wal`` when the
last connection to it closes; a process that dies by the signal leaves the log behind (2.3 MB
next to a 57 KB database after a short session), and ``vrp up`` reported the API's stop as a
failure (status -15).
"""

from __future__ import annotations

import io
import json
import signal
import uuid
import wave
from pathlib import Path
from urllib.request import Request, urlopen

from tests.backup.vrp_process import ApiProcess, vrp

RECORDINGS = 40
# 3 s of 16 kHz mono 16-bit PCM: about 94 KiB per upload.
SECONDS = 3.0
RATE = 16_000


def _wav(serial: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(RATE)
        frames = bytearray(int(SECONDS * RATE) * 2)
        frames[-8:] = serial.to_bytes(8, "little")  # a distinct blob per upload
        audio.writeframes(bytes(frames))
    return out.getvalue()


def _upload(url: str, serial: int) -> dict[str, object]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'
            f"take {serial}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="tags"\r\n\r\nwork, draft\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="take.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + _wav(serial)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = Request(
        f"{url}/api/recordings",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    with urlopen(request, timeout=30) as response:  # nosec B310 - a local test server
        assert response.status == 201
        created: dict[str, object] = json.load(response)
        return created


def test_sigterm_stops_the_api_with_status_0_and_no_write_ahead_log_left(
    tmp_path: Path,
) -> None:
    env = {"VRP_DATABASE_URL": f"sqlite:///{tmp_path / 'vrp.db'}"}
    assert vrp(["db", "upgrade"], tmp_path, **env).returncode == 0
    api = ApiProcess(tmp_path, **env)
    try:
        for serial in range(RECORDINGS):
            created = _upload(api.url, serial)
            patch = Request(
                f"{api.url}/api/recordings/{created['id']}",
                data=json.dumps({"title": f"take {serial}, edited"}).encode(),
                headers={"Content-Type": "application/json"},
                method="PATCH",
            )
            with urlopen(patch, timeout=30) as response:  # nosec B310 - a local test server
                assert response.status == 200
        wal = tmp_path / "vrp.db-wal"
        # While the API runs, the commits sit in the write-ahead log.
        assert wal.stat().st_size > 0
        api.process.send_signal(signal.SIGTERM)
        status = api.process.wait(timeout=30)
    finally:
        api.process.kill()
        api.process.wait()

    assert status == 0, "".join(api.seen)[-2000:]
    assert not wal.exists() or wal.stat().st_size == 0
    assert (tmp_path / "vrp.db").stat().st_size > 0
