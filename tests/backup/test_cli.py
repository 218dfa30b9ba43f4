"""``vrp backup`` end to end, in subprocesses, with the defaults, from an empty working folder."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.backup.helpers import flip_byte

REPO = Path(__file__).resolve().parents[2]
HEAVY_MODULES = ("waitress", "flask", "opentelemetry.sdk", "sqlalchemy", "alembic", "zstandard")

UPLOAD = """
import io, sys
from recorder.api import create_app
from recorder.config import load_settings
from tests.recorder.fixtures import make_wav

app = create_app(load_settings())
client = app.test_client()
for freq in (440, 660):
    wav = make_wav(seconds=0.2, freq=freq)
    answer = client.post(
        "/api/recordings",
        data={"file": (io.BytesIO(wav), f"tone-{freq}.wav"), "title": f"tone {freq}"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRP_", "OTEL_"))}
    return {**env, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true", **extra}


def _vrp(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_upgrade_upload_backup_list_verify_restore_with_the_defaults(tmp_path: Path) -> None:
    _ok(_vrp(tmp_path, "db", "upgrade"))
    upload = subprocess.run(
        [sys.executable, "-c", UPLOAD], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert upload.returncode == 0, upload.stderr

    ran = _ok(_vrp(tmp_path, "backup", "run"))
    assert "2 blobs copied" in ran and "verified" in ran
    (listed,) = orjson.loads(_ok(_vrp(tmp_path, "backup", "list", "--json")))
    backup_id = listed["id"]
    assert ran.startswith(f"backup {backup_id}:")
    assert listed["verified"] is True and listed["blobs"] == 2 and listed["engine"] == "sqlite"
    assert Path(listed["path"]) == tmp_path / "var" / "backups" / "runs" / backup_id
    assert backup_id in _ok(_vrp(tmp_path, "backup", "list"))
    assert "verified" in _ok(_vrp(tmp_path, "backup", "verify", backup_id))

    restored = _ok(
        _vrp(
            tmp_path,
            "backup",
            "restore",
            backup_id,
            "--to",
            "restored/vrp.db",
            "--storage-dir",
            "restored/recordings",
        )
    )
    assert "2 blobs written" in restored
    current = _vrp(tmp_path, "db", "current", VRP_DATABASE_URL="sqlite:///restored/vrp.db")
    assert current.returncode == 0 and "up to date" in current.stdout, current.stdout
    originals = sorted(p for p in (tmp_path / "var" / "recordings").rglob("*") if p.is_file())
    for blob in (p for p in originals if len(p.name) == 64):
        copy = (
            tmp_path / "restored" / "recordings" / blob.relative_to(tmp_path / "var" / "recordings")
        )
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == blob.name

    refused = _vrp(tmp_path, "backup", "restore", backup_id, "--to", "var/vrp.db")
    assert refused.returncode == 1
    assert "LIVE database" in refused.stderr and "--force" in refused.stderr

    blob = next((tmp_path / "var" / "backups" / "blobs").rglob("*.zst"))
    flip_byte(blob, 20)
    damaged = _vrp(tmp_path, "backup", "verify", backup_id)
    assert damaged.returncode == 1
    assert blob.name in damaged.stdout and "expected sha256" in damaged.stdout
    assert orjson.loads(_ok(_vrp(tmp_path, "backup", "list", "--json")))[0]["verified"] is False


def test_a_bad_backup_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = _vrp(tmp_path, "backup", "list", VRP_BACKUP_COMPRESSION_LEVEL="99")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "VRP_BACKUP_COMPRESSION_LEVEL='99'" in result.stderr


def test_an_unknown_backup_id_exits_1(tmp_path: Path) -> None:
    result = _vrp(tmp_path, "backup", "verify", "20260101T000000Z-abcdef")
    assert result.returncode == 1
    assert "no complete backup" in result.stderr


@pytest.mark.parametrize("args", [["backup", "--help"], ["backup", "run", "--help"]])
def test_backup_help_imports_no_heavy_module(tmp_path: Path, args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from recorder.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert "Usage: " in result.stdout
    assert result.stderr == "[]"


@pytest.mark.parametrize("content", ["empty-file", "other-tables"])
def test_backup_run_on_an_unmigrated_database_is_one_line_and_changes_nothing(
    tmp_path: Path, content: str
) -> None:
    import sqlite3

    database = tmp_path / "var" / "vrp.db"
    database.parent.mkdir()
    database.touch()
    if content == "other-tables":
        connection = sqlite3.connect(database)
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.commit()
        connection.close()
    before = (database.read_bytes(), database.stat().st_mtime_ns)

    result = _vrp(tmp_path, "backup", "run")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("vrp:")]
    assert line == (
        f"vrp: backup failed: the database {database} is not migrated (no recordings table); "
        "run `vrp db upgrade` first"
    )
    assert (database.read_bytes(), database.stat().st_mtime_ns) == before
    assert [p.name for p in database.parent.iterdir() if p.name.startswith("vrp.db")] == ["vrp.db"]
    assert "no backups yet" in _ok(_vrp(tmp_path, "backup", "list"))
