"""An s3:// remote against a real S3-compatible server on loopback (moto's standalone server,
``moto_server``, spoken to over HTTP by s3fs and botocore as they speak to any S3 endpoint)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrage import x25519

from backup.offsite import copy_offsite, identities_for, opened
from backup.remote import fetch_backup, find_snapshot, init_remote, list_objects
from backup.remote_store import open_store
from backup.remote_verify import verify_snapshots
from backup.restore import plan_restore, restore_backup
from backup.run import run_backup
from backup.settings import load_backup_settings
from tests.backup.helpers import make_sqlite_app, repository_dir, sqlite_rows

pytest.importorskip("s3fs", reason="the s3 extra is not installed")
BUCKET = "vrp-offsite"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = shutil.which("moto_server")
    assert server is not None, "moto[server] is part of the test extra"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "vrp-test-access-key-id-0123456789")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vrp-test-secret-access-key-0123456789")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_copy_verify_and_restore_through_an_s3_remote(tmp_path: Path, s3_endpoint: str) -> None:
    identity = x25519.Identity.generate()
    (tmp_path / "r.pub").write_text(f"{identity.to_public()}\n")
    (tmp_path / "r.key").write_text(f"{identity}\n")
    settings = load_backup_settings(
        {
            "VRP_BACKUP_DIR": str(repository_dir(tmp_path / "backups")),
            "VRP_BACKUP_REMOTE": f"s3://{BUCKET}/stack-a",
            "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(tmp_path / "r.pub"),
            "VRP_BACKUP_REMOTE_IDENTITY_FILE": str(tmp_path / "r.key"),
            "VRP_BACKUP_REMOTE_TIMEOUT": "10",
        }
    )
    assert settings.remote is not None
    store = open_store(settings.remote)
    store.fs.mkdir(BUCKET)
    init_remote(store)
    app = make_sqlite_app(tmp_path / "app", rows=300, blobs=24, blob_bytes=256 * 1024)
    result = run_backup(settings, app)
    first = copy_offsite(settings)
    assert first.objects_sent == 24 + 1
    assert copy_offsite(settings).objects_sent == 0
    with opened(settings.remote) as remote:
        assert len(list_objects(remote)) == 25
        [report] = verify_snapshots(remote, identities_for(settings.remote))
        assert report.ok, report.problems
        elsewhere = repository_dir(tmp_path / "elsewhere" / "backups")
        fetch_backup(
            remote,
            find_snapshot(remote, result.backup_id),
            identities_for(settings.remote),
            elsewhere,
        )
    fresh = load_backup_settings({"VRP_BACKUP_DIR": str(elsewhere)})
    target = tmp_path / "elsewhere" / "app.db"
    restore_backup(
        fresh,
        plan_restore(
            fresh, result.backup_id, to_path=target, storage_dir=tmp_path / "elsewhere" / "audio"
        ),
    )
    assert sqlite_rows(target) == 300
    restored = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "elsewhere" / "audio").rglob("*")
        if p.is_file()
    )
    assert restored == sorted(p.name for p in app.storage_dir.rglob("*") if p.is_file())
