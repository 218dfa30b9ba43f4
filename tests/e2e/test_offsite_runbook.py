"""The README's disaster-recovery runbook, step by step, with an SFTP remote.

Every step is the README's command run as a ``vrp`` process in a fresh folder with the default
paths (``var/...``): a key pair, ``vrp backup init --remote`` on a real OpenSSH server
(tests/backup/sftp_server.py), real WAV files uploaded through ``vrp api``, ``vrp scheduler``
until its first copy is done, then ``var`` deleted entirely, and the restore on the "rebuilt"
host with only the remote settings and the private key, after which ``vrp api`` serves the same
bytes. The only departures from the README: the API listens on a free port (not 5000) and
the key files live in the test's folder rather than ``~``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from tests.backup.sftp_server import SftpServer, sftp_server
from tests.backup.vrp_process import ApiProcess, vrp, vrp_env
from tests.recorder.fixtures import make_wav

__all__ = ["sftp_server"]

pytestmark = pytest.mark.slow

TAKES = 4
COPY_SECONDS = 120


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _messages(lines: list[str]) -> list[str]:
    return [str(json.loads(line).get("message", "")) for line in lines if line.startswith("{")]


def _run_scheduler_until_copied(site: Path, env: dict[str, str]) -> list[str]:
    """``vrp scheduler`` until it logs its first copy, then Ctrl-C (SIGINT): its log lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "scheduler"],
        cwd=site,
        env=vrp_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + COPY_SECONDS
    try:
        while (left := deadline - time.monotonic()) > 0:
            line = lines.get(timeout=left)
            if line is None:
                break
            seen.append(line)
            if any(m.startswith("copy to sftp://") for m in _messages([line])):
                break
        else:
            pytest.fail(f"no copy within {COPY_SECONDS} s: {''.join(seen)[-3000:]}")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "".join(seen)[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    while (line := lines.get(timeout=5)) is not None:
        seen.append(line)
    return seen


def test_the_disaster_recovery_runbook_restores_every_recording_from_an_sftp_remote(
    tmp_path: Path, sftp_server: SftpServer
) -> None:
    site, keys = tmp_path / "checkout", tmp_path / "keys"
    site.mkdir()
    keys.mkdir()
    key = keys / "vrp-offsite.key"
    remote = {k: v for k, v in sftp_server.env("vrp-offsite").items() if "TIMEOUT" not in k}

    # 1. A key pair.
    _ok(vrp(["backup", "keygen", str(key)], tmp_path))
    assert key.stat().st_mode & 0o077 == 0

    # 2. A remote (the recipients file only: the backup host never holds the private key).
    sender = {**remote, "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": f"{key}.pub"}
    _ok(vrp(["db", "upgrade"], site, **sender))
    assert "created backup remote" in _ok(vrp(["backup", "init", "--remote"], site, **sender))

    # 3. Some recordings, real WAV files through the API.
    takes = {}
    api = ApiProcess(site, **sender)
    try:
        for serial in range(TAKES):
            audio = make_wav(seconds=6 + serial, rate=22050, freq=220 + 110 * serial)
            created = requests.post(
                f"{api.url}/api/recordings",
                files={"file": (f"take-{serial}.wav", audio, "audio/wav")},
                data={"title": f"take {serial}"},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            takes[created.json()["id"]] = hashlib.sha256(audio).hexdigest()
    finally:
        api.stop()

    # 4. The scheduler: with no backup yet it runs one at once, verifies and copies it.
    logged = _run_scheduler_until_copied(site, sender)
    messages = _messages(logged)
    # One line for the copy, none per SSH connection or SFTP channel (paramiko is quieted).
    assert not [line for line in logged if '"logger":"paramiko' in line]
    assert any(m.startswith("no backup yet") for m in messages)
    [copied] = [m for m in messages if m.startswith("copy to sftp://")]
    assert "1 backup(s) copied" in copied
    [listed] = orjson.loads(_ok(vrp(["backup", "list", "--remote", "--json"], site, **sender)))
    assert listed["verified"] is True
    status = _ok(vrp(["backup", "status"], site, **sender))
    assert f"offsite {sftp_server.url('vrp-offsite')}: newest {listed['id']}" in status

    # 5. The disaster.
    shutil.rmtree(site / "var")

    # 6. Restore from the remote with the private key, and no recipients file.
    rebuilt = {**remote, "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(key)}
    assert listed["id"] in _ok(vrp(["backup", "list", "--remote"], site, **rebuilt))
    assert "verified" in _ok(vrp(["backup", "verify", "--remote"], site, **rebuilt))
    _ok(vrp(["backup", "init"], site, **rebuilt))
    restored = _ok(
        vrp(
            ["backup", "restore", listed["id"], "--from-remote", "--to", "var/vrp.db"],
            site,
            **rebuilt,
        )
    )
    assert f"{TAKES} blobs written" in restored
    assert "up to date" in _ok(vrp(["db", "current"], site, **rebuilt))

    # 7. Serve the restored recordings: the same bytes as before the disaster.
    api = ApiProcess(site, **rebuilt)
    try:
        listing = requests.get(f"{api.url}/api/recordings", timeout=30)
        assert {r["id"] for r in listing.json()} == set(takes)
        for recording_id, sha256 in takes.items():
            audio = requests.get(f"{api.url}/api/recordings/{recording_id}/audio", timeout=30)
            assert audio.status_code == 200
            assert hashlib.sha256(audio.content).hexdigest() == sha256
    finally:
        api.stop()
