"""``/api/backups`` shows the age of the newest offsite copy beside the local backup's, per
repository, from ``vrp.backup.remote.last_success`` as :mod:`backup.offsite` reports it (the
backup package's own telemetry on real SDK providers, exported over OTLP/HTTP)."""

from __future__ import annotations

import time

from tests.dashboard.conftest import Live
from tests.dashboard.test_backup_repositories import STACK_A, STACK_B, _iso, _process

REMOTE = "sftp://backup:s3cr3t-password-of-the-offsite-host@vault.example:2222/srv/vrp"
SHOWN = "sftp://backup:***@vault.example:2222/srv/vrp"


def test_the_newest_offsite_copy_is_shown_beside_the_local_backup(live: Live) -> None:
    now = time.time()
    local, old_copy, new_copy = now - 600, now - 5 * 3600, now - 900
    with _process(live.url, "vrp-scheduler") as scheduler:
        scheduler.run("scheduled", "schedule", STACK_A, local)
        scheduler.telemetry.record_copy_success(REMOTE, old_copy, STACK_A)
        scheduler.telemetry.record_copy_success("file:///mnt/usb/vrp", new_copy, STACK_A)
        scheduler.export()
        scheduler.run("scheduled-b", "schedule", STACK_B, local)
        scheduler.export()

    chosen = live.get("/api/backups", repository="a" * 32)
    assert chosen["last_success"] == _iso(local)
    assert chosen["offsite_last_success"] == _iso(new_copy)
    assert 800 < chosen["offsite_last_success_age_s"] < 1200
    [summary] = [r for r in chosen["repositories"] if r["repository_id"] == "a" * 32]
    assert [r["remote"] for r in summary["remotes"]] == ["file:///mnt/usb/vrp", SHOWN]
    assert summary["remotes"][1]["last_success"] == _iso(old_copy)
    # A repository that copies nowhere says so: no offsite copy, not a stale one.
    other = live.get("/api/backups", repository="b" * 32)
    assert other["offsite_last_success"] is None and other["offsite_last_success_age_s"] is None
