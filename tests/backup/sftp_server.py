"""A real OpenSSH server for the remote-copy tests: Debian's ``sshd`` on a free loopback port.

Started as the current user with its own configuration in ``tmp_path`` (a generated ed25519
host key, a generated user key authorised through an ``AuthorizedKeysFile`` there, the
internal SFTP server, ``StrictModes no``), in the foreground (``sshd -D -e``) so that the
fixture owns the process and ends it; no system service or system file is touched, except that
sshd run as root refuses to start without its privilege-separation folder ``/run/sshd``
(which the system service would create at boot), made empty here when missing.

To try the README's offsite runbook by hand against the same server::

    .venv/bin/python -m tests.backup.sftp_server /tmp/vrp-sshd /tmp/vrp-offsite-root

prints the ``export`` lines of the remote settings (one folder ``offsite`` under the second
argument) and serves until Ctrl-C.
"""

from __future__ import annotations

import os
import pwd
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SftpServer:
    port: int
    user: str
    user_key: Path
    known_hosts: Path
    root: Path  # the folder the remote tests use, on this machine's disk

    def url(self, name: str = "remote") -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root / name}"

    def env(self, name: str = "remote") -> dict[str, str]:
        """The settings naming this server's folder ``name`` as the backup remote."""
        return {
            "VRP_BACKUP_REMOTE": self.url(name),
            "VRP_BACKUP_REMOTE_SSH_KEY_FILE": str(self.user_key),
            "VRP_BACKUP_REMOTE_KNOWN_HOSTS": str(self.known_hosts),
            "VRP_BACKUP_REMOTE_TIMEOUT": "10",
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not answer within 10 s")


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For the sshd child: no file it writes grows past ``limit`` bytes (a write beyond fails
    with EFBIG, SIGXFSZ being ignored), as on a remote whose disk is full."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@contextmanager
def running_sshd(
    home: Path, root: Path, *, file_size_limit: int | None = None
) -> Iterator[SftpServer]:
    """sshd serving ``root`` (made here) with keys and configuration in ``home`` (made here),
    ended on the way out. RuntimeError if it does not answer within 10 s. With
    ``file_size_limit``, the server cannot write a file larger than that: a full remote."""
    home.mkdir(parents=True)
    _keygen(home / "host_key", "vrp-test-host")
    _keygen(home / "user_key", "vrp-test-user")
    shutil.copy(home / "user_key.pub", home / "authorized_keys")
    port = _free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {home / 'host_key'}\n"
        f"PidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\n"
        "StrictModes no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel ERROR\n"
    )
    host_key = (home / "host_key.pub").read_text().split()
    (home / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(home / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=None if file_size_limit is None else _file_size_limit(file_size_limit),
    )
    try:
        _wait_for_banner(port, process, time.monotonic() + 10)
        root.mkdir(parents=True, exist_ok=True)
        yield SftpServer(
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            user_key=home / "user_key",
            known_hosts=home / "known_hosts",
            root=root,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sshd_available() -> bool:
    return Path(SSHD).is_file() and shutil.which("ssh-keygen") is not None


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[SftpServer]:
    if not sshd_available():
        if os.environ.get("CI") == "true":
            pytest.fail("openssh-server is not installed (.ci/run installs it)")
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    with running_sshd(tmp_path / "sshd", tmp_path / "offsite") as server:
        yield server


def main(argv: list[str]) -> int:
    """``python -m tests.backup.sftp_server HOME ROOT``: serve until Ctrl-C or SIGTERM."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m tests.backup.sftp_server HOME ROOT\n")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_sshd(Path(argv[0]).absolute(), Path(argv[1]).absolute()) as server:
        for name, value in server.env("offsite").items():
            sys.stdout.write(f"export {name}={shlex.quote(value)}\n")
        sys.stdout.flush()
        with suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
