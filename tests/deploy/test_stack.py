"""The containers of docker/compose.yaml, run together as a user would run them, at a user's size.

One scenario, in order (each test builds on the ones before; pytest runs them in file order):
1,000 recordings uploaded through the API container in parallel; a scheduled backup that
holds them all and verified; that backup restored into a new PostgreSQL database with every
table's row count and every blob's sha256 the same as the live ones; the API's queries and the
backup run on the dashboard; the stack stopped and started again with everything still there.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import requests

from tests.deploy.stack import API_URL, DASHBOARD_URL, POSTGRES_URL, compose, vrp, wait_healthy

RECORDINGS = 1000
UPLOAD_THREADS = 16
_state: dict[str, Any] = {}


def _wav(index: int) -> bytes:
    """0.05 s of 8 kHz mono 16-bit PCM whose samples depend on ``index``: every file differs."""
    samples = bytearray()
    for n in range(400):
        samples += (((index * 7919 + n * 31) % 65536) - 32768).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(samples))
    return out.getvalue()


def _dashboard(path: str, token: str, **params: str) -> dict[str, Any]:
    response = requests.get(
        f"{DASHBOARD_URL}{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def _total_recordings() -> int:
    response = requests.get(f"{API_URL}/api/recordings", params={"page_size": 1}, timeout=30)
    response.raise_for_status()
    return json.loads(response.headers["X-Pagination"])["total"]


def _backups() -> list[dict[str, Any]]:
    return json.loads(vrp("backup", "list", "--json"))


def _table_counts(database: str) -> dict[str, int]:
    with psycopg.connect(f"{POSTGRES_URL}/{database}", autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables
        }


# Run inside a container: {file name: sha256 of its content} for every blob under a folder.
_HASH_BLOBS = """
import hashlib, json, pathlib, re, sys
blobs = {}
for path in pathlib.Path(sys.argv[1]).rglob("*"):
    if path.is_file() and re.fullmatch("[0-9a-f]{64}", path.name):
        blobs[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
print(json.dumps(blobs))
"""


def _blob_hashes(folder: str) -> dict[str, str]:
    out = compose("exec", "-T", "scheduler", "python3", "-c", _HASH_BLOBS, folder)
    return json.loads(out)


def test_uploads_1000_recordings_in_parallel_through_the_api() -> None:
    local = threading.local()

    def upload(index: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(
            f"{API_URL}/api/recordings",
            data={"title": f"deploy {index}", "tags": "deploy"},
            files={"file": (f"take-{index}.wav", _wav(index), "audio/wav")},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        return index

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        done = list(pool.map(upload, range(RECORDINGS)))
    assert len(done) == RECORDINGS
    assert _total_recordings() == RECORDINGS


def test_a_scheduled_backup_holds_every_recording_and_verified() -> None:
    deadline = time.monotonic() + 240
    while True:
        complete = [
            b
            for b in _backups()
            if b["trigger"] == "schedule"
            and b["engine"] == "postgresql"
            and b["blobs"] == RECORDINGS
        ]
        if complete:
            break
        assert time.monotonic() < deadline, f"no scheduled backup of them all: {_backups()}"
        time.sleep(5)
    backup = complete[-1]
    assert backup["verified"] is True
    # Larger than the 64 KiB pipe buffer that once made PostgreSQL verifies fail.
    assert backup["bytes"] > 64 * 1024
    vrp("backup", "verify", backup["id"])
    _state["backup"] = backup


def test_the_backup_restores_into_a_new_database_with_every_row_and_blob() -> None:
    backup = _state.get("backup") or pytest.skip("no backup from the previous test")
    vrp(
        "backup",
        "restore",
        backup["id"],
        "--database-url",
        f"{POSTGRES_URL}/restored",
        "--storage-dir",
        "/srv/vrp/var/restored",
    )
    live, restored = _table_counts("vrp"), _table_counts("restored")
    assert restored == live
    assert live["recordings"] == RECORDINGS

    with psycopg.connect(f"{POSTGRES_URL}/vrp") as conn:
        referenced = {sha for (sha,) in conn.execute("SELECT sha256 FROM recordings")}
    blobs = _blob_hashes("/srv/vrp/var/restored")
    assert set(blobs) == referenced
    assert all(name == digest for name, digest in blobs.items())
    assert _blob_hashes("/srv/vrp/var/recordings") == blobs


def test_the_dashboard_shows_the_api_queries_and_the_backup_run() -> None:
    token = compose("exec", "-T", "dashboard", "printenv", "VRP_DASHBOARD_TOKEN").strip()
    backup = _state.get("backup") or pytest.skip("no backup from the previous test")
    deadline = time.monotonic() + 120
    while True:
        queries = _dashboard("/api/queries", token, since="1h")["queries"]
        api_queries = [q for q in queries if q["service"] == "vrp-api"]
        runs = _dashboard("/api/backups", token, since="1h")["runs"]
        ours = [r for r in runs if r["backup_id"] == backup["id"]]
        inserts = [q for q in api_queries if "recordings" in q["summary"].lower()]
        if inserts and ours:
            break
        assert time.monotonic() < deadline, (api_queries, runs)
        time.sleep(5)
    assert ours[0]["status"] == "success"
    assert ours[0]["verified"] is True


def test_everything_is_still_there_after_the_stack_stops_and_starts() -> None:
    backups = {b["id"] for b in _backups()}
    before = _blob_hashes("/srv/vrp/var/recordings")
    compose("stop", "--timeout", "20")
    compose("up", "-d", "--no-build")
    wait_healthy(180)
    assert _total_recordings() == RECORDINGS
    assert backups <= {b["id"] for b in _backups()}
    assert _blob_hashes("/srv/vrp/var/recordings") == before
    response = requests.get(f"{API_URL}/api/recordings", params={"page_size": 1}, timeout=30)
    recording = response.json()[0]
    audio = requests.get(f"{API_URL}/api/recordings/{recording['id']}/audio", timeout=30)
    assert audio.status_code == 200
    assert hashlib.sha256(audio.content).hexdigest() in before
