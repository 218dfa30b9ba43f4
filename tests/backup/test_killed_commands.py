"""Real ``vrp`` processes killed with SIGKILL in the middle of a run, a verify or a restore of a
recorder database of more than 50 MB: what they leave is in the repository's ``tmp/`` (never
the system temp folder) or hidden beside the restore target, and the next command removes it,
and only it (a live command's scratch stays)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from benchmarks.backup import build_database
from tests.backup.helpers import repository_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DB_MB = 56
BIG = 1024 * 1024


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """A migrated recorder database of more than 50 MB (built once: it takes seconds)."""
    env, path = build_database(tmp_path_factory.mktemp("recorder"), DB_MB)
    assert path.stat().st_size > 50 * 1024 * 1024
    return env, path


@pytest.fixture
def env(database: tuple[dict[str, str], Path], tmp_path: Path) -> dict[str, str]:
    """The recorder's environment with a backup folder and a system temp folder of this test."""
    (tmp_path / "system-tmp").mkdir()
    return {
        **database[0],
        "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
        "TMPDIR": str(tmp_path / "system-tmp"),
        "OTEL_SDK_DISABLED": "true",
    }


def _vrp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(process: subprocess.Popen[bytes], found: Callable[[], Path | None]) -> Path:
    """Poll until ``found`` names a file (the step to interrupt has begun)."""
    deadline = time.monotonic() + 120
    while True:
        path = found()
        if path is not None:
            return path
        assert process.poll() is None, "the command ended before reaching the step"
        assert time.monotonic() < deadline, "the command never reached the step"
        time.sleep(0.005)


def _growing(folder: Path, pattern: str) -> Callable[[], Path | None]:
    """The first file matching ``pattern`` under ``folder`` that holds more than 1 MiB."""

    def found() -> Path | None:
        for path in folder.glob(pattern):
            try:
                if path.stat().st_size > BIG:
                    return path
            except FileNotFoundError:
                continue
        return None

    return found


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _backups(env: dict[str, str]) -> list[dict[str, object]]:
    listed = _vrp(env, "backup", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return orjson.loads(listed.stdout)


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _rows(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM recordings").fetchone()[0]
    finally:
        connection.close()


@pytest.mark.parametrize("step", ["snapshot", "verify"])
@pytest.mark.parametrize("next_command", ["run", "prune"])
def test_a_killed_run_leaves_its_files_in_the_repository_only_and_the_next_command_removes_them(
    env: dict[str, str], tmp_path: Path, step: str, next_command: str
) -> None:
    backups = tmp_path / "backups"
    pattern = "tmp/2*/database.sqlite" if step == "snapshot" else "tmp/verify-*/database.sqlite"
    run = _start(env, "backup", "run")
    _wait_for(run, _growing(backups, pattern))
    _kill(run)

    assert _backups(env) == []
    assert _everything(tmp_path / "system-tmp") == []
    assert any(backups.glob(pattern))

    if next_command == "run":
        done = _vrp(env, "backup", "run")
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stdout and "not verified" not in done.stdout
        assert len(_backups(env)) == 1
    else:
        done = _vrp(env, "backup", "prune")
        assert done.returncode == 0, done.stderr
        assert _backups(env) == []
    assert "left by an interrupted backup command" in done.stderr
    assert _everything(backups / "tmp") == []
    assert _everything(tmp_path / "system-tmp") == []


def test_a_killed_verify_is_cleaned_up_by_the_next_prune_and_a_live_one_is_left_alone(
    env: dict[str, str], tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    taken = _vrp(env, "backup", "run", "--no-verify")
    assert taken.returncode == 0, taken.stderr
    (backup_id,) = [entry["id"] for entry in _backups(env)]
    assert isinstance(backup_id, str)

    killed = _start(env, "backup", "verify", backup_id)
    dead_copy = _wait_for(killed, _growing(backups, "tmp/verify-*/database.sqlite"))
    _kill(killed)
    assert _everything(tmp_path / "system-tmp") == []

    live = _start(env, "backup", "verify", backup_id)
    live_copy = _wait_for(live, _growing(backups, f"tmp/verify-{live.pid}-*/database.sqlite"))
    live.send_signal(signal.SIGSTOP)
    try:
        pruned = _vrp(env, "backup", "prune")
        ran = _vrp(env, "backup", "run", "--no-verify")
    finally:
        live.send_signal(signal.SIGCONT)
    assert pruned.returncode == 0, pruned.stderr
    assert ran.returncode == 0, ran.stderr
    assert not dead_copy.parent.exists()
    assert live_copy.is_file()

    assert live.wait(timeout=300) == 0
    assert _everything(backups / "tmp") == []
    assert _everything(tmp_path / "system-tmp") == []


def test_a_killed_restore_is_cleaned_up_by_the_next_restore_to_the_same_target(
    env: dict[str, str], database: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    taken = _vrp(env, "backup", "run")  # verified: VRP_BACKUP_VERIFY is on by default
    assert taken.returncode == 0, taken.stderr
    assert ", verified, " in taken.stdout
    (backup_id,) = [entry["id"] for entry in _backups(env)]
    assert isinstance(backup_id, str)
    target = tmp_path / "restored" / "vrp.db"
    audio = tmp_path / "restored-audio"
    restore = ["backup", "restore", backup_id, "--to", str(target), "--storage-dir", str(audio)]

    partials = []
    for _ in range(2):  # the second dead restore removes what the first left
        killed = _start(env, *restore)
        partials.append(
            _wait_for(killed, _growing(target.parent, f".vrp.db.restore-{killed.pid}-*"))
        )
        _kill(killed)
        assert _everything(target.parent) == [partials[-1].name]

    done = _vrp(env, *restore)

    assert done.returncode == 0, done.stderr
    assert "left by an interrupted restore" in done.stderr
    assert _everything(target.parent) == ["vrp.db"]
    assert _rows(target) == _rows(database[1])
    assert _everything(tmp_path / "system-tmp") == []
