"""Which backups to keep: grandfather-father-son retention, as a plan that explains itself.

:func:`plan_retention` is pure: it takes the complete backups (what the catalog lists), the
policy and the blobs the archive holds, and decides for every backup whether it stays and why.
:mod:`backup.prune` carries the plan out; a dry run prints it.

The rules, each a reason to keep a backup (a backup may be kept by several):

* ``last N``: the N newest backups.
* ``daily`` / ``weekly`` / ``monthly``: the newest backup of each of the K most recent UTC days,
  ISO weeks or months *that hold a backup* (as restic and borg count them: a scheduler that
  stopped for a month does not lose its history to the calendar).
* ``newest verified``: the newest backup whose verify succeeded is never deleted, so that one
  proven backup always remains whatever the counts say.

A blob goes only when no backup that stays references it; blobs that no manifest references at
all (left by a run that was killed) go too. The caller holds the run lock, so no run in flight
can be relying on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backup.catalog import BackupInfo
    from backup.settings import BackupSettings


@dataclass(frozen=True)
class RetentionPolicy:
    """How many backups each rule keeps; 0 switches a bucket rule off."""

    keep_last: int = 7
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6

    @classmethod
    def from_settings(cls, settings: BackupSettings) -> RetentionPolicy:
        return cls(
            keep_last=settings.keep_last,
            keep_daily=settings.keep_daily,
            keep_weekly=settings.keep_weekly,
            keep_monthly=settings.keep_monthly,
        )

    def __str__(self) -> str:
        return (
            f"last {self.keep_last}, {self.keep_daily} daily, {self.keep_weekly} weekly, "
            f"{self.keep_monthly} monthly"
        )


@dataclass(frozen=True)
class Decision:
    """What happens to one backup, and every reason for it."""

    backup: BackupInfo
    keep: bool
    reasons: tuple[str, ...]

    @property
    def action(self) -> str:
        return "keep" if self.keep else "delete"


@dataclass(frozen=True)
class RetentionPlan:
    """The decision for every backup (oldest first) and the blobs that become unreferenced."""

    policy: RetentionPolicy
    decisions: tuple[Decision, ...]
    blobs_to_delete: frozenset[str]

    @property
    def kept(self) -> list[BackupInfo]:
        return [d.backup for d in self.decisions if d.keep]

    @property
    def deleted(self) -> list[BackupInfo]:
        return [d.backup for d in self.decisions if not d.keep]


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def _week(when: datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _month(when: datetime) -> str:
    return when.strftime("%Y-%m")


# (rule name, its count in the policy, the period a backup falls in)
_BUCKET_RULES: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("daily", "keep_daily", _day),
    ("weekly", "keep_weekly", _week),
    ("monthly", "keep_monthly", _month),
)


def _bucket_decisions(
    newest_first: Sequence[BackupInfo], rule: str, count: int, period_of: Callable[[datetime], str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Reasons to keep (by backup id) under one bucket rule, and why the others are not kept."""
    kept: dict[str, str] = {}
    not_kept: dict[str, str] = {}
    periods: dict[str, str] = {}  # period -> id of its newest backup
    for backup in newest_first:
        period = period_of(backup.created_at)
        if period in periods:
            not_kept[backup.id] = f"{rule} {period} keeps the newer {periods[period]}"
        elif len(periods) < count:
            periods[period] = backup.id
            kept[backup.id] = f"{rule} {period}"
        else:
            not_kept[backup.id] = f"{rule} {period} is older than the {count} newest"
    return kept, not_kept


def plan_retention(
    backups: Iterable[BackupInfo],
    policy: RetentionPolicy,
    archived_blobs: Iterable[str] = (),
    *,
    newest_verified: str | None = None,
) -> RetentionPlan:
    """Decide, for every backup, keep or delete and why; and which archived blobs then go.

    Never deletes the newest verified backup, nor any blob that a kept backup references.
    ``newest_verified`` names it (the backup a prune has just proven); without it, the newest
    backup whose recorded check passed.
    Applying the plan and planning again with the same policy deletes nothing more.
    """
    newest_first = sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)
    reasons: dict[str, list[str]] = {b.id: [] for b in newest_first}
    refusals: dict[str, list[str]] = {b.id: [] for b in newest_first}
    for position, backup in enumerate(newest_first):
        if position < policy.keep_last:
            reasons[backup.id].append(f"last {policy.keep_last} (#{position + 1})")
        else:
            refusals[backup.id].append(f"not among the last {policy.keep_last}")
    for rule, field, period_of in _BUCKET_RULES:
        count = getattr(policy, field)
        if count == 0:
            continue
        kept, not_kept = _bucket_decisions(newest_first, rule, count, period_of)
        for backup_id, reason in kept.items():
            reasons[backup_id].append(reason)
        for backup_id, reason in not_kept.items():
            refusals[backup_id].append(reason)
    if newest_verified is None:
        newest_verified = next((b.id for b in newest_first if b.verified), None)
    if newest_verified in reasons:
        reasons[newest_verified].append("newest verified")
    decisions = tuple(
        Decision(backup=b, keep=True, reasons=tuple(reasons[b.id]))
        if reasons[b.id]
        else Decision(backup=b, keep=False, reasons=tuple(refusals[b.id]))
        for b in reversed(newest_first)
    )
    referenced: set[str] = set()
    for decision in decisions:
        if decision.keep:
            referenced.update(decision.backup.blobs)
    return RetentionPlan(
        policy=policy,
        decisions=decisions,
        blobs_to_delete=frozenset(set(archived_blobs) - referenced),
    )
