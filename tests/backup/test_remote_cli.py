"""``vrp backup`` with a file:// remote, in subprocesses, as the README's disaster-recovery
runbook uses it: key pair, remote, copy, then a new machine that has only the remote and the
private key restores everything."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from backup.offsite import copy_offsite, opened
from backup.remote import init_remote, list_objects, list_snapshots
from backup.remote_store import open_store
from backup.run import run_backup
from backup.settings import load_backup_settings
from tests.backup.helpers import flip_byte, make_sqlite_app, repository_dir
from tests.backup.recordings import fill_recordings
from tests.backup.test_cli import _ok, _vrp

RECORDINGS = 600


def _audio(storage: Path) -> dict[str, str]:
    return {
        str(p.relative_to(storage)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in storage.rglob("*")
        if p.is_file() and len(p.name) == 64
    }


def test_disaster_recovery_from_a_file_remote_with_only_the_private_key(tmp_path: Path) -> None:
    site, keys, offsite = tmp_path / "site", tmp_path / "keys", tmp_path / "offsite"
    site.mkdir()
    keys.mkdir()
    _ok(_vrp(site, "db", "upgrade"))
    fill_recordings(
        f"sqlite:///{site / 'var' / 'vrp.db'}", site / "var" / "recordings", recordings=RECORDINGS
    )
    made = _ok(_vrp(tmp_path, "backup", "keygen", "keys/backup.key"))
    assert "keys/backup.key.pub" in made and "AGE-SECRET-KEY" not in made
    assert (keys / "backup.key").stat().st_mode & 0o077 == 0
    remote = {
        "VRP_BACKUP_REMOTE": f"file://{offsite}",
        "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(keys / "backup.key.pub"),
    }
    assert "created backup remote" in _ok(_vrp(site, "backup", "init", "--remote", **remote))
    _ok(_vrp(site, "backup", "run", **remote))
    copied = _ok(_vrp(site, "backup", "copy", **remote))
    assert "copied 1 backup(s)" in copied
    [listed] = orjson.loads(_ok(_vrp(site, "backup", "list", "--remote", "--json", **remote)))
    backup_id = listed["id"]
    assert listed["verified"] is True
    # Nothing on the remote is readable without the key: no title, no file name.
    for path in offsite.rglob("*"):
        if path.is_file() and "data" in path.parts:
            assert b"Interview" not in path.read_bytes()
            assert path.read_bytes().startswith(b"age-encryption.org/v1\n")

    no_key = _vrp(site, "backup", "verify", "--remote", **remote)
    assert no_key.returncode == 2
    assert no_key.stderr.strip().splitlines() == [
        "vrp: invalid configuration: VRP_BACKUP_REMOTE_IDENTITY_FILE is not set; it must name "
        "the file holding the age private key (AGE-SECRET-KEY-1...)"
    ]
    public_as_key = _vrp(
        site,
        "backup",
        "verify",
        "--remote",
        **remote,
        VRP_BACKUP_REMOTE_IDENTITY_FILE=str(keys / "backup.key.pub"),
    )
    assert public_as_key.returncode == 2
    assert "is not an age private key" in public_as_key.stderr

    # The machine is lost. A new one has the remote and the private key, nothing else.
    new = tmp_path / "new-machine"
    new.mkdir()
    dr = {
        "VRP_BACKUP_REMOTE": f"file://{offsite}",
        "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(keys / "backup.key"),
    }
    assert "verified" in _ok(_vrp(new, "backup", "verify", "--remote", "--all", **dr))
    _ok(_vrp(new, "backup", "init", **dr))
    restored = _ok(
        _vrp(new, "backup", "restore", backup_id, "--from-remote", "--to", "var/vrp.db", **dr)
    )
    assert "20 blobs written" in restored
    assert "up to date" in _ok(_vrp(new, "db", "current"))
    assert _audio(new / "var" / "recordings") == _audio(site / "var" / "recordings")
    import sqlite3

    for folder in (site, new):
        connection = sqlite3.connect(folder / "var" / "vrp.db")
        assert connection.execute("SELECT count(*) FROM recordings").fetchone()[0] == RECORDINGS
        connection.close()

    victim = next(p for p in sorted((offsite / "data").rglob("*")) if p.is_file())
    flip_byte(victim, 100)
    damaged = _vrp(new, "backup", "verify", "--remote", "--all", **dr)
    assert damaged.returncode == 1
    assert f"data/{victim.parent.name}/{victim.name}: checksum mismatch" in damaged.stdout


def test_a_bad_remote_url_is_refused_in_one_line(tmp_path: Path) -> None:
    refused = _vrp(tmp_path, "backup", "copy", VRP_BACKUP_REMOTE="ftp://me:pw-is-secret@host/x")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("vrp: invalid configuration: VRP_BACKUP_REMOTE=")
    assert "sftp://user@host[:port]/path" in line and "pw-is-secret" not in line


def test_copy_without_a_recipients_file_is_one_line_exit_2(tmp_path: Path) -> None:
    _ok(_vrp(tmp_path, "db", "upgrade"))
    refused = _vrp(tmp_path, "backup", "copy", VRP_BACKUP_REMOTE=f"file://{tmp_path / 'off'}")
    assert refused.returncode == 2
    assert "VRP_BACKUP_REMOTE_RECIPIENTS_FILE is not set" in refused.stderr


def _file_settings(tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    from pyrage import x25519

    identity = x25519.Identity.generate()
    (tmp_path / "r.pub").write_text(f"{identity.to_public()}\n")
    return load_backup_settings(
        {
            "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
            "VRP_BACKUP_REMOTE": f"file://{tmp_path / 'offsite'}",
            "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(tmp_path / "r.pub"),
            **extra,
        }
    )


def test_remote_retention_keeps_the_newest_verified_copy_and_drops_unreferenced_objects(
    tmp_path: Path,
) -> None:
    settings = _file_settings(
        tmp_path,
        VRP_BACKUP_REMOTE_KEEP_LAST="1",
        VRP_BACKUP_REMOTE_KEEP_DAILY="0",
        VRP_BACKUP_REMOTE_KEEP_WEEKLY="0",
        VRP_BACKUP_REMOTE_KEEP_MONTHLY="0",
    )
    assert settings.remote is not None
    init_remote(open_store(settings.remote))
    app = make_sqlite_app(tmp_path / "app", rows=300, blobs=12, blob_bytes=64 * 1024)
    first = run_backup(settings, app)
    copy_offsite(settings)
    second = run_backup(settings, app)
    copy_offsite(settings)
    with opened(settings.remote) as remote:
        assert [s.id for s in list_snapshots(remote)[0]] == [second.backup_id]
        assert len(list_objects(remote)) == 12 + 1  # the first snapshot's database went
    unverified = run_backup(settings, app, verify=False)
    # The first backup, still local, is not sent again: the remote's retention would drop it.
    assert copy_offsite(settings).snapshots_copied == [unverified.backup_id]
    with opened(settings.remote) as remote:
        kept = {s.id: s.verified for s in list_snapshots(remote)[0]}
    # last 1 keeps the unverified newest; the newest verified copy is never deleted.
    assert kept == {second.backup_id: True, unverified.backup_id: False}
    assert first.backup_id not in kept


def test_a_remote_that_is_not_initialised_is_refused_with_what_to_run(tmp_path: Path) -> None:
    settings = _file_settings(tmp_path)
    assert settings.remote is not None
    from backup.remote import NotARemoteError

    with pytest.raises(NotARemoteError, match=r"vrp backup init --remote"):
        copy_offsite(replace(settings, remote=settings.remote))


def test_each_scheduled_run_copies_to_the_remote_inside_its_run_span(tmp_path: Path) -> None:
    from backup.scheduler import backup_job
    from backup.telemetry import BackupTelemetry
    from instrumentation.testing import InMemoryTelemetry

    settings = _file_settings(tmp_path)
    assert settings.remote is not None
    init_remote(open_store(settings.remote))
    telemetry = InMemoryTelemetry()
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    app = make_sqlite_app(tmp_path / "app", rows=300, blobs=12, blob_bytes=64 * 1024)
    job = backup_job(settings, app, telemetry=tel)
    first, second = job(lambda: False), job(lambda: False)
    # Nothing changed between the runs: the second copy sends no object, only its snapshot file.
    with opened(settings.remote) as remote:
        assert [s.id for s in list_snapshots(remote)[0]] == [first.backup_id, second.backup_id]
    copies = telemetry.spans("backup.copy")
    runs = {s.context.span_id for s in telemetry.spans("backup.run")}
    assert [c.attributes["vrp.backup.copy.objects_sent"] for c in copies] == [13, 0]
    assert all(c.parent is not None and c.parent.span_id in runs for c in copies)

    off = replace(settings, remote=replace(settings.remote, copy_after_run=False))
    third = backup_job(off, app, telemetry=tel)(lambda: False)
    with opened(settings.remote) as remote:
        assert third.backup_id not in {s.id for s in list_snapshots(remote)[0]}
    assert len(telemetry.spans("backup.copy")) == 2
