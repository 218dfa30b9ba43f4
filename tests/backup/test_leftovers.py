"""What a live process holds in ``tmp/`` or beside a restore target is left alone; what a
process killed with SIGKILL left there is removed by the next cleaner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from backup import partials, scratch

REPO = Path(__file__).resolve().parents[2]

HOLD_SCRATCH = """
import sys, time
from pathlib import Path
from backup.scratch import scratch_folder

with scratch_folder(Path(sys.argv[1]), "verify") as folder:
    (folder / "database.sqlite").write_bytes(b"x" * 100_000)
    print(folder, flush=True)
    time.sleep(3600)
"""

HOLD_PARTIAL = """
import os, sys, time
from pathlib import Path
from backup import partials

path, fd = partials.claim(Path(sys.argv[1]))
os.write(fd, b"x" * 100_000)
Path(str(path) + "-wal").write_bytes(b"wal")
print(path, flush=True)
time.sleep(3600)
"""


def _holder(code: str, argument: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(argument)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def hold_partial(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another process that claimed a partial file beside ``target`` and holds it."""
    return _holder(HOLD_PARTIAL, target)


def _sigkill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_live_scratch_folder_stays_and_a_dead_ones_goes(tmp_path: Path) -> None:
    tmp = tmp_path / "backups" / "tmp"
    live, live_folder = _holder(HOLD_SCRATCH, tmp)
    dead, dead_folder = _holder(HOLD_SCRATCH, tmp)
    run_folder = tmp / "20261207T020000Z-abcdef"  # a killed run's folder
    run_folder.mkdir()
    (run_folder / "database.sqlite.zst").write_bytes(b"z")
    try:
        _sigkill(dead)
        removed = scratch.remove_dead(tmp)
        assert sorted(removed) == sorted([dead_folder, run_folder])
        assert sorted(tmp.iterdir()) == [live_folder]
        assert (live_folder / "database.sqlite").stat().st_size == 100_000
    finally:
        _sigkill(live)
    assert scratch.remove_dead(tmp) == [live_folder]
    assert list(tmp.iterdir()) == []


def test_a_scratch_folder_made_an_instant_ago_by_a_live_process_stays(tmp_path: Path) -> None:
    """Between its mkdir and its lock a folder is named after a pid that runs."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        folder = tmp_path / f"verify-{sleeper.pid}-0123456789ab"
        folder.mkdir()
        assert scratch.remove_dead(tmp_path) == []
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        assert scratch.remove_dead(tmp_path) == [folder]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_live_restores_partial_file_stays_and_a_dead_ones_goes(tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    live, live_partial = hold_partial(target)
    dead, dead_partial = hold_partial(target)
    orphan = tmp_path / ".restored.db.restore-1-0123456789ab-shm"  # its database is gone
    orphan.write_bytes(b"shm")
    unrelated = tmp_path / ".other.db.restore-1-0123456789ab"
    unrelated.write_bytes(b"not ours to judge")
    try:
        assert live_partial.name.startswith(".restored.db.restore-")
        _sigkill(dead)
        assert sorted(partials.remove_dead(target)) == sorted([dead_partial, orphan])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [live_partial.name, live_partial.name + "-wal", unrelated.name]
        )
    finally:
        _sigkill(live)
    assert partials.remove_dead(target) == [live_partial]
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]
