"""The offsite copy: the local repository's backups, encrypted, on a remote (VRP_BACKUP_REMOTE).

Layout under the remote's folder (see :mod:`backup.remote_store` for the kinds of remote)::

    vrp-remote.json          the marker: remote id, format (``vrp backup init --remote``)
    data/<aa>/<random id>    one object per blob or database artifact, age-encrypted
    snapshots/<backup id>.json   one per copied backup, written last
    tmp/<random>.part        uploads in progress (renamed into place when whole)

The remote holds what the local repository holds (the compressed blobs, the database
artifacts, each backup's manifest), each object encrypted with age to the recipients' public
keys (:mod:`backup.encryption`) before it leaves the machine. **Object names reveal nothing**:
each object gets a random 128-bit id when it is first sent, not a hash of its content (a hash of
the plain content would let anyone holding a recording test whether it is in the backups). The
map from a backup's artifacts and blobs to those ids travels inside the backup's snapshot file,
encrypted with the manifest itself (``sealed``); in plain text a snapshot file carries only what
the host that makes backups needs without the private key: the backup id (its start time), when
it was copied, whether the local backup was verified, and the ids, sizes and sha256 of the
encrypted objects it references (for retention, and for finding a changed object without the
key). The host keeps its own map of what it sent (``remotes/<remote id>.json`` in the local
repository), checked against a listing of the remote at every copy, so copies are incremental:
only objects the remote lacks are sent, blobs and artifacts first, the snapshot file last. A
copy killed at any point leaves the remote listing only complete backups (a snapshot file is
written only once every object it references is there, with its size checked), and a re-run
resumes: what was sent and recorded is not sent again.

Restoring and verifying read the remote alone, with the identity file: the snapshot file is
decrypted for the manifest and the map, every object is downloaded, checked against the sha256
of its ciphertext, decrypted (age authenticates every chunk) and written into a local
repository, where the ordinary verify and restore take over.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from pyrage import x25519

from backup import manifest as manifests
from backup.blobs import BlobArchive
from backup.catalog import RUNS, TMP, BackupInfo, Catalog, valid_id
from backup.copies import STATE_DIR
from backup.encryption import DecryptionError, decrypt, encrypt
from backup.errors import BackupNotFoundError, ManifestError
from backup.files import fsync_dir, make_private_dir, write_atomic, write_through
from backup.remote_store import RemoteError, RemoteStore
from instrumentation import conventions

logger = logging.getLogger(__name__)

MARKER: Final = "vrp-remote.json"
FORMAT: Final = 1
DATA: Final = "data"
SNAPSHOTS: Final = "snapshots"
_OBJECT: Final = re.compile(r"[0-9a-f]{32}")
_SNAPSHOT_SUFFIX: Final = ".json"
# How often a copy records what it sent, so that a killed copy resends little.
_STATE_EVERY_SECONDS: Final = 2.0


class NotARemoteError(RemoteError):
    """The remote folder has no marker; ``vrp backup init --remote`` makes it one."""


@dataclass(frozen=True)
class ObjectRef:
    """One encrypted object on the remote: its name, size and the sha256 of its bytes."""

    name: str
    bytes: int
    sha256: str

    @property
    def path(self) -> str:
        return f"{DATA}/{self.name[:2]}/{self.name}"


@dataclass(frozen=True)
class RemoteSnapshot:
    """A complete backup on the remote, as its plain-text snapshot file describes it."""

    id: str
    created_at: datetime
    copied_at: datetime
    verified: bool
    objects: tuple[ObjectRef, ...]
    sealed: bytes

    @property
    def stored_bytes(self) -> int:
        return sum(o.bytes for o in self.objects) + len(self.sealed)

    @property
    def path(self) -> str:
        return f"{SNAPSHOTS}/{self.id}{_SNAPSHOT_SUFFIX}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "id": self.id,
                "created_at": self.created_at.isoformat(),
                "copied_at": self.copied_at.isoformat(),
                "verified": self.verified,
                "objects": [o.__dict__ for o in self.objects],
                "sealed": base64.b64encode(self.sealed).decode("ascii"),
            },
            option=orjson.OPT_INDENT_2,
        )


@dataclass(frozen=True)
class Remote:
    """An opened remote: its store and the id from its marker."""

    store: RemoteStore
    id: str

    @property
    def shown(self) -> str:
        return self.store.shown


def init_remote(store: RemoteStore) -> tuple[Remote, bool]:
    """Make the store's folder a remote repository (a remote is left as it is); True if made."""
    try:
        return open_remote(store), False
    except NotARemoteError:
        pass
    store.make_root()
    remote_id = secrets.token_hex(16)
    doc = {"format": FORMAT, "id": remote_id, "created_at": datetime.now(UTC).isoformat()}
    store.write(MARKER, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return Remote(store, remote_id), True


def open_remote(store: RemoteStore) -> Remote:
    """The remote at the store's folder; NotARemoteError without a marker."""
    try:
        raw = store.read(MARKER)
    except FileNotFoundError:
        raise NotARemoteError(
            f"{store.shown} is not a backup remote (no {MARKER}); run "
            "`vrp backup init --remote` to make it one"
        ) from None
    try:
        doc = orjson.loads(raw)
        version, remote_id = int(doc["format"]), str(doc["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RemoteError(f"the marker {MARKER} on {store.shown} is unreadable ({exc})") from exc
    if version > FORMAT or not _OBJECT.fullmatch(remote_id):
        raise RemoteError(
            f"the remote {store.shown} has format {version}, newer than this vrp reads; upgrade"
        )
    return Remote(store, remote_id)


def _parse_snapshot(name: str, raw: bytes) -> RemoteSnapshot:
    try:
        doc = orjson.loads(raw)
        snapshot = RemoteSnapshot(
            id=str(doc["id"]),
            created_at=datetime.fromisoformat(doc["created_at"]),
            copied_at=datetime.fromisoformat(doc["copied_at"]),
            verified=bool(doc["verified"]),
            objects=tuple(
                ObjectRef(str(o["name"]), int(o["bytes"]), str(o["sha256"])) for o in doc["objects"]
            ),
            sealed=base64.b64decode(doc["sealed"], validate=True),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{name}: the snapshot file is malformed ({exc})") from exc
    if snapshot.path != name or any(not _OBJECT.fullmatch(o.name) for o in snapshot.objects):
        raise ManifestError(f"{name}: the snapshot file names objects it must not")
    return snapshot


def list_snapshots(
    remote: Remote, pool: Executor | None = None
) -> tuple[list[RemoteSnapshot], list[str]]:
    """The complete backups on the remote, oldest first, and the snapshot files refused (the
    files read on ``pool``'s threads when given: one round trip each, overlapped)."""
    names = []
    for name in sorted(remote.store.list(SNAPSHOTS)):
        backup_id = name.removeprefix(f"{SNAPSHOTS}/").removesuffix(_SNAPSHOT_SUFFIX)
        if name.endswith(_SNAPSHOT_SUFFIX) and valid_id(backup_id):
            names.append(name)

    def parse(name: str) -> RemoteSnapshot | str:
        try:
            return _parse_snapshot(name, remote.store.read(name))
        except (ManifestError, FileNotFoundError) as exc:
            logger.warning("skipping %s on the remote: %s", name, exc)
            return name

    parsed = pool.map(parse, names) if pool is not None else map(parse, names)
    found, refused = [], []
    for item in parsed:
        if isinstance(item, str):
            refused.append(item)
        else:
            found.append(item)
    return sorted(found, key=lambda s: (s.created_at, s.id)), refused


def snapshot_ids(remote: Remote) -> set[str]:
    """The ids of the backups on the remote, from the names of their snapshot files alone."""
    ids = set()
    for name in remote.store.list(SNAPSHOTS):
        backup_id = name.removeprefix(f"{SNAPSHOTS}/").removesuffix(_SNAPSHOT_SUFFIX)
        if name.endswith(_SNAPSHOT_SUFFIX) and valid_id(backup_id):
            ids.add(backup_id)
    return ids


def list_objects(remote: Remote, pool: Executor | None = None) -> dict[str, int]:
    """Every object on the remote, by name, with its size (its fan-out folders listed on
    ``pool``'s threads when given)."""
    objects = {}
    for path, size in remote.store.list(DATA, pool).items():
        name = path.rsplit("/", 1)[-1]
        if _OBJECT.fullmatch(name) and path == f"{DATA}/{name[:2]}/{name}":
            objects[name] = size
    return objects


# -- copy ----------------------------------------------------------------------------------------


@dataclass
class CopyResult:
    """What one copy did. ``objects_sent`` counts blobs and artifacts uploaded."""

    remote: str
    remote_id: str = ""
    snapshots_copied: list[str] = field(default_factory=list)
    snapshots_present: int = 0
    # The newest backup on the remote once the copy is done (None: the remote holds none).
    newest: str | None = None
    objects_sent: int = 0
    objects_skipped: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    # The remote's objects once the copy is done (name -> size) and, when the copy read them,
    # its snapshots: for the retention after it, which then lists nothing again.
    objects: dict[str, int] = field(default_factory=dict, repr=False)
    snapshots: list[RemoteSnapshot] | None = field(default=None, repr=False)


class _SentObjects:
    """The host's map of what it sent to one remote (``remotes/<id>.json``): object key ->
    :class:`ObjectRef`. Keys are ``blob:<sha256>`` and ``artifact:<sha256 of stored bytes>``.
    Saved as objects go and at the end, so a killed copy resends only the last few."""

    def __init__(self, backup_dir: Path, remote_id: str) -> None:
        self.path = backup_dir / STATE_DIR / f"{remote_id}.json"
        self.refs: dict[str, ObjectRef] = {}
        self._saved_at = time.monotonic()
        self._unsaved = 0
        try:
            doc = orjson.loads(self.path.read_bytes())
            self.refs = {
                key: ObjectRef(str(v["name"]), int(v["bytes"]), str(v["sha256"]))
                for key, v in dict(doc["objects"]).items()
            }
        except FileNotFoundError:
            pass
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as exc:
            logger.warning(
                "ignoring the unreadable %s (%s): objects are sent again", self.path, exc
            )

    def save(self, *, force: bool = False) -> None:
        self._unsaved += 1
        # Every few seconds, and every 1/16 of the map (at least 8 objects): a killed copy
        # resends at most that much, and rewriting the map stays linear in its size overall.
        due = self._unsaved >= max(8, len(self.refs) // 16)
        if not force and not due and time.monotonic() - self._saved_at < _STATE_EVERY_SECONDS:
            return
        make_private_dir(self.path.parent)
        doc = {"objects": {key: ref.__dict__ for key, ref in self.refs.items()}}
        write_atomic(self.path, orjson.dumps(doc))
        self._saved_at = time.monotonic()
        self._unsaved = 0


def _send(
    remote: Remote, read: Callable[[], bytes], recipients: list[x25519.Recipient]
) -> ObjectRef:
    """Read, encrypt and upload one object under a new random name; its size is checked there.
    Runs in a worker thread of the copy's pool."""
    sealed = encrypt(read(), recipients)
    ref = ObjectRef(secrets.token_hex(16), len(sealed), hashlib.sha256(sealed).hexdigest())
    remote.store.write(ref.path, sealed)
    size = remote.store.size(ref.path)
    if size != ref.bytes:
        raise RemoteError(
            f"{ref.path} on {remote.shown} holds {size} bytes after the upload, not {ref.bytes}"
        )
    return ref


def _send_all(
    pool: ThreadPoolExecutor,
    limit: int,
    jobs: Iterable[tuple[str, Callable[[], ObjectRef]]],
    done: Callable[[str, ObjectRef], None],
    should_stop: Callable[[], bool],
) -> bool:
    """Run the upload ``jobs`` (key, upload) on ``pool``, at most ``limit`` at a time (each
    holds its object in memory), calling ``done(key, ref)`` in this thread as each ends.
    Stops starting uploads when ``should_stop()`` turns true or one fails; the uploads under
    way are waited for and recorded either way (a finished upload is never sent again), then
    the first error is raised. False when stopped."""
    pending: dict[Future[ObjectRef], str] = {}
    queue = iter(jobs)
    error: Exception | None = None
    stopped = False
    try:
        while True:
            while error is None and not stopped and len(pending) < limit:
                job = next(queue, None)
                if job is None:
                    break
                if should_stop():
                    stopped = True
                    break
                pending[pool.submit(job[1])] = job[0]
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    ref = future.result()
                except Exception as exc:  # raised below, once the uploads under way end
                    error = error or exc
                    continue
                done(key, ref)
    finally:
        for future in pending:
            future.cancel()
    if error is not None:
        raise error
    return not stopped


def _backups_to_copy(
    catalog: Catalog, remote: Remote, pool: Executor, policy: Any, result: CopyResult
) -> tuple[set[str], list[BackupInfo]]:
    """The ids of the backups on the remote, and the local backups it lacks that ``policy``
    (when given) would keep, oldest first. With ``policy`` the remote's snapshots are read,
    and kept in ``result`` when none was refused."""
    if policy is None:
        present = snapshot_ids(remote)
        return present, [info for info in catalog.list() if info.id not in present]
    from backup.retention import plan_retention

    snapshots, refused = list_snapshots(remote, pool)
    if not refused:
        result.snapshots = snapshots
    present = {s.id for s in snapshots}
    missing = [info for info in catalog.list() if info.id not in present]
    kept = plan_retention([*snapshot_infos(snapshots), *missing], policy).kept
    wanted = {info.id for info in kept}
    return present, [info for info in missing if info.id in wanted]


@dataclass(frozen=True, kw_only=True)
class _Copy:
    """One copy in progress: what its steps share, from the listing to the last snapshot file.
    ``on_remote`` (the remote's objects, name -> size) grows as objects are sent."""

    remote: Remote
    recipients: list[x25519.Recipient]
    pool: ThreadPoolExecutor
    concurrency: int
    should_stop: Callable[[], bool]
    result: CopyResult
    on_remote: dict[str, int]
    sent: _SentObjects
    archive: BlobArchive

    def copy_backup(self, info: BackupInfo) -> bool:
        """Send the objects of one backup the remote lacks, then its snapshot file; False when
        stopped before all its objects were sent (no snapshot file is written then)."""
        manifest = manifests.read(info.path)
        manifest_bytes = (info.path / manifests.MANIFEST_NAME).read_bytes()
        jobs = self._uploads(info, manifest)
        if not _send_all(self.pool, self.concurrency, jobs.items(), self._record, self.should_stop):
            return False
        self._write_snapshot(info, manifest, manifest_bytes)
        return True

    def _uploads(
        self, info: BackupInfo, manifest: manifests.Manifest
    ) -> dict[str, Callable[[], ObjectRef]]:
        """The uploads (object key -> upload) of the backup's blobs, then its artifacts, that
        are not on the remote yet; the others are counted as skipped."""
        needed = {f"blob:{blob.sha256}" for blob in manifest.blobs}
        needed |= {f"artifact:{a.sha256}" for a in manifest.artifacts}
        jobs: dict[str, Callable[[], ObjectRef]] = {}
        for blob in manifest.blobs:
            key = f"blob:{blob.sha256}"
            if self._already_sent(key) is None:
                jobs[key] = self._upload(self.archive.path_for(blob.sha256).read_bytes)
        for artifact in manifest.artifacts:
            key = f"artifact:{artifact.sha256}"
            if self._already_sent(key) is None:
                path = manifests.resolve_inside(info.path, artifact.path)
                jobs[key] = self._upload(path.read_bytes)
        self.result.objects_skipped += len(needed) - len(jobs)
        return jobs

    def _already_sent(self, key: str) -> ObjectRef | None:
        ref = self.sent.refs.get(key)
        if ref is not None and self.on_remote.get(ref.name) == ref.bytes:
            return ref
        return None

    def _upload(self, read: Callable[[], bytes]) -> Callable[[], ObjectRef]:
        return lambda: _send(self.remote, read, self.recipients)

    def _record(self, key: str, ref: ObjectRef) -> None:
        self.sent.refs[key] = ref
        self.on_remote[ref.name] = ref.bytes
        self.result.objects_sent += 1
        self.result.bytes_sent += ref.bytes
        self.sent.save()

    def _write_snapshot(
        self, info: BackupInfo, manifest: manifests.Manifest, manifest_bytes: bytes
    ) -> None:
        """The backup's snapshot file, written once every object it references is there: the
        map from its blobs and artifacts to their objects sealed with the manifest."""
        blobs = {blob.sha256: self.sent.refs[f"blob:{blob.sha256}"] for blob in manifest.blobs}
        artifacts = {a.path: self.sent.refs[f"artifact:{a.sha256}"] for a in manifest.artifacts}
        payload = {
            "manifest": base64.b64encode(manifest_bytes).decode("ascii"),
            "artifacts": {path: ref.name for path, ref in artifacts.items()},
            "blobs": {sha: ref.name for sha, ref in blobs.items()},
        }
        refs = {ref.name: ref for ref in (*artifacts.values(), *blobs.values())}
        snapshot = RemoteSnapshot(
            id=info.id,
            created_at=info.created_at,
            copied_at=datetime.now(UTC),
            verified=info.verified,
            objects=tuple(sorted(refs.values(), key=lambda r: r.name)),
            sealed=encrypt(orjson.dumps(payload), self.recipients),
        )
        self.remote.store.write(snapshot.path, snapshot.to_json())
        if self.result.snapshots is not None:
            self.result.snapshots.append(snapshot)
        self.result.snapshots_copied.append(info.id)
        logger.info(
            "backup %s copied to %s",
            info.id,
            self.remote.shown,
            extra={
                conventions.VRP_BACKUP_ID: info.id,
                conventions.VRP_BACKUP_REMOTE: self.remote.shown,
            },
        )


def copy_backups(
    backup_dir: Path,
    remote: Remote,
    recipients: list[x25519.Recipient],
    *,
    policy: Any = None,
    concurrency: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
) -> CopyResult:
    """Copy the complete local backups the remote lacks (newest first); the caller holds the
    local run lock. Stops between two objects when ``should_stop()`` turns true.

    ``concurrency`` objects are read, encrypted and uploaded at a time (a thread pool; over
    SFTP one channel per thread), which hides the round trips of each object's upload, rename
    and size check. A backup's snapshot file is still written only after every object it
    references is on the remote, so the order "objects first, snapshot last" holds per backup.

    With ``policy`` (the remote's :class:`~backup.retention.RetentionPolicy`), only the
    backups that policy would keep among the remote's and these are sent: a local backup the
    remote's retention dropped earlier is not sent again only to be deleted after the copy."""
    started = time.monotonic()
    result = CopyResult(remote.shown, remote.id)
    catalog = Catalog(backup_dir)
    # One pool for the listing and the uploads: over SFTP each of its threads opens one
    # channel, used for both. Leaving the block waits for uploads under way (none is left
    # running past the copy).
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vrp-copy") as pool:
        copy = _Copy(
            remote=remote,
            recipients=recipients,
            pool=pool,
            concurrency=concurrency,
            should_stop=should_stop,
            result=result,
            on_remote=list_objects(remote, pool),
            sent=_SentObjects(backup_dir, remote.id),
            archive=catalog.blob_archive(),
        )
        present, todo = _backups_to_copy(catalog, remote, pool, policy, result)
        result.snapshots_present = len(present)
        try:
            for info in reversed(todo):
                if not copy.copy_backup(info):
                    return result
        finally:
            copy.sent.save(force=True)
            result.newest = max((*present, *result.snapshots_copied), default=None)
            result.seconds = time.monotonic() - started
            result.objects = copy.on_remote
        return result


# -- retention -----------------------------------------------------------------------------------


def snapshot_infos(snapshots: Iterable[RemoteSnapshot]) -> list[BackupInfo]:
    """The remote's backups as retention sees them: ``path`` is the snapshot file's name,
    ``blobs`` the names of the objects it references."""
    return [
        BackupInfo(
            id=s.id,
            path=Path(s.path),
            created_at=s.created_at,
            trigger="copy",
            verified=s.verified,
            blobs=frozenset(o.name for o in s.objects),
            bytes=s.stored_bytes,
            stored_bytes=s.stored_bytes,
        )
        for s in snapshots
    ]


@dataclass(frozen=True)
class RemotePruneResult:
    deleted_snapshots: tuple[str, ...]
    deleted_objects: int


def prune_remote(
    remote: Remote,
    policy: Any,
    *,
    dry_run: bool = False,
    objects: dict[str, int] | None = None,
    snapshots: list[RemoteSnapshot] | None = None,
) -> RemotePruneResult:
    """Apply the remote's own GFS policy (:class:`backup.retention.RetentionPolicy`): the
    newest copy whose local backup was verified is never deleted; objects no remaining snapshot
    references go too. A snapshot file that cannot be read stops the deleting of objects (what
    it references cannot be known). The caller holds the local run lock; ``objects`` and
    ``snapshots`` are listings it just made (a copy's, none refused), or None to list here."""
    from backup.retention import plan_retention

    refused: list[str] = []
    if snapshots is None:
        snapshots, refused = list_snapshots(remote)
    infos = snapshot_infos(snapshots)
    if objects is None:
        objects = list_objects(remote)
    plan = plan_retention(infos, policy, objects)
    deleted = tuple(info.id for info in plan.deleted)
    garbage = () if refused else sorted(plan.blobs_to_delete)
    if dry_run:
        return RemotePruneResult(deleted, len(garbage))
    for info in plan.deleted:
        remote.store.delete(str(info.path))
    for name in garbage:
        remote.store.delete(f"{DATA}/{name[:2]}/{name}")
    if deleted or garbage:
        logger.info(
            "remote retention on %s: %d backup(s) and %d object(s) deleted",
            remote.shown,
            len(deleted),
            len(garbage),
        )
    return RemotePruneResult(deleted, len(garbage))


# -- fetch (restore and verify) --------------------------------------------------------------------


@dataclass(frozen=True)
class FetchProblem:
    """Something wrong with an object on the remote; ``blob`` names the blob it holds."""

    file: str
    message: str
    blob: str | None = None
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.message}"
        if self.expected is not None:
            text += f" (expected sha256 {self.expected}, actual {self.actual})"
        return text


@dataclass(frozen=True)
class Sealed:
    """The decrypted part of a snapshot file: the manifest and where its parts are."""

    manifest_bytes: bytes
    manifest: manifests.Manifest
    artifacts: dict[str, str]
    blobs: dict[str, str]


def open_sealed(snapshot: RemoteSnapshot, identities: list[x25519.Identity]) -> Sealed:
    """Decrypt a snapshot's sealed part; DecryptionError or ManifestError naming the file."""
    plain = decrypt(snapshot.sealed, identities, snapshot.path)
    try:
        doc = orjson.loads(plain)
        manifest_bytes = base64.b64decode(doc["manifest"], validate=True)
        artifacts = {str(k): str(v) for k, v in dict(doc["artifacts"]).items()}
        blobs = {str(k): str(v) for k, v in dict(doc["blobs"]).items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{snapshot.path}: the sealed part is malformed ({exc})") from exc
    manifest = manifests.parse(manifest_bytes)
    names = {o.name for o in snapshot.objects}
    wanted = {a.path for a in manifest.artifacts}, {b.sha256 for b in manifest.blobs}
    if manifest.id != snapshot.id or (set(artifacts), set(blobs)) != wanted:
        raise ManifestError(f"{snapshot.path}: the sealed map does not match its manifest")
    if not set(artifacts.values()) | set(blobs.values()) <= names:
        raise ManifestError(f"{snapshot.path}: the sealed map names objects the file does not")
    return Sealed(manifest_bytes, manifest, artifacts, blobs)


def find_snapshot(remote: Remote, backup_id: str) -> RemoteSnapshot:
    for snapshot in list_snapshots(remote)[0]:
        if snapshot.id == backup_id:
            return snapshot
    raise BackupNotFoundError(backup_id)


def _download(
    remote: Remote, ref: ObjectRef, identities: list[x25519.Identity], blob: str | None
) -> tuple[bytes | None, FetchProblem | None]:
    """One object, checked and decrypted; or the problem with it."""
    try:
        data = remote.store.read(ref.path)
    except FileNotFoundError:
        return None, FetchProblem(ref.path, "missing from the remote", blob, ref.sha256, "missing")
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.sha256:
        return None, FetchProblem(
            ref.path, "checksum mismatch of the encrypted object", blob, ref.sha256, actual
        )
    try:
        return decrypt(data, identities, ref.path), None
    except DecryptionError as exc:
        return None, FetchProblem(ref.path, str(exc).removeprefix(f"{ref.path}: "), blob)


def _write_private(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """``path`` written whole (a temp name in ``tmp_dir``, default beside it; fsync; rename)
    with mode 0600."""
    make_private_dir(path.parent)
    if tmp_dir is None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    else:
        make_private_dir(tmp_dir)
        tmp = tmp_dir / f"{path.name}.{os.getpid()}.part"
    write_through(tmp, path, data)


def fetch_backup(
    remote: Remote,
    snapshot: RemoteSnapshot,
    identities: list[x25519.Identity],
    backup_dir: Path,
    *,
    problems: list[FetchProblem] | None = None,
    progress: Callable[[int], None] = lambda _: None,
) -> bool:
    """Download one backup into the local repository ``backup_dir`` (blobs it already holds are
    kept), publishing ``runs/<id>`` last; True when ``runs/<id>`` was published (or was there).

    Without ``problems`` the first problem raises a :class:`RemoteError`; with it (a verify),
    every problem is appended and the download goes on: the run folder is published when its
    database artifacts arrived whole, so that the verify can open the snapshot even when some
    blobs are damaged."""

    def problem(p: FetchProblem) -> None:
        if problems is None:
            raise RemoteError(f"{remote.shown}: {p}")
        problems.append(p)

    refs = {o.name: o for o in snapshot.objects}
    sealed = open_sealed(snapshot, identities)
    catalog = Catalog(backup_dir)
    archive = catalog.blob_archive()
    for sha256, name in sealed.blobs.items():
        target = archive.path_for(sha256)
        if not target.is_file():
            data, trouble = _download(remote, refs[name], identities, sha256)
            if trouble is not None:
                problem(trouble)
            elif data is not None:
                # The temp file in the archive's tmp/, which runs sweep if this one dies.
                _write_private(target, data, archive.tmp)
        progress(1)
    run_dir = catalog.runs_dir / snapshot.id
    if run_dir.is_dir():
        return True
    staging = catalog.tmp_dir / f"fetch-{snapshot.id}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    make_private_dir(staging)
    try:
        artifacts_whole = True
        for path, name in sealed.artifacts.items():
            data, trouble = _download(remote, refs[name], identities, None)
            if trouble is not None:
                problem(trouble)
                artifacts_whole = False
            elif data is not None:
                _write_private(manifests.resolve_inside(staging, path), data)
        if not artifacts_whole:
            return False
        _write_private(staging / manifests.MANIFEST_NAME, sealed.manifest_bytes)
        make_private_dir(catalog.runs_dir)
        os.replace(staging, run_dir)
        fsync_dir(catalog.runs_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


@contextmanager
def scratch_repository(prefix: str) -> Iterator[Path]:
    """An empty local repository in the system's temp folder (``TMPDIR``), removed after."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        root = Path(folder)
        for name in (RUNS, TMP):
            make_private_dir(root / name)
        yield root
