"""Offsite copies against a real OpenSSH server (see tests/backup/sftp_server.py), at real sizes:
hundreds of rows referencing MiB of audio, copied encrypted, incrementally, killed and resumed,
tampered with and found out, and restored from the remote alone into SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pyrage import x25519
from sqlalchemy.engine import make_url

from backup.catalog import Catalog
from backup.errors import BackupConfigError
from backup.offsite import connected, copy_offsite, identities_for, opened
from backup.remote import (
    DATA,
    fetch_backup,
    find_snapshot,
    init_remote,
    list_objects,
    list_snapshots,
)
from backup.remote_store import RemoteError, RemoteStore, open_store
from backup.remote_verify import verify_snapshots
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.settings import BackupSettings, load_backup_settings
from backup.source import BackupSource
from backup.status import format_status, read_status
from tests.backup.helpers import (
    flip_byte,
    make_sqlite_app,
    referenced_blobs,
    repository_dir,
    sqlite_rows,
    write_blob,
)
from tests.backup.sftp_server import SftpServer, running_sshd, sftp_server

__all__ = ["sftp_server"]

REPO = Path(__file__).resolve().parents[2]
ROWS = 400
BLOBS = 48
BLOB_BYTES = 128 * 1024  # 6 MiB of incompressible audio


def _keys(folder: Path) -> tuple[Path, Path]:
    """A fresh age key pair: (recipients file with the public key, identity file)."""
    identity = x25519.Identity.generate()
    public, private = folder / "backup.pub", folder / "backup.key"
    public.write_text(f"# offsite copy\n{identity.to_public()}\n")
    private.write_text(f"{identity}\n")
    private.chmod(0o600)
    return public, private


def _settings(root: Path, server: SftpServer, **extra: str) -> BackupSettings:
    public, private = _keys(root)
    env = {
        "VRP_BACKUP_DIR": str(repository_dir(root / "backups")),
        "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(public),
        "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(private),
        **server.env(),
        **extra,
    }
    return load_backup_settings(env, cwd=root)


@pytest.fixture
def app(tmp_path: Path) -> BackupSource:
    return make_sqlite_app(tmp_path, rows=ROWS, blobs=BLOBS, blob_bytes=BLOB_BYTES)


@pytest.fixture
def settings(tmp_path: Path, sftp_server: SftpServer) -> BackupSettings:
    settings = _settings(tmp_path, sftp_server)
    assert settings.remote is not None
    with connected(settings.remote) as store:
        init_remote(store)
    return settings


def _add_recording(app: BackupSource) -> str:
    sha = write_blob(app.storage_dir, os.urandom(BLOB_BYTES))
    engine = sa.create_engine(app.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO items (sha256, payload) VALUES (:s, x'00')"), {"s": sha})
    engine.dispose()
    return sha


def test_copy_sends_everything_once_then_only_the_new_recording(
    settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    run_backup(settings, app)
    first = copy_offsite(settings)
    assert len(first.snapshots_copied) == 1
    assert first.objects_sent == BLOBS + 1  # every blob and the database snapshot
    assert first.bytes_sent > BLOBS * BLOB_BYTES  # audio does not compress; age adds a header
    # Nothing on the remote is named for its content or the recordings.
    remote_root = sftp_server.root / "remote"
    names = {p.name for p in (remote_root / DATA).rglob("*") if p.is_file()}
    blob_names = {p.name for p in app.storage_dir.rglob("*") if p.is_file()}
    assert len(names) == BLOBS + 1 and not names & blob_names
    for path in (remote_root / DATA).rglob("*"):
        if path.is_file():
            assert path.read_bytes().startswith(b"age-encryption.org/v1\n")

    again = copy_offsite(settings)
    assert (again.snapshots_copied, again.objects_sent, again.bytes_sent) == ([], 0, 0)

    _add_recording(app)
    run_backup(settings, app)
    incremental = copy_offsite(settings)
    assert len(incremental.snapshots_copied) == 1
    assert incremental.objects_sent == 2  # the new blob and the new database snapshot
    assert incremental.objects_skipped == BLOBS
    with opened(settings.remote) as remote:  # type: ignore[arg-type]
        assert len(list_snapshots(remote)[0]) == 2
        assert len(list_objects(remote)) == BLOBS + 3


def test_an_object_deleted_on_the_remote_is_sent_again_with_the_next_backup(
    settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    run_backup(settings, app)
    copy_offsite(settings)
    # An audio blob's object (names reveal nothing; its size does: the blob and age's header).
    lost = next(
        p
        for p in (sftp_server.root / "remote" / DATA).rglob("*")
        if p.is_file() and BLOB_BYTES < p.stat().st_size < BLOB_BYTES + 4096
    )
    lost.unlink()

    _add_recording(app)
    run_backup(settings, app)
    result = copy_offsite(settings)

    # The new blob, the new database snapshot, and the blob whose object went missing.
    assert (len(result.snapshots_copied), result.objects_sent) == (1, 3)
    with opened(settings.remote) as remote:  # type: ignore[arg-type]
        reports = verify_snapshots(remote, identities_for(settings.remote), whole=True)  # type: ignore[arg-type]
    # The older backup names the lost object (verify says so); the newest is whole.
    assert [r.ok for r in reports] in ([False, True], [True, False])
    assert any(lost.name in str(problem) for r in reports for problem in r.problems)


def test_a_first_copy_sends_as_many_objects_at_once_as_its_concurrency_allows(
    tmp_path: Path, app: BackupSource, sftp_server: SftpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, sftp_server, VRP_BACKUP_REMOTE_CONCURRENCY="3")
    assert settings.remote is not None and settings.remote.concurrency == 3
    with connected(settings.remote) as store:
        init_remote(store)
    run_backup(settings, app)
    lock = threading.Lock()
    uploading: set[str] = set()
    most, threads = 0, set()
    real_write = RemoteStore.write

    def write(store: RemoteStore, name: str, data: bytes) -> None:
        nonlocal most
        with lock:
            uploading.add(name)
            most = max(most, len(uploading))
            threads.add(threading.get_ident())
            # The snapshot file is written when no object is under way, never beside one.
            assert not name.startswith("snapshots/") or uploading == {name}
        try:
            real_write(store, name, data)
        finally:
            with lock:
                uploading.discard(name)

    monkeypatch.setattr(RemoteStore, "write", write)
    result = copy_offsite(settings)
    assert result.objects_sent == BLOBS + 1
    assert most == 3 and len(threads) == 4  # three workers and the caller (the snapshot)
    with opened(settings.remote) as remote:
        [report] = verify_snapshots(remote, identities_for(settings.remote))
    assert report.ok, report.problems


def test_status_shows_the_age_of_the_newest_offsite_copy_per_remote(
    tmp_path: Path, settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    before = format_status(read_status(settings))
    assert f"offsite {sftp_server.url()}: no copy yet" in before[-1]
    run_backup(settings, app)
    result = copy_offsite(settings)
    usb = f"file://{tmp_path / 'usb'}"
    assert settings.remote is not None
    init_remote(open_store(settings.remote, usb))
    copy_offsite(settings, url=usb)
    status = read_status(settings)
    lines = format_status(status, datetime.now(UTC) + timedelta(hours=3))
    [backup_id] = result.snapshots_copied
    assert [c.remote for c in status.offsite] == [usb, sftp_server.url()]
    assert lines[-2:] == [
        f"offsite {copy.remote}: newest {backup_id} (3h 0m ago); last copy "
        f"{copy.copied_at.strftime('%Y-%m-%d %H:%M:%S UTC')} (3h 0m ago)"
        for copy in status.offsite
    ]
    offsite = status.to_json()["offsite"]
    assert [o["newest_backup"] for o in offsite] == [backup_id, backup_id]


COPY_CHILD = """
import sys
from backup.offsite import copy_offsite
from backup.settings import load_backup_settings
import json
env = json.loads(sys.argv[1])
copy_offsite(load_backup_settings(env))
"""


def test_a_copy_killed_midway_lists_only_complete_backups_and_a_rerun_resumes(
    tmp_path: Path, settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    import json

    run_backup(settings, app)
    for _ in range(3):
        _add_recording(app)
    run_backup(settings, app)
    env = {
        "VRP_BACKUP_DIR": str(settings.backup_dir),
        "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(tmp_path / "backup.pub"),
        **sftp_server.env(),
    }
    state_dir = settings.backup_dir / "remotes"
    data = sftp_server.root / "remote" / DATA
    child = subprocess.Popen(
        [sys.executable, "-c", COPY_CHILD, json.dumps(env)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true"},
    )
    deadline = time.monotonic() + 60
    sent = 0
    while time.monotonic() < deadline and child.poll() is None:
        sent = sum(1 for p in data.rglob("*") if p.is_file()) if data.is_dir() else 0
        if sent >= 12 and state_dir.is_dir() and any(state_dir.iterdir()):
            break
        time.sleep(0.005)
    assert child.poll() is None, "the copy finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()

    with opened(settings.remote) as remote:  # type: ignore[arg-type]
        snapshots, refused = list_snapshots(remote)
        objects = list_objects(remote)
    assert refused == []
    assert len(snapshots) < 2, "the copy was killed after it had finished"
    for snapshot in snapshots:  # only complete backups: every object they name is there
        assert all(objects.get(o.name) == o.bytes for o in snapshot.objects)
    assert not any(p.name.endswith(".part") for p in data.rglob("*"))

    resumed = copy_offsite(settings)
    assert resumed.objects_skipped > 0  # what the killed copy sent and recorded is not resent
    assert resumed.objects_sent < BLOBS + 3 + 2
    with opened(settings.remote) as remote:  # type: ignore[arg-type]
        assert [s.id for s in list_snapshots(remote)[0]] == [
            b.id for b in Catalog(settings.backup_dir).list()
        ]
        reports = verify_snapshots(remote, identities_for(settings.remote), whole=True)  # type: ignore[arg-type]
    assert [r.ok for r in reports] == [True, True], [r.problems for r in reports]


def test_a_flipped_byte_in_a_remote_blob_is_found_and_named(
    settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    result = run_backup(settings, app)
    copy_offsite(settings)
    assert settings.remote is not None
    identities = identities_for(settings.remote)
    with opened(settings.remote) as remote:
        snapshot = find_snapshot(remote, result.backup_id)
        from backup.remote import open_sealed

        sealed = open_sealed(snapshot, identities)
        victim_blob, victim_name = sorted(sealed.blobs.items())[7]
        path = sftp_server.root / "remote" / DATA / victim_name[:2] / victim_name
        flip_byte(path, 300)
        [report] = verify_snapshots(remote, identities)
    assert not report.ok
    [problem] = report.problems
    assert problem.file == f"{DATA}/{victim_name[:2]}/{victim_name}"
    assert problem.blob == victim_blob
    assert "checksum mismatch" in problem.message


def test_a_flipped_byte_with_a_matching_index_still_fails_decryption(
    settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    """Someone who changes an object and its recorded hash is caught by age's authentication."""
    import orjson

    result = run_backup(settings, app)
    copy_offsite(settings)
    assert settings.remote is not None
    snapshot_file = sftp_server.root / "remote" / "snapshots" / f"{result.backup_id}.json"
    doc = orjson.loads(snapshot_file.read_bytes())
    victim = doc["objects"][3]
    path = sftp_server.root / "remote" / DATA / victim["name"][:2] / victim["name"]
    flip_byte(path, -40)
    victim["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    snapshot_file.write_bytes(orjson.dumps(doc))
    with opened(settings.remote) as remote:
        [report] = verify_snapshots(remote, identities_for(settings.remote))
    assert not report.ok
    assert any(
        p.file.endswith(victim["name"]) and "cannot be decrypted" in p.message
        for p in report.problems
    ), report.problems


def test_restore_from_the_remote_alone_into_an_empty_folder_on_sqlite(
    tmp_path: Path, settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    result = run_backup(settings, app)
    copy_offsite(settings)
    # Another machine: an empty folder, the remote URL and the identity file, nothing else.
    elsewhere = tmp_path / "new-machine"
    elsewhere.mkdir()
    fresh = load_backup_settings(
        {
            "VRP_BACKUP_DIR": str(repository_dir(elsewhere / "backups")),
            "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(tmp_path / "backup.key"),
            **sftp_server.env(),
        }
    )
    assert fresh.remote is not None
    with opened(fresh.remote) as remote:
        fetch_backup(
            remote,
            find_snapshot(remote, result.backup_id),
            identities_for(fresh.remote),
            fresh.backup_dir,
        )
    plan = plan_restore(
        fresh,
        result.backup_id,
        to_path=elsewhere / "app.db",
        storage_dir=elsewhere / "storage",
    )
    restore_backup(fresh, plan)
    assert sqlite_rows(elsewhere / "app.db") == ROWS
    originals = _audio(app.storage_dir)
    assert len(originals) == BLOBS and _audio(elsewhere / "storage") == originals


def _audio(storage: Path) -> dict[str, str]:
    return {
        str(p.relative_to(storage)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in storage.rglob("*")
        if p.is_file()
    }


def test_a_host_key_missing_from_known_hosts_is_refused(
    tmp_path: Path, sftp_server: SftpServer
) -> None:
    other = tmp_path / "other_known_hosts"
    other.write_text("")
    settings = _settings(tmp_path, sftp_server, VRP_BACKUP_REMOTE_KNOWN_HOSTS=str(other))
    assert settings.remote is not None
    with pytest.raises(RemoteError, match=r"host key .* is not in .*other_known_hosts"):
        open_store(settings.remote)


def test_an_unreachable_remote_fails_only_the_copy_never_the_scheduled_backup(
    tmp_path: Path, app: BackupSource, caplog: pytest.LogCaptureFixture
) -> None:
    from backup.scheduler import backup_job
    from backup.telemetry import BackupTelemetry
    from instrumentation.testing import InMemoryTelemetry

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    public, _ = _keys(tmp_path)
    settings = load_backup_settings(
        {
            "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
            "VRP_BACKUP_REMOTE": f"sftp://backup:{'s3cr3t-' * 5}@127.0.0.1:{port}/srv/vrp",
            "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(public),
            "VRP_BACKUP_REMOTE_TIMEOUT": "2",
        }
    )
    telemetry = InMemoryTelemetry()
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    job = backup_job(settings, app, telemetry=tel, copy_attempts=2, copy_backoff_seconds=0.1)
    started = time.monotonic()
    result = job(lambda: False)
    assert time.monotonic() - started < 60
    assert result.verified and [b.id for b in Catalog(settings.backup_dir).list()] == [
        result.backup_id
    ]
    [copy_span] = telemetry.spans("backup.copy")
    assert copy_span.attributes["vrp.backup.status"] == "failed"
    assert (
        copy_span.attributes["vrp.backup.remote"] == f"sftp://backup:***@127.0.0.1:{port}/srv/vrp"
    )
    assert "s3cr3t" not in caplog.text
    assert "copy to the remote after the backup failed" in caplog.text
    assert not telemetry.metric_points("vrp.backup.remote.last_success")


def test_a_full_remote_fails_only_the_copy_and_lists_no_partial_backup(
    tmp_path: Path, app: BackupSource, caplog: pytest.LogCaptureFixture
) -> None:
    from backup.scheduler import backup_job

    # The remote takes the small objects but no file past 64 KiB: the audio blobs (128 KiB)
    # fail half-way through the copy, as on a disk that is full.
    with running_sshd(tmp_path / "sshd", tmp_path / "full", file_size_limit=64 * 1024) as server:
        settings = _settings(tmp_path, server, VRP_BACKUP_REMOTE_TIMEOUT="10")
        assert settings.remote is not None
        with connected(settings.remote) as store:
            init_remote(store)
        job = backup_job(settings, app, copy_attempts=2, copy_backoff_seconds=0.1)

        result = job(lambda: False)

        assert result.verified
        assert [b.id for b in Catalog(settings.backup_dir).list()] == [result.backup_id]
        assert "copy to the remote after the backup failed" in caplog.text
        with opened(settings.remote) as remote:
            snapshots, refused = list_snapshots(remote)
        assert (snapshots, refused) == ([], []), "no backup is listed until all of it is there"


def test_a_copy_reports_its_span_and_the_remote_last_success(
    settings: BackupSettings, app: BackupSource, sftp_server: SftpServer
) -> None:
    from backup.telemetry import BackupTelemetry
    from instrumentation.testing import InMemoryTelemetry

    telemetry = InMemoryTelemetry()
    tel = BackupTelemetry(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    run_backup(settings, app)
    before = time.time()
    copy_offsite(settings, telemetry=tel, identity={"vrp.backup.repository.id": "r1"})
    [span] = telemetry.spans("backup.copy")
    assert span.attributes["vrp.backup.status"] == "success"
    assert span.attributes["vrp.backup.copy.objects_sent"] == BLOBS + 1
    assert span.attributes["vrp.backup.remote"] == sftp_server.url()
    [point] = telemetry.metric_points("vrp.backup.remote.last_success")
    assert point.value >= before
    assert point.attributes["vrp.backup.remote"] == sftp_server.url()
    assert point.attributes["vrp.backup.repository.id"] == "r1"


def test_a_wrong_identity_file_is_one_clear_line(
    tmp_path: Path, settings: BackupSettings, app: BackupSource
) -> None:
    run_backup(settings, app)
    copy_offsite(settings)
    other = x25519.Identity.generate()
    wrong = tmp_path / "wrong.key"
    wrong.write_text(f"{other}\n")
    assert settings.remote is not None
    from dataclasses import replace

    remote = replace(settings.remote, identity_file=wrong)
    with opened(remote) as target:
        [report] = verify_snapshots(target, identities_for(remote))
    [problem] = report.problems
    assert problem.file.startswith("snapshots/")
    assert "identity file is not the key this remote was made for" in problem.message
    not_a_key = tmp_path / "public-as-identity.key"
    not_a_key.write_text((tmp_path / "backup.pub").read_text())
    with pytest.raises(BackupConfigError, match=r"VRP_BACKUP_REMOTE_IDENTITY_FILE=.*line 1"):
        identities_for(replace(settings.remote, identity_file=not_a_key))


# -- PostgreSQL ------------------------------------------------------------------------------------


def _pg(url: str) -> sa.Engine:
    return sa.create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), poolclass=sa.NullPool
    )


@pytest.fixture
def pg_app(postgres_url: str, tmp_path: Path) -> Iterator[BackupSource]:
    from tests.conftest import reset_postgres

    reset_postgres(postgres_url)
    storage = tmp_path / "storage"
    shas = [write_blob(storage, os.urandom(BLOB_BYTES)) for _ in range(BLOBS)]
    engine = _pg(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id serial PRIMARY KEY, sha256 text, note text)"))
        conn.execute(
            sa.text("INSERT INTO items (sha256, note) VALUES (:sha, :note)"),
            [{"sha": shas[i % BLOBS], "note": f"take {i}"} for i in range(ROWS)],
        )
    engine.dispose()
    yield BackupSource(postgres_url, storage, referenced_blobs)
    reset_postgres(postgres_url)


@pytest.mark.postgres
def test_restore_from_the_remote_alone_into_a_new_postgresql_database(
    tmp_path: Path, settings: BackupSettings, pg_app: BackupSource, sftp_server: SftpServer
) -> None:
    result = run_backup(settings, pg_app)
    copy_offsite(settings)
    elsewhere = tmp_path / "new-machine"
    fresh = load_backup_settings(
        {
            "VRP_BACKUP_DIR": str(repository_dir(elsewhere / "backups")),
            "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(tmp_path / "backup.key"),
            **sftp_server.env(),
        }
    )
    assert fresh.remote is not None
    with opened(fresh.remote) as remote:
        fetch_backup(
            remote,
            find_snapshot(remote, result.backup_id),
            identities_for(fresh.remote),
            fresh.backup_dir,
        )
    name = f"vrp_remote_restore_{uuid.uuid4().hex[:10]}"
    target = make_url(pg_app.database_url).set(database=name).render_as_string(False)
    try:
        plan = plan_restore(
            fresh, result.backup_id, database_url=target, storage_dir=elsewhere / "storage"
        )
        restore_backup(fresh, plan)
        engine = _pg(target)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM items")).scalar() == ROWS
        engine.dispose()
        assert _audio(elsewhere / "storage") == _audio(pg_app.storage_dir)
    finally:
        admin = _pg(pg_app.database_url).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_remote_that_accepts_but_never_answers_fails_within_its_timeout(
    tmp_path: Path, app: BackupSource
) -> None:
    public, _ = _keys(tmp_path)
    with socket.socket() as silent:  # accepts connections (the backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = load_backup_settings(
            {
                "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
                "VRP_BACKUP_REMOTE": f"sftp://backup@127.0.0.1:{port}/srv/vrp",
                "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(public),
                "VRP_BACKUP_REMOTE_TIMEOUT": "1",
            }
        )
        run_backup(settings, app)
        started = time.monotonic()
        with pytest.raises(RemoteError, match=f"127.0.0.1:{port}/srv/vrp"):
            copy_offsite(settings, attempts=2, backoff_seconds=0.1)
        assert time.monotonic() - started < 15
