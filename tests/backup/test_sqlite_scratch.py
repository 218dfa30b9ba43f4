"""The SQLite engine's scratch copy is deleted while the artifact is synced, whatever fails."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from backup.engines.sqlite import _remove_while


def test_the_copy_is_gone_once_the_work_beside_it_is_done(tmp_path: Path) -> None:
    copy = tmp_path / "database.sqlite"
    copy.write_bytes(b"x" * 1_000_000)
    seen: list[bool] = []
    _remove_while(copy, lambda: seen.append(True))
    assert seen == [True]
    assert not copy.exists()


def test_a_failed_sync_is_raised_and_the_copy_is_still_deleted(tmp_path: Path) -> None:
    copy = tmp_path / "database.sqlite"
    copy.write_bytes(b"x")

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        _remove_while(copy, full_disk)
    assert raised.value.errno == errno.ENOSPC
    assert not copy.exists()


def test_a_copy_that_cannot_be_deleted_fails_after_the_work(tmp_path: Path) -> None:
    seen: list[bool] = []
    with pytest.raises(FileNotFoundError):
        _remove_while(tmp_path / "missing.sqlite", lambda: seen.append(True))
    assert seen == [True]
