"""``--json`` on ``vrp backup run``, ``verify``, ``prune`` and ``restore``: one JSON value on stdout
in the documented shape; a failure still exits non-zero with one line on stderr."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.backup.helpers import flip_byte

REPO = Path(__file__).resolve().parents[2]


def _vrp(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), OTEL_SDK_DISABLED="true", **extra)
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A migrated recorder database with a few thousand rows."""
    assert _vrp(tmp_path, "db", "upgrade").returncode == 0
    with sqlite3.connect(tmp_path / "var" / "vrp.db") as conn:
        conn.execute("CREATE TABLE filler (data BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", ((os.urandom(512),) for _ in range(4000)))
    conn.close()
    return tmp_path


def test_run_verify_prune_and_restore_print_their_documented_json(home: Path) -> None:
    first = _json(_vrp(home, "backup", "run", "--json"))
    second = _json(_vrp(home, "backup", "run", "--json"))

    assert set(first) == {
        "id", "repository_id", "path", "trigger", "files", "bytes", "stored_bytes",
        "blobs_copied", "blobs_skipped", "verified", "seconds",
    }  # fmt: skip
    assert (first["trigger"], first["verified"], first["files"]) == ("manual", True, 1)
    assert first["bytes"] > 2_000_000 and first["repository_id"] == second["repository_id"]

    verified = _json(_vrp(home, "backup", "verify", first["id"], "--json"))
    assert verified == {
        "id": first["id"],
        "ok": True,
        "files": 1,
        "bytes": verified["bytes"],
        "problems": [],
    }

    planned = _json(_vrp(home, "backup", "prune", "--dry-run", "--json", VRP_BACKUP_KEEP_LAST="1"))
    assert planned["dry_run"] is True
    assert [(b["id"], b["action"]) for b in planned["backups"]] == [
        (first["id"], "delete"),
        (second["id"], "keep"),
    ]
    assert planned["deleted_backups"] == [first["id"]] and planned["kept"] == 1
    assert all(isinstance(b["reasons"], list) and b["reasons"] for b in planned["backups"])

    target = home / "restored.db"
    restored = _json(_vrp(home, "backup", "restore", second["id"], "--to", str(target), "--json"))
    assert restored == {
        "id": second["id"],
        "engine": "sqlite",
        "target": str(target),
        "replaced": None,
        "storage_dir": str(home / "var" / "recordings"),
        "blobs_written": 0,
        "blobs_kept": 0,
    }
    assert target.is_file()

    pruned = _json(
        _vrp(
            home, "backup", "prune", "--json",
            VRP_BACKUP_KEEP_LAST="1", VRP_BACKUP_KEEP_DAILY="0", VRP_BACKUP_KEEP_WEEKLY="0",
            VRP_BACKUP_KEEP_MONTHLY="0",
        )
    )  # fmt: skip
    assert pruned["dry_run"] is False
    assert pruned["deleted_backups"] == [first["id"]] and pruned["freed_bytes"] > 0
    listed = _json(_vrp(home, "backup", "list", "--json"))
    assert [b["id"] for b in listed] == [second["id"]]


def test_verify_all_prints_one_json_document_and_list_shows_when_each_was_checked(
    home: Path,
) -> None:
    backup = _json(_vrp(home, "backup", "run", "--json"))

    checked = _json(_vrp(home, "backup", "verify", "--all", "--json"))

    assert (checked["ok"], checked["unreadable"]) == (True, [])
    assert [(b["id"], b["ok"]) for b in checked["backups"]] == [(backup["id"], True)]
    [listed] = _json(_vrp(home, "backup", "list", "--json"))
    assert listed["verified"] is True and listed["checked_at"] is not None


def test_a_failed_verify_prints_its_report_and_one_line_and_exits_1(home: Path) -> None:
    backup = _json(_vrp(home, "backup", "run", "--json"))
    artifact = Path(backup["path"]) / "database.sqlite.zst"
    flip_byte(artifact, 100)

    result = _vrp(home, "backup", "verify", backup["id"], "--json")

    assert result.returncode == 1
    report = orjson.loads(result.stdout)
    assert report["ok"] is False and report["id"] == backup["id"]
    [problem] = [p for p in report["problems"] if p["file"].endswith("database.sqlite.zst")]
    assert set(problem) == {"file", "message", "expected_sha256", "actual_sha256"}
    assert [line for line in result.stderr.splitlines() if not line.startswith("{")] == [
        f"vrp: backup {backup['id']} failed verification: {len(report['problems'])} problem(s)"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["backup", "run", "--json"],
        ["backup", "verify", "20261128T201500Z-3f9a1c", "--json"],
        ["backup", "prune", "--json"],
        ["backup", "restore", "20261128T201500Z-3f9a1c", "--to", "x.db", "--json"],
    ],
    ids=lambda args: args[1],
)
def test_errors_in_json_mode_are_one_line_on_stderr_and_nothing_on_stdout(
    home: Path, tmp_path: Path, args: list[str]
) -> None:
    result = _vrp(home, *args, VRP_BACKUP_DIR=str(tmp_path / "unmounted"))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"vrp: {tmp_path / 'unmounted'} does not exist, so it is not a backup repository (is the "
        "backup disk mounted?); run `vrp backup init` to create one there"
    ]
