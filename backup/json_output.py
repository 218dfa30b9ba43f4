"""The ``--json`` shapes of the ``vrp backup`` commands, one function per command.

These are a contract with scripts (README, Backups): keys are only ever added, never renamed or
removed. Times are ISO 8601 in UTC, sizes are bytes, durations seconds. Every shape is one JSON
value on stdout; on a failure the command prints nothing on stdout (except ``verify``, whose
report says what failed), one line on stderr, and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backup.catalog import BackupInfo
    from backup.prune import PruneResult
    from backup.repository import InitResult
    from backup.restore import RestorePlan, RestoreResult
    from backup.run import BackupResult
    from backup.verify import VerifyReport


def dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def init_json(result: InitResult) -> dict[str, Any]:
    return {**result.repository.to_json(), "created": result.created, "adopted": result.adopted}


def backup_json(info: BackupInfo) -> dict[str, Any]:
    """One backup, as ``list`` shows it."""
    return {
        "id": info.id,
        "created_at": info.created_at.isoformat(),
        "trigger": info.trigger,
        "engine": info.engine,
        "verified": info.verified,
        "checked_at": info.checked_at.isoformat() if info.checked_at else None,
        "files": info.files,
        "blobs": len(info.blobs),
        "bytes": info.bytes,
        "stored_bytes": info.stored_bytes,
        "path": str(info.path),
    }


def run_json(result: BackupResult) -> dict[str, Any]:
    return {
        "id": result.backup_id,
        "repository_id": result.repository_id,
        "path": str(result.path),
        "trigger": result.trigger,
        "files": result.files,
        "bytes": result.bytes,
        "stored_bytes": result.stored_bytes,
        "blobs_copied": result.blobs_copied,
        "blobs_skipped": result.blobs_skipped,
        "verified": result.verified,
        "seconds": round(result.seconds, 3),
    }


def verify_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "id": report.backup_id,
        "ok": report.ok,
        "files": report.files,
        "bytes": report.bytes,
        "problems": [
            {
                "file": problem.file,
                "message": problem.message,
                "expected_sha256": problem.expected,
                "actual_sha256": problem.actual,
            }
            for problem in report.problems
        ],
    }


def prune_json(result: PruneResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "dry_run": result.dry_run,
        "policy": str(plan.policy),
        "backups": [
            {
                "id": decision.backup.id,
                "created_at": decision.backup.created_at.isoformat(),
                "verified": decision.backup.verified,
                "action": decision.action,
                "reasons": list(decision.reasons),
            }
            for decision in plan.decisions
        ],
        "kept": len(plan.kept),
        "deleted_backups": (
            [b.id for b in plan.deleted] if result.dry_run else list(result.deleted_backups)
        ),
        "deleted_blobs": (len(plan.blobs_to_delete) if result.dry_run else result.deleted_blobs),
        "freed_bytes": result.freed_bytes,
    }


def restore_json(plan: RestorePlan, result: RestoreResult, target: str) -> dict[str, Any]:
    return {
        "id": result.backup_id,
        "engine": plan.engine,
        "target": target,
        "replaced": result.replaced or None,
        "storage_dir": str(Path(plan.storage_dir)),
        "blobs_written": result.blobs_written,
        "blobs_kept": result.blobs_kept,
    }
