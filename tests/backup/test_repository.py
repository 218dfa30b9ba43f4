"""The backup folder is a repository made on purpose (``vrp backup init``), and an unusable or
missing one is one line, never a traceback and never a folder created on the wrong disk.

Every case runs the real ``vrp`` in a subprocess on a migrated recorder database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from backup.repository import MARKER

REPO = Path(__file__).resolve().parents[2]
_AS_USER = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    return {**env, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true", **extra}


def _vrp(
    cwd: Path, *args: str, as_nobody: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "recorder.cli", *args]
    if as_nobody:
        command = [*_AS_USER, *command]
    return subprocess.run(
        command, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=300
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 1 and exactly one line on stderr, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated recorder database (./var/vrp.db) with one backup in ./var/backups."""
    root = tmp_path_factory.mktemp("home")
    assert _vrp(root, "db", "upgrade").returncode == 0
    done = _vrp(root, "backup", "run", "--json")
    assert done.returncode == 0, done.stderr
    return root


COMMANDS = [
    ["backup", "run"],
    ["backup", "list"],
    ["backup", "list", "--json"],
    ["backup", "verify", "20261128T201500Z-3f9a1c"],
    ["backup", "prune"],
    ["backup", "prune", "--dry-run"],
    ["backup", "restore", "20261128T201500Z-3f9a1c", "--to", "restored.db"],
    ["scheduler"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_missing_backup_folder_is_refused_and_not_created(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    unmounted = tmp_path / "mnt" / "backups"

    line = _one_line(_vrp(home, *args, VRP_BACKUP_DIR=str(unmounted)))

    assert line.endswith(
        f"{unmounted} does not exist, so it is not a backup repository (is the backup disk "
        "mounted?); run `vrp backup init` to create one there"
    )
    assert not (tmp_path / "mnt").exists()


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_empty_mount_point_is_refused_and_nothing_is_written_into_it(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    mount_point = tmp_path / "backups"
    mount_point.mkdir()

    line = _one_line(_vrp(home, *args, VRP_BACKUP_DIR=str(mount_point)))

    assert line.endswith(
        f"{mount_point} is not a backup repository (no {MARKER}); run `vrp backup init` to "
        "make it one"
    )
    assert list(mount_point.iterdir()) == []


def test_init_creates_a_repository_with_an_id_and_a_format_then_runs_are_accepted(
    home: Path, tmp_path: Path
) -> None:
    backups = tmp_path / "disk" / "backups"

    made = _vrp(home, "backup", "init", "--json", VRP_BACKUP_DIR=str(backups))

    assert made.returncode == 0, made.stderr
    created = orjson.loads(made.stdout)
    marker = json.loads((backups / MARKER).read_text())
    assert created["id"] == marker["id"] and len(marker["id"]) == 32
    assert (created["format"], marker["format"], created["created"]) == (1, 1, True)
    assert (backups / MARKER).stat().st_mode & 0o777 == 0o600
    assert backups.stat().st_mode & 0o777 == 0o700
    again = _vrp(home, "backup", "init", VRP_BACKUP_DIR=str(backups))
    assert again.stdout.strip() == (
        f"{backups} is already a backup repository (id {marker['id']}); nothing changed"
    )
    run = _vrp(home, "backup", "run", "--json", VRP_BACKUP_DIR=str(backups))
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout)["repository_id"] == marker["id"]
    listed = _vrp(home, "backup", "list", "--json", VRP_BACKUP_DIR=str(backups))
    assert [b["id"] for b in orjson.loads(listed.stdout)] == [orjson.loads(run.stdout)["id"]]


def test_init_adopts_a_folder_of_older_backups_without_a_marker(home: Path) -> None:
    older = home / "var" / "backups"
    before = orjson.loads(_vrp(home, "backup", "list", "--json").stdout)
    (older / MARKER).unlink()  # as a version before repositories left it

    refused = _vrp(home, "backup", "list", VRP_BACKUP_DIR=str(older))
    adopted = _vrp(home, "backup", "init", VRP_BACKUP_DIR=str(older))

    assert "is not a backup repository" in _one_line(refused)
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout.startswith(f"adopted the backups in {older} as repository ")
    after = _vrp(home, "backup", "list", "--json", VRP_BACKUP_DIR=str(older))
    assert [b["id"] for b in orjson.loads(after.stdout)] == [b["id"] for b in before]
    assert len(before) == 1


def test_init_refuses_a_folder_holding_something_else(home: Path, tmp_path: Path) -> None:
    (tmp_path / "documents").mkdir()
    (tmp_path / "notes.txt").write_text("mine")

    line = _one_line(_vrp(home, "backup", "init", VRP_BACKUP_DIR=str(tmp_path)))

    assert line == (
        f"vrp: {tmp_path} is not empty and holds no backups (documents, notes.txt); a backup "
        "repository starts in an empty folder: choose another VRP_BACKUP_DIR"
    )
    assert not (tmp_path / MARKER).exists()


def test_the_default_folder_of_a_checkout_is_made_a_repository_on_first_use(
    tmp_path: Path,
) -> None:
    assert _vrp(tmp_path, "db", "upgrade").returncode == 0

    listed = _vrp(tmp_path, "backup", "list")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no backups yet; take one with `vrp backup run`"
    assert json.loads((tmp_path / "var" / "backups" / MARKER).read_text())["format"] == 1


@pytest.mark.parametrize(
    "args",
    [["backup", "run"], ["backup", "prune"], ["backup", "init"], ["scheduler"]],
    ids=" ".join,
)
def test_a_backup_folder_under_a_regular_file_is_one_line(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    blocking = tmp_path / "disk"
    blocking.write_text("a file where a folder should be")
    backups = blocking / "backups"

    line = _one_line(_vrp(home, *args, VRP_BACKUP_DIR=str(backups)))

    assert line.endswith(
        f"the backup folder {backups} cannot be used: {blocking} is a file, not a folder; "
        "set VRP_BACKUP_DIR to a folder this user can read and write"
    )


@pytest.mark.parametrize(
    ("args", "prefix"),
    [(["backup", "run"], "vrp: backup failed: "), (["backup", "prune"], "vrp: prune failed: ")],
)
def test_a_lock_that_cannot_be_opened_is_one_line(
    home: Path, tmp_path: Path, args: list[str], prefix: str
) -> None:
    backups = tmp_path / "backups"
    assert _vrp(home, "backup", "init", VRP_BACKUP_DIR=str(backups)).returncode == 0
    (backups / ".lock").mkdir()

    line = _one_line(_vrp(home, *args, VRP_BACKUP_DIR=str(backups)))

    assert line == (
        f"{prefix}the backup folder {backups} cannot be used: {backups / '.lock'}: it is a "
        "folder where a file belongs; set VRP_BACKUP_DIR to a folder this user can read and write"
    )
    assert not (backups / "runs").exists()


def _can_switch_user() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            "",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder that ``nobody`` may enter, outside pytest's private temp tree."""
    path = Path(tempfile.mkdtemp(prefix="vrp-eacces-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(not _can_switch_user(), reason="needs root and setpriv to run as nobody")
@pytest.mark.parametrize(
    "args", [["backup", "init"], ["backup", "run"], ["backup", "prune"], ["backup", "list"]]
)
def test_a_backup_folder_this_user_may_not_enter_is_one_line(
    home: Path, shared_dir: Path, args: list[str]
) -> None:
    private = shared_dir / "private"
    private.mkdir(mode=0o700)  # root's: nobody may not enter it
    backups = private / "backups"
    work = shared_dir / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)

    line = _one_line(
        _vrp(
            work,
            *args,
            as_nobody=True,
            VRP_BACKUP_DIR=str(backups),
            VRP_DATABASE_URL=f"sqlite:///{home / 'var' / 'vrp.db'}",
        )
    )

    assert line.endswith(
        f"the backup folder {backups} cannot be used: {backups / MARKER}: permission denied; "
        "set VRP_BACKUP_DIR to a folder this user can read and write"
    ) or line.endswith(
        f"the backup folder {backups} cannot be used: {private}: permission denied; "
        "set VRP_BACKUP_DIR to a folder this user can read and write"
    )


def test_status_names_the_repository_or_says_why_the_folder_is_not_one(
    home: Path, tmp_path: Path
) -> None:
    unmounted = tmp_path / "unmounted"
    backups = tmp_path / "backups"
    assert _vrp(home, "backup", "init", VRP_BACKUP_DIR=str(backups)).returncode == 0
    marker = json.loads((backups / MARKER).read_text())

    missing = _vrp(home, "backup", "status", VRP_BACKUP_DIR=str(unmounted))
    missing_json = _vrp(home, "backup", "status", "--json", VRP_BACKUP_DIR=str(unmounted))
    present = _vrp(home, "backup", "status", "--json", VRP_BACKUP_DIR=str(backups))

    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.splitlines()[1] == (
        f"repository: none: {unmounted} does not exist, so it is not a backup repository (is "
        "the backup disk mounted?); run `vrp backup init` to create one there"
    )
    assert orjson.loads(missing_json.stdout)["repository_id"] is None
    assert not unmounted.exists()
    status = orjson.loads(present.stdout)
    assert (status["repository_id"], status["repository_problem"]) == (marker["id"], None)


def test_vrp_up_refuses_a_backup_folder_it_cannot_make_a_repository(
    home: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dashboard_port = probe.getsockname()[1]
    blocking = tmp_path / "disk"
    blocking.write_text("a file where a folder should be")
    backups = blocking / "backups"

    result = _vrp(
        home, "up", "--port", "0", "--dashboard-port", str(dashboard_port),
        VRP_BACKUP_DIR=str(backups),
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith("{")] == [
        f"vrp: the backup folder {backups} cannot be used: {blocking} is a file, not a folder; "
        "set VRP_BACKUP_DIR to a folder this user can read and write"
    ]
