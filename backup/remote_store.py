"""Where the offsite copy lives: one small interface over fsspec file systems.

fsspec gives one API over the three kinds of remote, each through a well-kept client: SFTP
through paramiko (``sftp://user@host:port/path``), the local file system (``file:///path``, a
second disk or a mounted share) and S3 through s3fs (``s3://bucket/prefix``, installed with the
``s3`` extra; credentials and endpoint from the standard ``AWS_*`` variables). The repository
code (:mod:`backup.remote`) needs only what :class:`RemoteStore` offers: list a folder with
sizes, read, write atomically, delete.

* **Atomic writes.** An object is written under ``tmp/<random>.part`` and renamed into place,
  so a copy killed at any moment leaves no partial object under its real name (S3 has no
  rename, but a PUT is atomic there: objects are written in place).
* **Host keys are checked.** SFTP connections load ``VRP_BACKUP_REMOTE_KNOWN_HOSTS`` (default:
  the user's ``~/.ssh/known_hosts``) and refuse a host whose key is not listed there: fsspec's
  own default accepts any key on first sight, which would let a man in the middle receive the
  backups. The user key comes from ``VRP_BACKUP_REMOTE_SSH_KEY_FILE``.
* **Bounded waits.** Connecting, authenticating and every SFTP request time out after
  ``VRP_BACKUP_REMOTE_TIMEOUT`` seconds, so an unreachable or stalled remote fails a copy
  instead of hanging the scheduler.
* **Several transfers at once.** A copy sends ``VRP_BACKUP_REMOTE_CONCURRENCY`` objects at a
  time from a thread pool (:mod:`backup.remote`); the store may be used from several threads.
  Over SFTP each thread gets its own SFTP channel on the one SSH connection (paramiko's SFTP
  client pairs requests with answers per channel, so threads must not share one); the local
  file system and s3fs are safe to share as they are.
* Every failure is a :class:`RemoteError` naming the remote by its URL without credentials.
"""

from __future__ import annotations

import io
import posixpath
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import fsspec
import paramiko
from fsspec.implementations.sftp import SFTPFileSystem

from backup.errors import BackupConfigError, BackupError
from backup.settings import RemoteSettings
from instrumentation.urls import shown_url

TMP: Final = "tmp"
_SFTP_PORT: Final = 22


class RemoteError(BackupError):
    """The remote could not be reached, read or written: the message names it and says why."""


class _CheckedSFTP(SFTPFileSystem):
    """fsspec's SFTP file system with known-hosts checking, time-outs on every request, and one
    SFTP channel per thread (``ftp`` is the calling thread's, opened on first use)."""

    cachable = False

    def __init__(
        self, host: str, *, known_hosts: Path | None, request_timeout: float, **ssh_kwargs: Any
    ) -> None:
        self._known_hosts = known_hosts
        self._request_timeout = request_timeout
        self._local = threading.local()
        self._channels: list[paramiko.SFTPClient] = []
        self._channels_lock = threading.Lock()
        super().__init__(host, **ssh_kwargs)

    def _connect(self) -> None:
        self.client = paramiko.SSHClient()
        if self._known_hosts is None:
            self.client.load_system_host_keys()
        else:
            self.client.load_host_keys(str(self._known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        # Our own socket, with Nagle's algorithm off (paramiko leaves it on, and sshd turns it
        # off only for terminal sessions): the handshake and every small request (a listing,
        # a rename, a size check) otherwise wait for delayed ACKs; on loopback this took the
        # connection and its first SFTP channel from 0.11-0.17 s to 0.07 s.
        sock = socket.create_connection(
            (self.host, self.ssh_kwargs.get("port", _SFTP_PORT)), self.ssh_kwargs.get("timeout")
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.client.connect(self.host, sock=sock, **self.ssh_kwargs)
        except BaseException:
            sock.close()
            raise
        self._local.ftp = self._open_channel()

    def _open_channel(self) -> paramiko.SFTPClient:
        ftp = self.client.open_sftp()
        ftp.get_channel().settimeout(self._request_timeout)
        with self._channels_lock:
            self._channels.append(ftp)
        return ftp

    @property
    def ftp(self) -> paramiko.SFTPClient:
        ftp = getattr(self._local, "ftp", None)
        if ftp is None:
            ftp = self._local.ftp = self._open_channel()
        return ftp

    @ftp.setter
    def ftp(self, value: paramiko.SFTPClient) -> None:
        self._local.ftp = value

    # Whole-object transfers through paramiko's pipelined put and prefetching get: fsspec's
    # file objects wait for the server's answer to every 32 KiB request, ten times slower here.
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        self.ftp.putfo(io.BytesIO(value), self._strip_protocol(path), confirm=False)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        if start is not None or end is not None:
            return bytes(super().cat_file(path, start=start, end=end, **kwargs))
        buffer = io.BytesIO()
        self.ftp.getfo(self._strip_protocol(path), buffer)
        return buffer.getvalue()

    def close(self) -> None:
        with self._channels_lock:
            channels, self._channels = self._channels, []
        for ftp in channels:
            ftp.close()
        self.client.close()


class RemoteStore:
    """The files of one remote under its root folder (names are ``/``-separated, relative)."""

    def __init__(self, fs: Any, root: str, url: str, *, atomic_put: bool) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.url = url
        self.shown = shown_url(url)
        self._atomic_put = atomic_put
        self._made: set[str] = set()
        # Folders are made one at a time: two threads making the same folder over SFTP race
        # between its existence check and its mkdir, and the loser's mkdir fails.
        self._making = threading.Lock()

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RemoteError:
            raise
        except FileNotFoundError:
            raise
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            raise RemoteError(f"{doing} on the remote {self.shown} failed: {_reason(exc)}") from exc

    def list(self, folder: str, pool: Executor | None = None) -> dict[str, int]:
        """Every file below ``folder`` (relative names) with its size; empty when it is missing.

        With ``pool``, a folder of folders (the remote's fan-out) is listed one subfolder per
        task, so that the round trips of a listing over SFTP overlap; an object store (one
        paginated listing of the whole prefix) is listed at once either way."""
        with self._errors(f"listing {folder}/"):
            base = self._path(folder)
            if pool is None or self._atomic_put:
                if not self.fs.exists(base):
                    return {}
                self._made.add(base)
                found = self.fs.find(base, detail=True)
            else:
                found = {}
                try:
                    entries = self.fs.ls(base, detail=True)
                except FileNotFoundError:
                    return {}
                found.update({e["name"]: e for e in entries if e.get("type") == "file"})
                folders = [e["name"] for e in entries if e.get("type") == "directory"]
                # Folders just seen need no look before a write into them (see _makedirs).
                self._made.update([base, *folders])
                for below in pool.map(lambda path: self.fs.find(path, detail=True), folders):
                    found.update(below)
        prefix = self.root.rstrip("/") + "/"
        return {
            path.removeprefix(prefix).lstrip("/"): int(info.get("size") or 0)
            for path, info in found.items()
            if info.get("type") == "file"
        }

    def exists(self, name: str) -> bool:
        with self._errors(f"looking for {name}"):
            return bool(self.fs.exists(self._path(name)))

    def read(self, name: str) -> bytes:
        """The content of ``name``; FileNotFoundError when it is missing."""
        with self._errors(f"reading {name}"):
            return bytes(self.fs.cat_file(self._path(name)))

    def size(self, name: str) -> int:
        with self._errors(f"checking {name}"):
            return int(self.fs.info(self._path(name))["size"])

    def write(self, name: str, data: bytes) -> None:
        """Write ``name`` whole or not at all: a temp name, then a rename."""
        with self._errors(f"writing {name}"):
            target = self._path(name)
            if self._atomic_put:
                self.fs.pipe_file(target, data)
                return
            self._makedirs(self._path(TMP))
            self._makedirs(posixpath.dirname(target))
            tmp = self._path(f"{TMP}/{secrets.token_hex(16)}.part")
            self.fs.pipe_file(tmp, data)
            try:
                self.fs.mv(tmp, target)
            except BaseException:
                self._remove_quietly(tmp)
                raise

    def delete(self, name: str) -> None:
        with self._errors(f"deleting {name}"):
            try:
                self.fs.rm_file(self._path(name))
            except FileNotFoundError:
                return

    def make_root(self) -> None:
        with self._errors("creating the remote folder"):
            self._makedirs(self.root)

    def _makedirs(self, path: str) -> None:
        if path in self._made or self._atomic_put:
            return
        with self._making:
            # One look for a folder that is there (the usual case): fsspec's makedirs looks
            # at every folder of the path from the root, one round trip each.
            if path not in self._made and not self.fs.isdir(path):
                self.fs.makedirs(path, exist_ok=True)
            self._made.add(path)

    def _remove_quietly(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except (OSError, paramiko.SSHException):
            return

    def close(self) -> None:
        """Close the SSH connection (the other kinds hold nothing to close)."""
        if isinstance(self.fs, _CheckedSFTP):
            self.fs.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text[0].lower() + text[1:] if text else type(exc).__name__


def open_store(remote: RemoteSettings, url: str | None = None) -> RemoteStore:
    """Connect to the remote ``url`` (default: the setting's); RemoteError when it cannot."""
    url = url or remote.url
    parts = urlsplit(url)
    shown = shown_url(url)
    if parts.scheme == "file":
        return RemoteStore(fsspec.filesystem("file"), unquote(parts.path), url, atomic_put=False)
    if parts.scheme == "s3":
        try:
            fs = fsspec.filesystem(
                "s3",
                skip_instance_cache=True,
                config_kwargs={
                    "connect_timeout": remote.timeout,
                    "read_timeout": remote.timeout,
                    "retries": {"max_attempts": 2},
                },
            )
        except ImportError:
            raise BackupConfigError(
                f"VRP_BACKUP_REMOTE={shown!r}: s3:// needs s3fs; install voice-recorder-pro[s3]"
            ) from None
        return RemoteStore(fs, f"{parts.netloc}{unquote(parts.path)}", url, atomic_put=True)
    if parts.scheme == "sftp":
        return _sftp_store(remote, url)
    raise BackupConfigError(
        f"VRP_BACKUP_REMOTE={shown!r}: use sftp://user@host[:port]/path, file:///path or "
        "s3://bucket/prefix"
    )


def _sftp_store(remote: RemoteSettings, url: str) -> RemoteStore:
    parts = urlsplit(url)
    shown = shown_url(url)
    try:
        port = parts.port or _SFTP_PORT
    except ValueError:
        raise BackupConfigError(f"VRP_BACKUP_REMOTE={shown!r}: the port is not a number") from None
    if not parts.hostname or not parts.username:
        raise BackupConfigError(
            f"VRP_BACKUP_REMOTE={shown!r}: name the user and the host (sftp://user@host/path)"
        )
    if remote.known_hosts is not None and not remote.known_hosts.is_file():
        raise BackupConfigError(
            f"VRP_BACKUP_REMOTE_KNOWN_HOSTS={str(remote.known_hosts)!r}: no such file"
        )
    if remote.ssh_key_file is not None and not remote.ssh_key_file.is_file():
        raise BackupConfigError(
            f"VRP_BACKUP_REMOTE_SSH_KEY_FILE={str(remote.ssh_key_file)!r}: no such file"
        )
    ssh: dict[str, Any] = {
        "port": port,
        "username": unquote(parts.username),
        "timeout": remote.timeout,
        "banner_timeout": remote.timeout,
        "auth_timeout": remote.timeout,
        "channel_timeout": remote.timeout,
    }
    if parts.password is not None:
        ssh["password"] = unquote(parts.password)
    if remote.ssh_key_file is not None:
        ssh.update(key_filename=str(remote.ssh_key_file), look_for_keys=False, allow_agent=False)
    try:
        fs = _CheckedSFTP(
            parts.hostname, known_hosts=remote.known_hosts, request_timeout=remote.timeout, **ssh
        )
    except paramiko.BadHostKeyException:
        raise RemoteError(
            f"the remote {shown} presented a host key that differs from the one in known_hosts; "
            "refusing to connect (the host was reinstalled, or someone is in between)"
        ) from None
    except paramiko.AuthenticationException:
        raise RemoteError(
            f"the remote {shown} refused the SSH login; check VRP_BACKUP_REMOTE_SSH_KEY_FILE "
            "and the user's authorized_keys there"
        ) from None
    except paramiko.SSHException as exc:
        if "known_hosts" in str(exc):
            raise RemoteError(
                f"the host key of the remote {shown} is not in "
                f"{remote.known_hosts or '~/.ssh/known_hosts'}; add it (ssh-keyscan -p {port} "
                f"{parts.hostname}) after checking its fingerprint, or set "
                "VRP_BACKUP_REMOTE_KNOWN_HOSTS"
            ) from None
        raise RemoteError(f"connecting to the remote {shown} failed: {_reason(exc)}") from None
    except (OSError, EOFError) as exc:
        raise RemoteError(f"connecting to the remote {shown} failed: {_reason(exc)}") from None
    return RemoteStore(fs, unquote(parts.path) or "/", url, atomic_put=False)
