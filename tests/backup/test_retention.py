"""Retention: properties of the grandfather-father-son plan over random histories and policies.

The plan is checked against an independent oracle (group by period, then pick the newest),
not against its own code path; the on-disk prune is in ``test_retention_prune.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backup.catalog import BackupInfo
from backup.retention import RetentionPlan, RetentionPolicy, plan_retention

BLOB_POOL = [f"{i:02x}" * 32 for i in range(12)]
START = datetime(2025, 11, 1, tzinfo=UTC)


@st.composite
def histories(draw: st.DrawFn) -> list[BackupInfo]:
    """Up to 60 backups over about 14 months, bursty (several a day) as well as sparse."""
    offsets = draw(
        st.lists(
            st.one_of(
                st.integers(0, 420 * 24 * 3600),
                st.integers(0, 3 * 24 * 3600),  # bursts in the first days
            ),
            max_size=60,
            unique=True,
        )
    )
    backups = []
    for index, offset in enumerate(sorted(offsets)):
        created = START + timedelta(seconds=offset)
        backups.append(
            BackupInfo(
                id=f"{created:%Y%m%dT%H%M%SZ}-{index:06x}",
                path=Path("/nonexistent") / str(index),
                created_at=created,
                trigger=draw(st.sampled_from(["schedule", "manual"])),
                verified=draw(st.booleans()),
                blobs=frozenset(draw(st.lists(st.sampled_from(BLOB_POOL), max_size=5))),
                bytes=0,
                stored_bytes=0,
            )
        )
    return backups


policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 10),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 14),
)
archives = st.frozensets(st.sampled_from(BLOB_POOL))


def _kept_ids(plan: RetentionPlan) -> set[str]:
    return {b.id for b in plan.kept}


def _newest_of_recent_periods(
    backups: list[BackupInfo], count: int, period: Callable[[datetime], object]
) -> set[str]:
    groups: dict[object, list[BackupInfo]] = defaultdict(list)
    for backup in backups:
        groups[period(backup.created_at)].append(backup)
    recent = sorted(groups, reverse=True)[:count]
    return {max(groups[p], key=lambda b: (b.created_at, b.id)).id for p in recent}


def _oracle(backups: list[BackupInfo], policy: RetentionPolicy) -> set[str]:
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id))
    keep = {b.id for b in ordered[::-1][: policy.keep_last]}
    keep |= _newest_of_recent_periods(backups, policy.keep_daily, lambda t: t.date())
    keep |= _newest_of_recent_periods(backups, policy.keep_weekly, lambda t: t.isocalendar()[:2])
    keep |= _newest_of_recent_periods(backups, policy.keep_monthly, lambda t: (t.year, t.month))
    verified = [b for b in ordered if b.verified]
    if verified:
        keep.add(verified[-1].id)
    return keep


@given(histories(), policies, archives)
def test_newest_verified_backup_always_survives(
    backups: list[BackupInfo], policy: RetentionPolicy, archived: frozenset[str]
) -> None:
    plan = plan_retention(backups, policy, archived)
    verified = [b for b in backups if b.verified]
    if verified:
        newest = max(verified, key=lambda b: b.created_at)
        assert newest.id in _kept_ids(plan)
        [decision] = [d for d in plan.decisions if d.backup.id == newest.id]
        assert "newest verified" in decision.reasons


@given(histories(), policies, archives)
def test_no_blob_a_remaining_backup_references_is_deleted(
    backups: list[BackupInfo], policy: RetentionPolicy, archived: frozenset[str]
) -> None:
    plan = plan_retention(backups, policy, archived)
    referenced = set().union(*(b.blobs for b in plan.kept))
    assert not plan.blobs_to_delete & referenced
    assert plan.blobs_to_delete <= archived
    # and every blob that nothing remaining references goes
    assert plan.blobs_to_delete == archived - referenced


@given(histories(), policies)
def test_the_last_n_newest_backups_always_survive(
    backups: list[BackupInfo], policy: RetentionPolicy
) -> None:
    plan = plan_retention(backups, policy)
    newest = sorted(backups, key=lambda b: b.created_at, reverse=True)[: policy.keep_last]
    assert {b.id for b in newest} <= _kept_ids(plan)


@given(histories(), policies)
def test_every_recent_day_week_and_month_keeps_its_newest_backup(
    backups: list[BackupInfo], policy: RetentionPolicy
) -> None:
    kept = _kept_ids(plan_retention(backups, policy))
    for count, period in (
        (policy.keep_daily, lambda t: t.date()),
        (policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        (policy.keep_monthly, lambda t: (t.year, t.month)),
    ):
        assert _newest_of_recent_periods(backups, count, period) <= kept


@given(histories(), policies)
def test_a_backup_is_kept_exactly_when_some_rule_keeps_it(
    backups: list[BackupInfo], policy: RetentionPolicy
) -> None:
    plan = plan_retention(backups, policy)
    assert _kept_ids(plan) == _oracle(backups, policy)
    for decision in plan.decisions:
        assert decision.reasons, f"{decision.backup.id} has no reason to be {decision.action}"


@given(histories(), policies, archives)
def test_pruning_twice_deletes_nothing_more(
    backups: list[BackupInfo], policy: RetentionPolicy, archived: frozenset[str]
) -> None:
    first = plan_retention(backups, policy, archived)
    second = plan_retention(first.kept, policy, archived - first.blobs_to_delete)
    assert second.deleted == []
    assert second.blobs_to_delete == frozenset()
    assert [d.reasons for d in second.decisions] == [d.reasons for d in first.decisions if d.keep]


@settings(max_examples=30)
@given(histories(), policies)
def test_decisions_list_every_backup_once_oldest_first(
    backups: list[BackupInfo], policy: RetentionPolicy
) -> None:
    plan = plan_retention(reversed(backups), policy)
    assert [d.backup.id for d in plan.decisions] == [b.id for b in backups]


def test_reasons_name_the_rule_and_the_period() -> None:
    day = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)

    def info(when: datetime, suffix: str, verified: bool = False) -> BackupInfo:
        return BackupInfo(
            id=f"{when:%Y%m%dT%H%M%SZ}-{suffix}",
            path=Path("/nonexistent"),
            created_at=when,
            trigger="schedule",
            verified=verified,
            blobs=frozenset(),
            bytes=0,
            stored_bytes=0,
        )

    older_same_day = info(day - timedelta(hours=1), "000001", verified=True)
    newest = info(day, "000002")
    last_month = info(day - timedelta(days=40), "000003")
    plan = plan_retention(
        [older_same_day, newest, last_month],
        RetentionPolicy(keep_last=1, keep_daily=1, keep_weekly=0, keep_monthly=1),
    )
    by_id = {d.backup.id: d for d in plan.decisions}
    assert by_id[newest.id].reasons == ("last 1 (#1)", "daily 2026-11-28", "monthly 2026-11")
    assert by_id[older_same_day.id].keep
    assert by_id[older_same_day.id].reasons == ("newest verified",)
    assert not by_id[last_month.id].keep
    assert by_id[last_month.id].reasons == (
        "not among the last 1",
        "daily 2026-10-19 is older than the 1 newest",
        "monthly 2026-10 is older than the 1 newest",
    )
