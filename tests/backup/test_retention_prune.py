"""Prune on a real backup folder: manifests, a real blob archive, the real run lock.

Backups are laid down with the package's own manifest and blob archive code, at chosen dates
(a real run always starts "now"); ``test_scheduler_process.py`` prunes after real runs.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup import checks
from backup import manifest as manifests
from backup.catalog import LOCK, Catalog
from backup.cli import BackupHost, mount
from backup.errors import BackupLockedError
from backup.lock import run_lock
from backup.prune import prune
from backup.retention import RetentionPolicy, plan_retention
from backup.settings import BackupSettings
from backup.source import BackupSource
from backup.stream import StreamResult, compress_stream
from backup.telemetry import BackupTelemetry
from instrumentation.testing import InMemoryTelemetry
from tests.backup.helpers import repository_dir

CONTENTS = [f"audio blob {i}".encode() * 50 for i in range(8)]
SHAS = [hashlib.sha256(c).hexdigest() for c in CONTENTS]
START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
ROWS = 20


def _sqlite_snapshot(target: Path) -> StreamResult:
    """A real SQLite database of ``ROWS`` rows, compressed as a run stores its snapshot."""
    plain = target.with_name("snapshot.sqlite")
    connection = sqlite3.connect(plain)
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, payload BLOB)")
    connection.executemany("INSERT INTO items (payload) VALUES (?)", [(b"x" * 100,)] * ROWS)
    connection.commit()
    connection.close()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with plain.open("rb") as source:
            return compress_stream(source, fd, level=1)
    finally:
        os.close(fd)
        plain.unlink()


def lay_down_backup(
    backup_dir: Path, created_at: datetime, blob_indexes: list[int], *, verified: bool, n: int
) -> str:
    """A complete backup as a run leaves it: database artifact, blobs archived, manifest last."""
    backup_id = f"{created_at:%Y%m%dT%H%M%SZ}-{n:06x}"
    repository_dir(backup_dir)
    run_dir = backup_dir / "runs" / backup_id
    run_dir.mkdir(parents=True)
    database = run_dir / "database.sqlite.zst"
    snapshot = _sqlite_snapshot(database)
    archive = Catalog(backup_dir).blob_archive()
    source = backup_dir / "source"
    source.mkdir(exist_ok=True)
    for index in blob_indexes:
        path = source / SHAS[index]
        path.write_bytes(CONTENTS[index])
        archive.add(SHAS[index], [path], level=1)
    manifests.write(
        run_dir,
        manifests.Manifest(
            id=backup_id,
            created_at=created_at,
            finished_at=created_at + timedelta(seconds=5),
            trigger="schedule",
            engine="sqlite",
            database="sqlite:///vrp.db",
            artifacts=(
                manifests.Artifact(
                    path=database.name,
                    sha256=snapshot.stored_sha256,
                    bytes=snapshot.plain_bytes,
                    stored_bytes=snapshot.stored_bytes,
                ),
            ),
            blobs=tuple(
                manifests.BlobEntry(sha256=SHAS[i], bytes=len(CONTENTS[i]))
                for i in sorted(set(blob_indexes))
            ),
            stored_bytes=snapshot.stored_bytes,
            tables={"items": ROWS},
        ),
    )
    if verified:
        checks.record(backup_dir, run_dir, ok=True, scope=checks.SCOPE_BACKUP)
    return backup_id


def _settings(backup_dir: Path, policy: RetentionPolicy) -> BackupSettings:
    return BackupSettings(
        backup_dir=repository_dir(backup_dir),
        keep_last=policy.keep_last,
        keep_daily=policy.keep_daily,
        keep_weekly=policy.keep_weekly,
        keep_monthly=policy.keep_monthly,
    )


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_prune_removes_what_the_plan_drops_and_only_unreferenced_blobs(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    # one backup a day for ten days; blob 0 only in the oldest, blob 1 in all of them
    for day in range(10):
        lay_down_backup(
            backup_dir,
            START + timedelta(days=day),
            [1, 0] if day == 0 else [1, 2 + day % 3],
            verified=day == 2,
            n=day,
        )
    orphan = backup_dir / "source" / "orphan"
    orphan.write_bytes(CONTENTS[7])
    Catalog(backup_dir).blob_archive().add(SHAS[7], [orphan], level=1)  # a killed run's leftover
    policy = RetentionPolicy(keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0)

    result = prune(_settings(backup_dir, policy))

    catalog = Catalog(backup_dir)
    remaining = catalog.list()
    kept_ids = [b.id for b in remaining]
    assert kept_ids == [b.id for b in result.plan.kept]
    assert len(remaining) == 4, "the last 3 plus the newest verified (day 2)"
    assert remaining[0].created_at == START + timedelta(days=2)
    archived = catalog.blob_archive().list_blobs()
    assert archived == set().union(*(b.blobs for b in remaining))
    assert SHAS[0] not in archived and SHAS[7] not in archived
    assert len(result.deleted_backups) == 6
    assert result.deleted_blobs == 2
    assert result.freed_bytes > 0
    assert not any((backup_dir / "runs" / i).exists() for i in result.deleted_backups)

    again = prune(_settings(backup_dir, policy))
    assert again.deleted_backups == () and again.deleted_blobs == 0


def test_prune_reports_a_prune_phase_span(tmp_path: Path, telemetry: InMemoryTelemetry) -> None:
    backup_dir = tmp_path / "backups"
    for day in range(3):
        lay_down_backup(backup_dir, START + timedelta(days=day), [day], verified=False, n=day)
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    prune(_settings(backup_dir, RetentionPolicy(1, 0, 0, 0)), tel=tel)
    span = telemetry.span_named("backup.prune")
    assert span.attributes is not None
    assert span.attributes["vrp.backup.phase"] == "prune"
    assert span.attributes["vrp.backup.pruned"] == 2
    assert span.attributes["vrp.backup.pruned_blobs"] == 2


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    for day in range(5):
        lay_down_backup(backup_dir, START + timedelta(days=day), [day], verified=False, n=day)
    before = _files(backup_dir)
    result = prune(
        _settings(backup_dir, RetentionPolicy(1, 0, 0, 0)),
        dry_run=True,
    )
    assert result.dry_run
    assert len(result.plan.deleted) == 4
    assert len(result.plan.blobs_to_delete) == 4
    assert _files(backup_dir) == before


def test_prune_refuses_while_a_run_holds_the_lock(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    for day in range(3):
        lay_down_backup(backup_dir, START + timedelta(days=day), [day], verified=False, n=day)
    before = _files(backup_dir)
    with run_lock(backup_dir / LOCK), pytest.raises(BackupLockedError):
        prune(_settings(backup_dir, RetentionPolicy(1, 0, 0, 0)))
    after = _files(backup_dir)
    after.pop(LOCK, None)
    before.pop(LOCK, None)
    assert after == before


histories = st.lists(
    st.tuples(
        st.integers(0, 200 * 24),  # hours after START
        st.lists(st.integers(0, len(SHAS) - 1), max_size=3),
        st.booleans(),
    ),
    min_size=1,
    max_size=15,
    unique_by=lambda t: t[0],
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(1, 4),
    keep_daily=st.integers(0, 4),
    keep_weekly=st.integers(0, 3),
    keep_monthly=st.integers(0, 3),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories, policies)
def test_prune_on_disk_keeps_the_promises_and_is_idempotent(
    tmp_path_factory: pytest.TempPathFactory,
    history: list[tuple[int, list[int], bool]],
    policy: RetentionPolicy,
) -> None:
    backup_dir = tmp_path_factory.mktemp("prop") / "backups"
    for n, (hours, blobs, verified) in enumerate(sorted(history)):
        lay_down_backup(backup_dir, START + timedelta(hours=hours), blobs, verified=verified, n=n)
    catalog = Catalog(backup_dir)
    before = catalog.list()
    expected = plan_retention(before, policy, catalog.blob_archive().list_blobs())

    prune(_settings(backup_dir, policy))

    after = catalog.list()
    assert [b.id for b in after] == [b.id for b in expected.kept]
    verified = [b for b in before if b.verified]
    if verified:
        assert verified[-1].id in {b.id for b in after}
    archive = catalog.blob_archive()
    for backup in after:
        for sha in backup.blobs:
            assert archive.has(sha), f"{sha} referenced by {backup.id} was deleted"
    second = prune(_settings(backup_dir, policy))
    assert second.deleted_backups == () and second.deleted_blobs == 0


def _cli(backup_dir: Path, *args: str, **env: str) -> str:
    group = click.Group("vrp")
    source = BackupSource(database_url="sqlite:///unused.db", storage_dir=backup_dir / "audio")
    mount(group, BackupHost(source=lambda: source, process=lambda _: nullcontext()))
    env = {"VRP_BACKUP_DIR": str(repository_dir(backup_dir)), **env}
    result = CliRunner().invoke(group, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_dry_run_command_prints_every_decision_and_why_and_changes_nothing(
    tmp_path: Path,
) -> None:
    backup_dir = tmp_path / "backups"
    ids = [
        lay_down_backup(backup_dir, START + timedelta(days=day), [day], verified=day == 0, n=day)
        for day in range(4)
    ]
    before = _files(backup_dir)
    keep_one = {f"VRP_BACKUP_KEEP_{k}": "0" for k in ("DAILY", "WEEKLY", "MONTHLY")}
    output = _cli(backup_dir, "backup", "prune", "--dry-run", VRP_BACKUP_KEEP_LAST="1", **keep_one)
    assert _files(backup_dir) == before
    lines = output.splitlines()
    assert lines[0] == "policy: last 1, 0 daily, 0 weekly, 0 monthly"
    assert lines[1].startswith(f"keep   {ids[0]}") and lines[1].endswith("newest verified")
    for backup_id in ids[1:3]:
        [line] = [x for x in lines if backup_id in x]
        assert line.startswith("delete") and line.endswith("not among the last 1")
    [newest] = [x for x in lines if ids[3] in x]
    assert newest.startswith("keep") and newest.endswith("last 1 (#1)")
    assert lines[-1] == (
        "dry run: would delete 2 backup(s) and 2 unreferenced blob(s), keep 2; nothing was changed"
    )


def test_the_prune_command_deletes_and_says_what_it_freed(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    for day in range(3):
        lay_down_backup(backup_dir, START + timedelta(days=day), [day], verified=False, n=day)
    keep_two = {f"VRP_BACKUP_KEEP_{k}": "0" for k in ("DAILY", "WEEKLY", "MONTHLY")}
    output = _cli(backup_dir, "backup", "prune", VRP_BACKUP_KEEP_LAST="2", **keep_two)
    assert "deleted 1 backup(s) and 1 unreferenced blob(s), freed" in output.splitlines()[-1]
    assert len(Catalog(backup_dir).list()) == 2


def test_no_blob_is_pruned_while_a_manifest_cannot_be_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup_dir = tmp_path / "backups"
    lay_down_backup(backup_dir, START, [0], verified=True, n=0)
    damaged = lay_down_backup(backup_dir, START + timedelta(days=1), [1], verified=True, n=1)
    lay_down_backup(backup_dir, START + timedelta(days=2), [2], verified=True, n=2)
    manifest = backup_dir / "runs" / damaged / manifests.MANIFEST_NAME
    body = bytearray(manifest.read_bytes())
    body[len(body) // 2] ^= 0x01
    manifest.write_bytes(bytes(body))
    assert damaged not in [b.id for b in Catalog(backup_dir).list()]
    policy = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)

    result = prune(_settings(backup_dir, policy))

    assert len(result.deleted_backups) == 1, "the readable backup the policy drops still goes"
    assert result.deleted_blobs == 0
    assert {SHAS[0], SHAS[1], SHAS[2]} <= Catalog(backup_dir).blob_archive().list_blobs()
    assert any(damaged in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_prune_drops_the_check_records_of_backups_that_are_gone(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    kept = lay_down_backup(backup_dir, START, [0], verified=True, n=0)
    # A run killed between its verify and its publication leaves its record behind.
    killed = backup_dir / "tmp" / "20260302T020000Z-000009"
    killed.mkdir(parents=True)
    (killed / manifests.MANIFEST_NAME).write_bytes(
        (backup_dir / "runs" / kept / "manifest.json").read_bytes()
    )
    checks.record(backup_dir, killed, ok=True, scope=checks.SCOPE_RUN)

    prune(_settings(backup_dir, RetentionPolicy(1, 0, 0, 0)))

    assert sorted(p.name for p in (backup_dir / "checks").iterdir()) == [f"{kept}.json"]
    assert Catalog(backup_dir).get(kept).verified
