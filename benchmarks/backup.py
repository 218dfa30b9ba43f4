"""What ``vrp backup run`` costs against the shell pipeline it replaces, and what a second run
over unchanged audio costs against the first.

Run ``.venv/bin/python benchmarks/backup.py`` (``--quick`` for a smoke run of a few seconds).
Everything is measured in one process run on data built in a temporary folder, so the ratios
compare like with like (same disk, same page cache).

What is measured
    1. Database: a recorder SQLite database of at least ``--db-mb`` MiB (default 400; rows of
       the real ``recordings`` table, built by ``vrp db upgrade`` and SQL, all referencing one
       small blob so the audio work is negligible). Timed, alternating, ``--rounds`` times each:

       * ``pipeline``: ``sqlite3 DB ".backup X" && zstd -q X && sha256sum X.zst`` (three
         sequential passes: copy, compress, hash);
       * ``vrp``: ``vrp backup run --no-verify`` as a user runs it (a fresh process: interpreter
         start, imports, logging and telemetry set-up, lock, the online copy in bounded steps
         under a held snapshot, zstd + sha256 in one streamed pass while the row counts and
         the referenced blobs are read from the copy, manifest, fsyncs). ``--no-verify``
         leaves out the integrity check, which runs at verify time.

       Both at zstd level 3 (the ``zstd`` default and ``VRP_BACKUP_COMPRESSION_LEVEL``'s). The
       figure is the ratio of the medians, ``vrp / pipeline``; target <= 0.8.
    2. Audio: ``--audio-mb`` MiB (default 1024) of incompressible blobs of 8 MiB (audio does
       not compress) referenced by a small database. ``vrp backup run --no-verify`` twice into
       one backup folder: the first archives every blob, the second finds them all archived and
       copies none. Target: the second takes under 5 % of the first. Both the wall time of the
       process and the run's own time (as ``vrp backup run`` reports it, without the
       interpreter start and imports, which no backup run can avoid) are shown; the target is
       checked on the run's own time and the wall-time ratio is printed next to it.

Each ``vrp`` process runs with its bytecode cached, as an installed ``vrp`` does (``pip
install`` compiles it): ``PYTHONDONTWRITEBYTECODE`` is dropped from its environment and the
cache goes to a folder of the run (``PYTHONPYCACHEPREFIX``, so the source tree is not touched),
filled by an untimed ``vrp backup run`` before the rounds. With the variable set and no cache,
every process would compile the project's modules again: about 0.08 s of each run here.

    3. Offsite copy: ``--remote-mb`` MiB (default 512) of incompressible blobs of 8 MiB and a
       small database, backed up once (untimed), then copied over SFTP to a real OpenSSH server
       started on a loopback port (Debian's ``sshd``, as the tests start it), timed
       ``--rounds`` times each, alternating:

       * ``pipeline``: ``tar -cf - vrp.db recordings | age -R key.pub > X.age && scp X.age
         host:`` (archive, encrypt to the same age public key, send);
       * ``vrp``: ``vrp backup copy`` into a new remote (``vrp backup init --remote``, untimed):
         every object encrypted with age and sent whole under a temp name, then renamed,
         ``VRP_BACKUP_REMOTE_CONCURRENCY`` objects at a time (its default, 4);
       * with ``--remote-serial``, also ``vrp`` with ``VRP_BACKUP_REMOTE_CONCURRENCY=1`` (one
         object after another, as copies ran before), for the gain of sending several at once.

       The throughput figure is the ratio of the medians, ``vrp / pipeline``, on the wall time
       of the process and on the copy's own time (without the interpreter start and imports);
       no target: it is the price of an incremental, resumable, per-object format. Then,
       ``--rounds`` times: one new recording (one 8 MiB blob and its row), ``vrp backup run``,
       and a timed ``vrp backup copy``; the figure is the median of those copies' own time
       against the median first copy's own time (as ``vrp backup copy`` reports them), target
       under 5 %.

The report ends with one JSON object (``--json`` prints only that) so that tests and scripts
can read the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VRP = [sys.executable, "-m", "recorder.cli"]
PIPELINE = 'sqlite3 "$DB" ".backup $OUT/X" && zstd -q "$OUT/X" && sha256sum "$OUT/X.zst"'
RUN_LINE = re.compile(r"(\d+) blobs copied, (\d+) already archived, .*, ([\d.]+)s$")
COPY_LINE = re.compile(r"copied (\d+) backup\(s\).*: (\d+) object\(s\) sent, .*, ([\d.]+)s$")
DB_TARGET = 0.8
AUDIO_TARGET = 0.05
INCREMENTAL_TARGET = 0.05
BLOB_MB = 8
ROWS_PER_BATCH = 100_000
FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO recordings (public_id, title, original_filename, sha256, mime_type, size_bytes,
    duration_seconds, sample_rate, channels, status, created_at, updated_at, version,
    audio_format)
SELECT lower(hex(randomblob(16))),
       'Interview ' || (:start + i) || ' about ' || substr(hex(randomblob(24)), 1, 40),
       'take_' || (:start + i) || '.wav', :sha256, 'audio/wav', 1000 + i, i * 0.25, 48000, 1,
       'active', '2026-11-01 10:00:00.000000', '2026-11-01 10:00:00.000000', 1, 'wav'
FROM n
"""


def _env(work: Path, database: Path, storage: Path, backups: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VRP_", "OTEL_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
        VRP_DATABASE_URL=f"sqlite:///{database}",
        VRP_STORAGE_DIR=str(storage),
        VRP_BACKUP_DIR=str(backups),
        VRP_LOG_DIR=str(work / "log"),
        VRP_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def _vrp(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [*VRP, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vrp {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed, done.stdout.strip()


def _put_blob(storage: Path, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    path = storage / sha256[:2] / sha256[2:4] / sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha256


def build_database(work: Path, megabytes: int) -> tuple[dict[str, str], Path]:
    """A migrated recorder database of at least ``megabytes`` MiB, referencing one blob."""
    database, storage = work / "db" / "vrp.db", work / "db" / "recordings"
    database.parent.mkdir(parents=True)
    env = _env(work, database, storage, work / "db" / "backups")
    _vrp(env, "db", "upgrade")
    _vrp(env, "backup", "init")
    sha256 = _put_blob(storage, os.urandom(4096))
    connection = sqlite3.connect(database)
    rows = 0
    # About 2,100 rows per MiB with the indexes: batches that overshoot small targets little.
    batch = min(ROWS_PER_BATCH, max(2_000, megabytes * 1_000))
    while database.stat().st_size < megabytes * 1024 * 1024:
        connection.execute(FILL, {"count": batch, "start": rows, "sha256": sha256})
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows += batch
    connection.close()
    return env, database


def build_audio(work: Path, megabytes: int) -> dict[str, str]:
    """A small database referencing ``megabytes`` MiB of incompressible blobs."""
    database, storage = work / "audio" / "vrp.db", work / "audio" / "recordings"
    database.parent.mkdir(parents=True)
    env = _env(work, database, storage, work / "audio" / "backups")
    _vrp(env, "db", "upgrade")
    _vrp(env, "backup", "init")
    blob_bytes = min(BLOB_MB, megabytes) * 1024 * 1024
    connection = sqlite3.connect(database)
    for index in range(max(1, megabytes // BLOB_MB)):
        sha256 = _put_blob(storage, os.urandom(blob_bytes))
        connection.execute(FILL, {"count": 1, "start": index, "sha256": sha256})
    connection.commit()
    connection.close()
    return env


def _settle(*outputs: Path) -> None:
    """Remove the previous outputs and write back every dirty page, untimed.

    The pipeline never fsyncs what it writes and the backup run fsyncs its artifact and
    manifest; on ext4 (data=ordered) an fsync commits the journal and so first writes out
    whatever else is dirty, such as the 500 MB the pipeline has just written. Each timed
    command therefore starts with nothing dirty left by the other.
    """
    for output in outputs:
        shutil.rmtree(output, ignore_errors=True)
    os.sync()


def time_pipeline(database: Path, out: Path) -> float:
    out.mkdir()
    env = {**os.environ, "DB": str(database), "OUT": str(out)}
    started = time.perf_counter()
    subprocess.run(["bash", "-c", PIPELINE], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure_database(work: Path, megabytes: int, rounds: int) -> dict[str, Any]:
    env, database = build_database(work, megabytes)
    size = database.stat().st_size
    # Untimed: fills the bytecode cache (see the module docstring).
    _vrp(env, "backup", "run", "--no-verify")
    pipeline, ours = [], []
    for _ in range(rounds):
        _settle(work / "pipeline", Path(env["VRP_BACKUP_DIR"]))
        pipeline.append(time_pipeline(database, work / "pipeline"))
        _settle(work / "pipeline", Path(env["VRP_BACKUP_DIR"]))
        _vrp(env, "backup", "init")  # untimed: the run needs a repository
        ours.append(_vrp(env, "backup", "run", "--no-verify")[0])
    _settle(work / "pipeline", Path(env["VRP_BACKUP_DIR"]))
    ratio = statistics.median(ours) / statistics.median(pipeline)
    return {
        "bytes": size,
        "rounds": rounds,
        "pipeline_seconds": [round(t, 3) for t in pipeline],
        "vrp_seconds": [round(t, 3) for t in ours],
        "ratio": round(ratio, 3),
        "target": DB_TARGET,
        "met": ratio <= DB_TARGET,
    }


def measure_audio(work: Path, megabytes: int) -> dict[str, Any]:
    env = build_audio(work, megabytes)
    runs = []
    for _ in range(2):
        wall, line = _vrp(env, "backup", "run", "--no-verify")
        match = RUN_LINE.search(line)
        if match is None:
            raise SystemExit(f"unexpected output of vrp backup run: {line!r}")
        runs.append(
            {
                "wall_seconds": round(wall, 3),
                "run_seconds": float(match.group(3)),
                "copied": int(match.group(1)),
                "skipped": int(match.group(2)),
            }
        )
    first, second = runs
    ratio = second["run_seconds"] / max(first["run_seconds"], 1e-9)
    return {
        "bytes": sum(
            p.stat().st_size for p in Path(env["VRP_STORAGE_DIR"]).rglob("*") if p.is_file()
        ),
        "first": first,
        "second": second,
        "ratio": round(ratio, 4),
        "wall_ratio": round(second["wall_seconds"] / first["wall_seconds"], 4),
        "target": AUDIO_TARGET,
        "met": ratio < AUDIO_TARGET and second["copied"] == 0,
    }


def _copy(env: dict[str, str]) -> tuple[float, float, int]:
    """One ``vrp backup copy``: wall seconds, its own seconds, objects sent."""
    wall, line = _vrp(env, "backup", "copy")
    match = COPY_LINE.search(line)
    if match is None:
        raise SystemExit(f"unexpected output of vrp backup copy: {line!r}")
    return wall, float(match.group(3)), int(match.group(2))


def measure_remote(work: Path, megabytes: int, rounds: int, serial: bool) -> dict[str, Any]:
    # The tests' sshd, found by appending the checkout (this script's own folder comes first on
    # the path, where "backup" is this file, so the package is reached through vrp alone).
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from tests.backup.sftp_server import running_sshd

    env = build_audio(work / "remote", megabytes)
    database = Path(env["VRP_DATABASE_URL"].removeprefix("sqlite:///"))
    storage = Path(env["VRP_STORAGE_DIR"])
    _vrp(env, "backup", "keygen", str(work / "remote" / "backup.key"))
    shutil.copy(work / "remote" / "backup.key.pub", work / "remote" / "backup.pub")
    _vrp(env, "backup", "run", "--no-verify")
    size = sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())
    with running_sshd(work / "remote" / "sshd", work / "remote" / "offsite") as server:
        env = {
            **env,
            **server.env(),
            "VRP_BACKUP_REMOTE_RECIPIENTS_FILE": str(work / "remote" / "backup.pub"),
        }
        scp = (
            f"scp -q -i {server.user_key} -P {server.port} "
            f"-o UserKnownHostsFile={server.known_hosts} -o BatchMode=yes"
        )
        pipeline_cmd = (
            f'tar -C "{database.parent}" -cf - "{database.name}" "{storage.name}" '
            f'| age -R "{work / "remote" / "backup.pub"}" > "$OUT" '
            f'&& {scp} "$OUT" {server.user}@127.0.0.1:"$DEST"'
        )
        pipeline, first, first_serial = [], [], []
        for index in range(rounds):
            out = work / "remote" / "pipeline.tar.age"
            _settle(out, server.root / f"tar-{index}")
            started = time.perf_counter()
            subprocess.run(
                ["bash", "-c", pipeline_cmd],
                env={**os.environ, "OUT": str(out), "DEST": str(server.root / f"tar-{index}")},
                check=True,
            )
            pipeline.append(time.perf_counter() - started)
            out.unlink()
            round_env = {**env, "VRP_BACKUP_REMOTE": server.url(f"copy-{index}")}
            _vrp(round_env, "backup", "init", "--remote")
            _settle()
            first.append(_copy(round_env))
            if serial:
                serial_env = {
                    **env,
                    "VRP_BACKUP_REMOTE": server.url(f"serial-{index}"),
                    "VRP_BACKUP_REMOTE_CONCURRENCY": "1",
                }
                _vrp(serial_env, "backup", "init", "--remote")
                _settle()
                first_serial.append(_copy(serial_env))
        incremental = []
        for index in range(rounds):
            sha256 = _put_blob(storage, os.urandom(BLOB_MB * 1024 * 1024))
            connection = sqlite3.connect(database)
            connection.execute(FILL, {"count": 1, "start": 10**6 + index, "sha256": sha256})
            connection.commit()
            connection.close()
            _vrp(env, "backup", "run", "--no-verify")
            _settle()
            incremental.append(
                _copy({**env, "VRP_BACKUP_REMOTE": server.url(f"copy-{rounds - 1}")})
            )
    first_own = statistics.median(t[1] for t in first)
    incremental_own = statistics.median(t[1] for t in incremental)
    ratio = incremental_own / max(first_own, 1e-9)
    pipeline_median = statistics.median(pipeline)
    throughput = statistics.median(t[0] for t in first) / pipeline_median
    serial_own = statistics.median(t[1] for t in first_serial) if first_serial else None
    return {
        "bytes": size,
        "rounds": rounds,
        "pipeline_seconds": [round(t, 3) for t in pipeline],
        "first_copy_serial_own_seconds": [round(t[1], 3) for t in first_serial],
        "concurrency_speedup": round(serial_own / first_own, 3) if serial_own else None,
        "first_copy_seconds": [round(t[0], 3) for t in first],
        "first_copy_own_seconds": [round(t[1], 3) for t in first],
        "first_copy_objects": first[0][2],
        "incremental_copy_seconds": [round(t[0], 3) for t in incremental],
        "incremental_copy_own_seconds": [round(t[1], 3) for t in incremental],
        "incremental_copy_objects": [t[2] for t in incremental],
        "throughput_ratio": round(throughput, 3),
        "throughput_ratio_own": round(first_own / pipeline_median, 3),
        "pipeline_mib_per_s": round(size / 2**20 / pipeline_median, 1),
        "vrp_mib_per_s": round(size / 2**20 / first_own, 1),
        "incremental_ratio": round(ratio, 4),
        "incremental_target": INCREMENTAL_TARGET,
        "incremental_met": ratio < INCREMENTAL_TARGET,
    }


def _check_tools() -> None:
    tools = ("sqlite3", "zstd", "sha256sum", "tar", "age", "scp", "ssh-keygen", "/usr/sbin/sshd")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)} for the baseline pipelines; "
            "Debian: apt-get install sqlite3 zstd age openssh-client openssh-server"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round")
    parser.add_argument("--db-mb", type=int, default=None, help="database size (400)")
    parser.add_argument("--audio-mb", type=int, default=None, help="audio size (1024)")
    parser.add_argument("--remote-mb", type=int, default=None, help="offsite copy size (512)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (5)")
    parser.add_argument(
        "--remote-serial", action="store_true", help="also time first copies one object at a time"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the data")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args()
    db_mb = args.db_mb or (8 if args.quick else 400)
    audio_mb = args.audio_mb or (32 if args.quick else 1024)
    remote_mb = args.remote_mb or (32 if args.quick else 512)
    rounds = args.rounds or (1 if args.quick else 5)
    _check_tools()
    with tempfile.TemporaryDirectory(prefix="vrp-bench-backup-", dir=args.workdir) as tmp:
        work = Path(tmp) / uuid.uuid4().hex[:8]
        work.mkdir()
        database = measure_database(work, db_mb, rounds)
        audio = measure_audio(work, audio_mb)
        remote = measure_remote(work, remote_mb, rounds, args.remote_serial)
    report = {"quick": args.quick, "database": database, "audio": audio, "remote": remote}
    if not args.json:
        mark = {True: "PASS", False: "MISS"}
        print(f"database {database['bytes'] / 2**20:.0f} MiB, {rounds} round(s), zstd level 3")
        print(
            f"  pipeline (sqlite3 .backup && zstd && sha256sum): {database['pipeline_seconds']} s"
        )
        print(f"  vrp backup run --no-verify:                      {database['vrp_seconds']} s")
        print(
            f"  ratio vrp/pipeline (medians) {database['ratio']:.2f}, target <= {DB_TARGET} "
            f"{mark[database['met']]}"
        )
        first, second = audio["first"], audio["second"]
        print(f"audio {audio['bytes'] / 2**20:.0f} MiB")
        print(
            f"  first run:  {first['copied']} blobs copied, run {first['run_seconds']:.2f} s, "
            f"wall {first['wall_seconds']:.2f} s"
        )
        print(
            f"  second run: {second['copied']} blobs copied, run {second['run_seconds']:.2f} s, "
            f"wall {second['wall_seconds']:.2f} s"
        )
        print(
            f"  ratio second/first {audio['ratio']:.3f} (wall {audio['wall_ratio']:.3f}), "
            f"target < {AUDIO_TARGET} {mark[audio['met']]}"
        )
        print(f"offsite copy over SFTP, {remote['bytes'] / 2**20:.0f} MiB of audio")
        print(f"  tar | age > X && scp X:      {remote['pipeline_seconds']} s")
        print(
            f"  vrp backup copy (first):     {remote['first_copy_seconds']} s "
            f"({remote['first_copy_objects']} objects), own time "
            f"{remote['first_copy_own_seconds']} s"
        )
        if remote["first_copy_serial_own_seconds"]:
            print(
                f"  one object at a time (first): {remote['first_copy_serial_own_seconds']} s "
                f"own time; concurrency speed-up (medians) {remote['concurrency_speedup']:.2f}"
            )
        print(
            f"  ratio vrp/pipeline (medians) {remote['throughput_ratio']:.2f} wall, "
            f"{remote['throughput_ratio_own']:.2f} on the copy's own time "
            f"({remote['vrp_mib_per_s']} against {remote['pipeline_mib_per_s']} MiB/s)\n"
            f"  incremental copy after one new recording: "
            f"{remote['incremental_copy_own_seconds']} s own time "
            f"({remote['incremental_copy_objects']} objects)\n"
            f"  ratio incremental/first (medians, own time) {remote['incremental_ratio']:.3f}, "
            f"target < {INCREMENTAL_TARGET} {mark[remote['incremental_met']]}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
