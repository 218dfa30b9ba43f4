from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from recorder import storage
from recorder.audio import HEAD_BYTES
from recorder.errors import NotFoundError, PayloadTooLargeError, StorageError
from recorder.storage import CHUNK_BYTES, BlobStore

MAX_BYTES = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "recordings", max_bytes=MAX_BYTES)


def payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class CountingStream(io.RawIOBase):
    """An endless upload that records how much was read from it."""

    def __init__(self) -> None:
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        buffer[:] = b"x" * len(buffer)
        self.delivered += len(buffer)
        return len(buffer)


class TrickleStream(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


def test_put_stores_content_at_two_level_fan_out_of_its_sha256(store: BlobStore) -> None:
    data = payload(200_000)
    digest = hashlib.sha256(data).hexdigest()

    blob = store.put(io.BytesIO(data))

    assert blob.sha256 == digest
    assert blob.size == len(data)
    assert blob.created is True
    assert blob.path == store.root / digest[:2] / digest[2:4] / digest
    assert blob.path.read_bytes() == data
    assert store.path_for(digest) == blob.path
    assert files_under(store.root) == [blob.path]


def test_identical_upload_is_stored_once(store: BlobStore) -> None:
    data = payload(5000)

    first = store.put(io.BytesIO(data))
    second = store.put(io.BytesIO(data))

    assert (first.created, second.created) == (True, False)
    assert second.path == first.path
    assert second.sha256 == first.sha256
    assert files_under(store.root) == [first.path]


def test_different_content_goes_to_different_paths(store: BlobStore) -> None:
    one = store.put(io.BytesIO(payload(5000, seed=1)))
    two = store.put(io.BytesIO(payload(5000, seed=2)))

    assert one.path != two.path
    assert files_under(store.root) == sorted([one.path, two.path])


def test_head_holds_the_first_bytes_even_from_a_trickling_stream(store: BlobStore) -> None:
    data = payload(3 * HEAD_BYTES)

    blob = store.put(TrickleStream(data, step=100))

    assert blob.head == data[:HEAD_BYTES]
    assert blob.path.read_bytes() == data


def test_head_of_a_short_upload_is_all_of_it(store: BlobStore) -> None:
    assert store.put(io.BytesIO(b"RIFF")).head == b"RIFF"


def test_upload_of_exactly_max_bytes_is_accepted(store: BlobStore) -> None:
    assert store.put(io.BytesIO(payload(MAX_BYTES))).size == MAX_BYTES


def test_oversized_upload_aborts_early_and_leaves_nothing(store: BlobStore) -> None:
    endless = CountingStream()

    with pytest.raises(PayloadTooLargeError, match=str(MAX_BYTES)):
        store.put(io.BufferedReader(endless, buffer_size=CHUNK_BYTES))

    assert endless.delivered <= MAX_BYTES + 2 * CHUNK_BYTES
    assert files_under(store.root) == []


def test_one_byte_over_the_limit_is_rejected(store: BlobStore) -> None:
    with pytest.raises(PayloadTooLargeError):
        store.put(io.BytesIO(payload(MAX_BYTES + 1)))

    assert files_under(store.root) == []


class DiskFillsUp:
    """Stands in for the temp file: takes ``room`` bytes, then fails like a full disk."""

    def __init__(self, real: BinaryIO, room: int) -> None:
        self._real = real
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._real.write(data[: self._room])
            self._real.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._real.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def __enter__(self) -> DiskFillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


def test_full_disk_mid_write_raises_storage_error_and_leaves_no_partial_file(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(
        storage.os, "fdopen", lambda fd, mode: DiskFillsUp(real_fdopen(fd, mode), room=100_000)
    )

    with pytest.raises(StorageError, match="free disk space") as caught:
        store.put(io.BytesIO(payload(300_000)))

    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert files_under(store.root) == []


def test_full_disk_at_fsync_raises_storage_error_and_leaves_no_partial_file(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync_on_full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.os, "fsync", fsync_on_full_disk)

    with pytest.raises(StorageError) as caught:
        store.put(io.BytesIO(payload(10_000)))

    assert caught.value.__cause__.errno == errno.ENOSPC
    assert files_under(store.root) == []


def test_failed_rename_leaves_nothing_at_the_final_path(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(10_000)

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(storage.os, "replace", refuse)

    with pytest.raises(StorageError, match="writable"):
        store.put(io.BytesIO(data))

    assert not store.exists(hashlib.sha256(data).hexdigest())
    assert files_under(store.root) == []


def test_crash_between_write_and_rename_leaves_only_an_ignored_temp_file(
    store: BlobStore,
) -> None:
    data = payload(10_000)
    digest = hashlib.sha256(data).hexdigest()
    # A real crash: the child process dies at the rename, so no cleanup code runs.
    crash = (
        "import io, os, sys\n"
        "from pathlib import Path\n"
        "from recorder.storage import BlobStore\n"
        "os.replace = lambda src, dst: os._exit(17)\n"
        "BlobStore(Path(sys.argv[1]), 1 << 20).put(io.BytesIO(sys.stdin.buffer.read()))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", crash, str(store.root)],
        input=data,
        cwd=Path(__file__).parents[2],
        check=False,
    )

    assert child.returncode == 17
    leftovers = files_under(store.root)
    assert [p.parent for p in leftovers] == [store.root / "tmp"]
    assert leftovers[0].read_bytes() == data
    assert list(store.iter_blobs()) == []
    assert not store.exists(digest)
    with pytest.raises(NotFoundError):
        store.open(digest)

    assert store.put(io.BytesIO(data)).created is True
    assert list(store.iter_blobs()) == [digest]


def test_sweep_temp_removes_only_stale_temp_files(store: BlobStore) -> None:
    blob = store.put(io.BytesIO(payload(100)))
    tmp = store.root / "tmp"
    stale = tmp / "upload-stale.part"
    fresh = tmp / "upload-fresh.part"
    stale.write_bytes(b"half an upload")
    fresh.write_bytes(b"upload in progress")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))

    assert store.sweep_temp(older_than_seconds=600) == 1

    assert files_under(store.root) == sorted([blob.path, fresh])


def test_open_returns_the_stored_bytes(store: BlobStore) -> None:
    data = payload(70_000)
    blob = store.put(io.BytesIO(data))

    with store.open(blob.sha256) as f:
        assert f.read() == data


def test_open_of_an_unknown_hash_raises_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFoundError, match="backup"):
        store.open("0" * 64)


def test_delete_removes_the_blob_and_tolerates_it_being_gone(store: BlobStore) -> None:
    blob = store.put(io.BytesIO(payload(100)))

    assert store.delete(blob.sha256) is True
    assert not store.exists(blob.sha256)
    assert store.delete(blob.sha256) is False


def test_iter_blobs_yields_every_stored_hash_sorted_and_nothing_else(store: BlobStore) -> None:
    digests = sorted(store.put(io.BytesIO(payload(100, seed=s))).sha256 for s in range(5))
    misplaced = "f" * 64
    (store.root / "00" / "00").mkdir(parents=True)
    (store.root / "00" / "00" / misplaced).write_bytes(b"in the wrong fan-out folder")
    (store.root / "00" / "00" / "notes.txt").write_bytes(b"not a blob")

    assert list(store.iter_blobs()) == digests


def test_iter_blobs_of_an_empty_store_yields_nothing(store: BlobStore) -> None:
    assert list(store.iter_blobs()) == []


@pytest.mark.parametrize(
    "bad",
    [
        "../../../etc/passwd",
        "../" + "a" * 61,
        "a" * 62 + "/.",
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "a" * 64 + "\n",
        "g" * 64,
        "",
        None,
        b"a" * 64,
    ],
)
def test_hash_arguments_that_are_not_sha256_hex_are_rejected(store: BlobStore, bad: object) -> None:
    for method in (store.path_for, store.open, store.exists, store.delete):
        with pytest.raises(ValueError, match="sha256"):
            method(bad)  # type: ignore[arg-type]


def test_check_writable_passes_and_leaves_no_probe_file(store: BlobStore) -> None:
    store.check_writable()

    assert files_under(store.root) == []


def test_check_writable_fails_when_storage_root_is_not_a_directory(tmp_path: Path) -> None:
    # chmod 0o500 does not stop root, and CI runs as root; a regular file where the directory
    # should be fails for every user.
    root = tmp_path / "recordings"
    root.write_bytes(b"")
    store = BlobStore(root, max_bytes=MAX_BYTES)

    with pytest.raises(StorageError, match="directory") as caught:
        store.check_writable()

    assert isinstance(caught.value.__cause__, OSError)


def test_put_into_unusable_root_raises_storage_error(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    root.write_bytes(b"")

    with pytest.raises(StorageError):
        BlobStore(root, max_bytes=MAX_BYTES).put(io.BytesIO(b"data"))


def test_a_blob_of_the_wrong_size_is_replaced_by_a_fresh_upload(store: BlobStore) -> None:
    data = payload(5000)
    blob = store.put(io.BytesIO(data))
    blob.path.write_bytes(data[:100])

    again = store.put(io.BytesIO(data))

    assert again.created is True
    assert again.path.read_bytes() == data


def test_max_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BlobStore(tmp_path, max_bytes=0)


SHA = "ab" + "0" * 62


def test_locked_excludes_other_threads_until_released(store: BlobStore) -> None:
    import threading

    order: list[str] = []

    def other() -> None:
        with store.locked("ab" + "1" * 62):  # same stripe, other hash
            order.append("other")

    with store.locked(SHA):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.3)  # it cannot finish while the lock is held
        order.append("first")
    thread.join(timeout=10)

    assert order == ["first", "other"]


def test_locked_excludes_another_process(store: BlobStore) -> None:
    script = (
        "import sys; from pathlib import Path; from recorder.storage import BlobStore;"
        f"s = BlobStore(Path({str(store.root)!r}), 1);"
        f"cm = s.locked({SHA!r}); cm.__enter__(); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(storage, "LOCK_TIMEOUT_SECONDS", 0.2)
            with pytest.raises(StorageError, match="not granted within"), store.locked(SHA):
                pass
    finally:
        holder.communicate(input="", timeout=10)
    with store.locked(SHA):  # released when the holder exited
        pass


def test_locked_rejects_a_non_hash(store: BlobStore) -> None:
    with pytest.raises(ValueError), store.locked("../../etc/passwd"):
        pass


def test_lock_files_are_not_blobs(store: BlobStore) -> None:
    blob = store.put(io.BytesIO(payload(100)))
    with store.locked(blob.sha256):
        pass
    assert list(store.iter_blobs()) == [blob.sha256]


def test_lock_directory_that_cannot_be_made_is_a_storage_error(store: BlobStore) -> None:
    store.root.mkdir(parents=True)
    (store.root / "locks").write_text("a file where the lock directory should be")
    with (
        pytest.raises(StorageError, match="cannot take the audio blob lock"),
        store.locked(SHA),
    ):
        pass


def _hold_in_another_process(store: BlobStore) -> subprocess.Popen[str]:
    script = (
        "import sys; from pathlib import Path; from recorder.storage import BlobStore;"
        f"s = BlobStore(Path({str(store.root)!r}), 1);"
        "cm = s.snapshot_hold(); cm.__enter__(); print('held', flush=True); sys.stdin.read();"
        "cm.__exit__(None, None, None)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_blob_deleted_during_a_snapshot_hold_is_retained_until_the_hold_ends(
    store: BlobStore,
) -> None:
    blob = store.put(io.BytesIO(payload(5000)))
    holder = _hold_in_another_process(store)
    try:
        assert store.delete(blob.sha256)
        assert not store.exists(blob.sha256)
        retained = store.retained_path(blob.sha256)
        assert hashlib.sha256(retained.read_bytes()).hexdigest() == blob.sha256
        assert list(store.iter_blobs()) == []
    finally:
        holder.communicate(input="", timeout=10)
    assert holder.returncode == 0
    assert not retained.exists(), "the holder's exit emptied retained/"


def test_a_killed_holder_keeps_nothing_and_the_next_delete_empties_retained(
    store: BlobStore,
) -> None:
    first = store.put(io.BytesIO(payload(3000)))
    second = store.put(io.BytesIO(payload(4000)))
    holder = _hold_in_another_process(store)
    store.delete(first.sha256)
    holder.kill()
    holder.communicate(timeout=10)
    assert store.retained_path(first.sha256).exists()

    assert store.delete(second.sha256)

    assert not store.retained_path(first.sha256).exists()
    assert not store.retained_path(second.sha256).exists()
    assert not store.exists(second.sha256)
