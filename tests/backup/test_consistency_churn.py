"""A backup is a consistent snapshot whatever the application does meanwhile.

A real ``vrp api`` serves a client that uploads and purges recordings without pause while
real ``vrp backup run`` processes take backups of the same SQLite database and audio folder.
Every run must succeed, and every backup, restored, must hold every blob its database
references.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import requests

from tests.backup.vrp_process import ApiProcess, vrp
from tests.recorder.fixtures import make_wav

RUNS = 8
SEED_RECORDINGS = 1_000
LIVE_WINDOW = 20


class Churn:
    """A client that keeps uploading new audio and purging the oldest of its recordings."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.uploads = 0
        self.purges = 0
        self.server_errors: list[str] = []
        self._session = requests.Session()
        self._live: deque[str] = deque()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def upload(self, number: int) -> str:
        audio = make_wav(seconds=0.25, freq=110 + number * 0.731)
        response = self._session.post(
            f"{self.url}/api/recordings",
            data={"title": f"churn {number}"},
            files={"file": (f"churn-{number}.wav", audio, "audio/wav")},
            timeout=60,
        )
        self._note(response)
        return str(response.json()["id"])

    def purge(self, recording_id: str) -> None:
        response = self._session.delete(
            f"{self.url}/api/recordings/{recording_id}", params={"purge": "true"}, timeout=60
        )
        self._note(response)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        number = SEED_RECORDINGS
        while not self.stop.is_set():
            number += 1
            self._live.append(self.upload(number))
            self.uploads += 1
            if len(self._live) > LIVE_WINDOW:
                self.purge(self._live.popleft())
                self.purges += 1

    def _note(self, response: requests.Response) -> None:
        if response.status_code >= 500:
            self.server_errors.append(f"{response.status_code} {response.text[:200]}")
        response.raise_for_status()


def _referenced(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT DISTINCT sha256 FROM recordings").fetchall()
    finally:
        connection.close()
    return {sha256 for (sha256,) in rows}


def _blob_sha256(storage: Path, sha256: str) -> str | None:
    path = storage / sha256[:2] / sha256[2:4] / sha256
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def test_backups_under_upload_and_purge_churn_never_fail_and_restore_every_blob(
    tmp_path: Path,
) -> None:
    upgraded = vrp(["db", "upgrade"], tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    api = ApiProcess(tmp_path)
    churn = Churn(api.url)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda number: Churn(api.url).upload(number), range(SEED_RECORDINGS)))
        churn.start()
        runs = [vrp(["backup", "run"], tmp_path) for _ in range(RUNS)]
        churn.finish()
    finally:
        churn.stop.set()
        api.stop()

    failed = [run.stderr.strip().splitlines()[-1] for run in runs if run.returncode != 0]
    assert failed == []
    assert churn.purges >= RUNS and churn.server_errors == []
    # Nothing outlives the holds: the last purge, or the last run, emptied retained/.
    retained = tmp_path / "var" / "recordings" / "retained"
    assert not retained.is_dir() or list(retained.iterdir()) == []

    listed = vrp(["backup", "list", "--json"], tmp_path)
    backups = orjson.loads(listed.stdout)
    assert len(backups) == RUNS
    for index, backup in enumerate(backups):
        database = tmp_path / f"restored-{index}.db"
        storage = tmp_path / f"restored-{index}"
        restored = vrp(
            [
                "backup",
                "restore",
                backup["id"],
                "--to",
                str(database),
                "--storage-dir",
                str(storage),
            ],
            tmp_path,
        )
        assert restored.returncode == 0, restored.stderr
        referenced = _referenced(database)
        assert len(referenced) > SEED_RECORDINGS
        assert {sha: _blob_sha256(storage, sha) for sha in referenced} == {
            sha: sha for sha in referenced
        }
