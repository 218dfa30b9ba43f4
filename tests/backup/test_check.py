""" "Verified" is a fact with a date, renewed from the data: verify --all, the periodic check,
and prune's proof of the backup it keeps.

The repository is made the way users make it: ``vrp db upgrade``, uploads to a real ``vrp api``
(some recordings sharing their audio), real ``vrp backup run`` processes.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import orjson
import pytest
import requests

from backup import checks
from backup.catalog import Catalog
from backup.check import in_slot, rotating_check
from backup.settings import load_backup_settings
from tests.backup.helpers import flip_byte
from tests.backup.vrp_process import ApiProcess, vrp
from tests.recorder.fixtures import make_wav

BACKUPS = 8


def _ok(result: object) -> str:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    return result.stdout  # type: ignore[attr-defined]


def _upload(url: str, number: int, freq: float) -> str:
    response = requests.post(
        f"{url}/api/recordings",
        data={"title": f"take {number}"},
        files={"file": (f"take-{number}.wav", make_wav(seconds=0.25, freq=freq), "audio/wav")},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["sha256"])


def _listed(cwd: Path) -> list[dict[str, object]]:
    return list(orjson.loads(_ok(vrp(["backup", "list", "--json"], cwd))))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``BACKUPS`` verified backups; every one references the shared blob returned, and each
    later backup references more audio (120 recordings in all)."""
    root = tmp_path_factory.mktemp("repository")
    _ok(vrp(["db", "upgrade"], root))
    api = ApiProcess(root)
    try:
        shared = ""
        for number in range(40):
            # one audio shared by every fourth recording, the others distinct
            sha256 = _upload(api.url, number, 440.0 if number % 4 == 0 else 200.0 + number)
            shared = sha256 if number % 4 == 0 else shared
        for index in range(BACKUPS):
            for number in range(10):
                _upload(api.url, 100 + index * 10 + number, 300.0 + index * 10 + number)
            _ok(vrp(["backup", "run"], root))
    finally:
        api.stop()
    return root, shared


@pytest.fixture
def repository(made: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the module's repository (and its app) that the test may damage."""
    root, shared = made
    copy = tmp_path / "app"
    shutil.copytree(root, copy, symlinks=True)
    return copy, shared


def _archived(cwd: Path, sha256: str) -> Path:
    return Catalog(cwd / "var" / "backups").blob_archive().path_for(sha256)


def test_a_damaged_shared_blob_fails_every_backup_that_references_it_in_verify_all(
    repository: tuple[Path, str],
) -> None:
    cwd, shared = repository
    assert [b["verified"] for b in _listed(cwd)] == [True] * BACKUPS
    flip_byte(_archived(cwd, shared), 30)

    checked = vrp(["backup", "verify", "--all"], cwd)

    assert checked.returncode == 1
    assert f"{BACKUPS} backup(s)" in checked.stderr and f"{BACKUPS} failed" in checked.stderr
    assert checked.stdout.count("FAILED") == BACKUPS
    assert checked.stdout.count(shared) >= BACKUPS
    listed = _listed(cwd)
    assert [b["verified"] for b in listed] == [False] * BACKUPS
    assert all(b["checked_at"] for b in listed)
    table = _ok(vrp(["backup", "list"], cwd))
    assert table.count("FAILED") == BACKUPS
    checked_at = datetime.fromisoformat(str(listed[-1]["checked_at"]))
    status = _ok(vrp(["backup", "status"], cwd))
    assert f"FAILED its check {checked_at:%Y-%m-%d %H:%M:%S} UTC" in status
    data = orjson.loads(_ok(vrp(["backup", "status", "--json"], cwd)))
    assert data["newest_backup"]["checked_at"] == listed[-1]["checked_at"]
    assert data["newest_verified_backup"] is None


def test_verify_of_one_backup_fails_the_others_that_share_its_damaged_blob(
    repository: tuple[Path, str],
) -> None:
    cwd, shared = repository
    flip_byte(_archived(cwd, shared), 30)

    newest = vrp(["backup", "verify"], cwd)

    assert newest.returncode == 1
    assert _listed(cwd)[-1]["id"] in newest.stderr
    assert [b["verified"] for b in _listed(cwd)] == [False] * BACKUPS


def test_verify_all_of_a_sound_repository_reads_each_blob_once_and_dates_every_backup(
    repository: tuple[Path, str],
) -> None:
    cwd, _ = repository
    before = {b["id"]: b["checked_at"] for b in _listed(cwd)}
    archived = Catalog(cwd / "var" / "backups").blob_archive().list_blobs()

    checked = _ok(vrp(["backup", "verify", "--all"], cwd))

    assert checked.splitlines()[-1] == (
        f"repository verified: {BACKUPS} backup(s), {len(archived)} blob(s) read: 0 failed"
    )
    after = {b["id"]: b["checked_at"] for b in _listed(cwd)}
    assert after.keys() == before.keys()
    assert all(str(after[i]) > str(before[i]) for i in after)


def test_a_hand_edited_check_record_does_not_read_as_verified(
    repository: tuple[Path, str],
) -> None:
    cwd, _ = repository
    newest = str(_listed(cwd)[-1]["id"])
    flip_byte(cwd / "var" / "backups" / "runs" / newest / "database.sqlite.zst", 200)
    assert vrp(["backup", "verify", newest], cwd).returncode == 1
    record = cwd / "var" / "backups" / "checks" / f"{newest}.json"
    record.write_bytes(record.read_bytes().replace(b'"ok": false', b'"ok": true'))

    assert _listed(cwd)[-1]["verified"] is False


def _forge_verified(record: Path) -> None:
    """Rewrite a failed check record as passed and sign it again, as a deliberate forger."""
    doc = orjson.loads(record.read_bytes())
    forged = checks.CheckRecord(
        backup_id=doc["backup_id"],
        manifest_sha256=doc["manifest_sha256"],
        ok=True,
        checked_at=datetime.fromisoformat(doc["checked_at"]),
        scope=doc["scope"],
    )
    record.write_bytes(forged.to_json())


KEEP_ONE = {
    "VRP_BACKUP_KEEP_LAST": "1",
    "VRP_BACKUP_KEEP_DAILY": "0",
    "VRP_BACKUP_KEEP_WEEKLY": "0",
    "VRP_BACKUP_KEEP_MONTHLY": "0",
}


def test_prune_proves_the_backup_it_keeps_and_falls_back_past_a_forged_flag(
    repository: tuple[Path, str],
) -> None:
    cwd, _ = repository
    ids = [str(b["id"]) for b in _listed(cwd)]
    # The two newest are damaged in their own snapshots; their records say verified anyway.
    for backup_id in ids[-2:]:
        flip_byte(cwd / "var" / "backups" / "runs" / backup_id / "database.sqlite.zst", 200)
        assert vrp(["backup", "verify", backup_id], cwd).returncode == 1
        _forge_verified(cwd / "var" / "backups" / "checks" / f"{backup_id}.json")
    assert [b["verified"] for b in _listed(cwd)] == [True] * BACKUPS

    _ok(vrp(["backup", "prune"], cwd, **KEEP_ONE))

    remaining = _listed(cwd)
    assert [b["id"] for b in remaining] == [ids[-3], ids[-1]]
    assert [b["verified"] for b in remaining] == [True, False]
    restored = vrp(["backup", "restore", ids[-3], "--to", str(cwd / "restored.db")], cwd)
    assert restored.returncode == 0, restored.stderr


def test_prune_deletes_nothing_when_no_backup_passes(repository: tuple[Path, str]) -> None:
    cwd, shared = repository
    flip_byte(_archived(cwd, shared), 30)
    before = [b["id"] for b in _listed(cwd)]

    refused = vrp(["backup", "prune"], cwd, **KEEP_ONE)

    assert refused.returncode == 1
    assert "no backup passes its check, so nothing was pruned" in refused.stderr
    assert [b["id"] for b in _listed(cwd)] == before
    assert _archived(cwd, shared).is_file()


def test_the_periodic_check_reads_the_whole_archive_once_every_n_runs_and_finds_damage(
    repository: tuple[Path, str],
) -> None:
    cwd, shared = repository
    settings = load_backup_settings(
        {"VRP_BACKUP_DIR": str(cwd / "var" / "backups"), "VRP_BACKUP_CHECK_ROTATION": "3"}
    )
    archived = Catalog(settings.backup_dir).blob_archive().list_blobs()
    flip_byte(_archived(cwd, shared), 30)
    results = [rotating_check(settings) for _ in range(3)]

    assert [r.slot for r in results] == [0, 1, 2]
    assert sum(r.blobs_read for r in results) == len(archived)
    assert sum(r.artifacts_read for r in results) == BACKUPS
    assert all(r.manifests == BACKUPS for r in results)
    [finder] = [r for r in results if not r.ok]
    assert in_slot(shared, finder.slot, 3)
    assert len(finder.failed_backups) == BACKUPS
    assert [b["verified"] for b in _listed(cwd)] == [False] * BACKUPS
    assert rotating_check(settings).slot == 0


def test_the_check_rotation_setting_is_validated(tmp_path: Path) -> None:
    result = vrp(["backup", "list"], tmp_path, VRP_BACKUP_CHECK_ROTATION="0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "vrp: invalid configuration: VRP_BACKUP_CHECK_ROTATION='0': "
        "Must be greater than or equal to 1 and less than or equal to 10000."
    ]


def test_verify_without_an_id_on_an_empty_repository_is_one_line(tmp_path: Path) -> None:
    _ok(vrp(["db", "upgrade"], tmp_path))
    result = vrp(["backup", "verify"], tmp_path)
    assert (result.returncode, result.stderr.splitlines()) == (
        1,
        ["vrp: no backups yet; take one with `vrp backup run`"],
    )
    both = vrp(["backup", "verify", "--all", "20261207T020000Z-abcdef"], tmp_path)
    assert both.returncode == 2 and "give a BACKUP_ID or --all, not both" in both.stderr
