"""Prometheus's alert states: inactive -> pending -> firing -> resolved, one evaluation at a time.

An alert is one rule and one label set (its :func:`fingerprint`). At each evaluation:

* condition true, no alert (or a resolved one): it becomes **pending** from now; with
  ``for: 0`` it fires at once;
* pending and still true: it **fires** once it has been true for the rule's ``for:``;
* pending and false: it goes back to **inactive** (forgotten: a flapping condition restarts
  its ``for:`` each time it comes back);
* firing and false: it is **resolved** now (kept, and shown as recently resolved, until it is
  pruned or fires again);
* firing and true: it stays firing, with the new value.

:func:`advance` is pure: it takes the alerts as they stood and returns them as they stand, with
the transitions made, so that the evaluator can store both in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import orjson

from dashboard.alerts.rules import Rule, Sample, render

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"
INACTIVE = "inactive"


@dataclass(frozen=True)
class Alert:
    """One alert as it stands (times are Unix seconds)."""

    fingerprint: str
    rule: str
    state: str
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float | None
    url: str
    active_since: float
    fired_at: float | None
    resolved_at: float | None
    evaluated_at: float

    @property
    def since(self) -> float:
        """When the alert entered its current state."""
        if self.state == RESOLVED and self.resolved_at is not None:
            return self.resolved_at
        if self.state == FIRING and self.fired_at is not None:
            return self.fired_at
        return self.active_since


@dataclass(frozen=True)
class Transition:
    fingerprint: str
    rule: str
    labels: Mapping[str, str]
    from_state: str
    to_state: str
    value: float | None
    at: float


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable across evaluations and restarts for one rule and label set (32 hex digits)."""
    text = orjson.dumps([rule, sorted(labels.items())])
    return hashlib.sha256(text).hexdigest()[:32]


def _labels(rule: Rule, sample: Sample) -> dict[str, str]:
    return {**rule.labels, **sample.labels, "alertname": rule.name, "severity": rule.severity}


def _annotations(rule: Rule, sample: Sample, labels: Mapping[str, str]) -> dict[str, str]:
    merged = {**rule.annotations, **sample.annotations}
    return {key: render(text, labels, sample.value) for key, text in merged.items()}


def advance(
    rule: Rule,
    samples: Sequence[Sample],
    previous: Iterable[Alert],
    now: float,
) -> tuple[list[Alert], list[Transition], list[str]]:
    """The rule's alerts after one evaluation at ``now``.

    ``previous`` are the rule's alerts as stored. Returns the alerts to store (every pending
    and firing one, and those this evaluation resolved; a resolved alert that stays resolved is
    left as stored), the transitions made, and the fingerprints that went back to inactive (to
    delete).
    """
    before = {alert.fingerprint: alert for alert in previous}
    kept: list[Alert] = []
    transitions: list[Transition] = []
    seen: set[str] = set()
    for sample in samples:
        labels = _labels(rule, sample)
        key = fingerprint(rule.name, labels)
        if key in seen:
            continue
        seen.add(key)
        annotations = _annotations(rule, sample, labels)
        old = before.get(key)
        if old is None or old.state == RESOLVED:
            start = Alert(
                key,
                rule.name,
                PENDING,
                rule.severity,
                labels,
                annotations,
                sample.value,
                sample.url,
                active_since=now,
                fired_at=None,
                resolved_at=None,
                evaluated_at=now,
            )
            from_state = INACTIVE if old is None else RESOLVED
            transitions.append(
                Transition(key, rule.name, labels, from_state, PENDING, sample.value, now)
            )
            old = start
        current = replace(
            old,
            severity=rule.severity,
            labels=labels,
            annotations=annotations,
            value=sample.value,
            url=sample.url,
            evaluated_at=now,
        )
        if current.state == PENDING and now - current.active_since >= rule.for_seconds:
            current = replace(current, state=FIRING, fired_at=now)
            transitions.append(
                Transition(key, rule.name, labels, PENDING, FIRING, sample.value, now)
            )
        kept.append(current)
    gone: list[str] = []
    for key, old in before.items():
        if key in seen:
            continue
        if old.state == PENDING:
            gone.append(key)
            transitions.append(Transition(key, rule.name, old.labels, PENDING, INACTIVE, None, now))
        elif old.state == FIRING:
            kept.append(replace(old, state=RESOLVED, resolved_at=now, evaluated_at=now))
            transitions.append(
                Transition(key, rule.name, old.labels, FIRING, RESOLVED, old.value, now)
            )
    return kept, transitions, gone
