"""Prometheus's alert states, one evaluation at a time: pending, ``for:``, firing, resolved."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.alerts.rules import Context, Rule, Sample
from dashboard.alerts.state import FIRING, INACTIVE, PENDING, RESOLVED, Alert, advance, fingerprint

LABELS = {"service": "vrp-api"}


def _rule(for_seconds: float) -> Rule:
    def never_called(context: Context) -> Sequence[Sample]:
        raise AssertionError("advance() takes the samples, it does not evaluate")

    return Rule(
        name="HighErrorRate",
        description="5xx share",
        severity="critical",
        for_seconds=for_seconds,
        active=never_called,
        labels={"team": "backend"},
        annotations={"summary": "{{ $labels.service }} errs at {{ $value }}"},
    )


class Run:
    """Evaluations of one rule over time, as the evaluator chains them."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.stored: dict[str, Alert] = {}
        self.moves: list[tuple[str, str, float]] = []

    def at(self, now: float, value: float | None) -> Alert | None:
        """Evaluate at ``now``; the alert as stored afterwards (the store keeps what is
        returned, deletes what is gone and leaves the rest as it was)."""
        samples = [] if value is None else [Sample(LABELS, value, "/requests")]
        changed, transitions, gone = advance(self.rule, samples, self.stored.values(), now)
        for key in gone:
            del self.stored[key]
        self.stored.update((alert.fingerprint, alert) for alert in changed)
        self.moves += [(t.from_state, t.to_state, t.at) for t in transitions]
        return next(iter(self.stored.values()), None)


def test_a_condition_held_for_the_for_duration_goes_pending_then_fires() -> None:
    run = Run(_rule(for_seconds=60))

    first = run.at(1000, 0.2)
    assert first is not None and first.state == PENDING and first.active_since == 1000
    still = run.at(1030, 0.3)
    assert still is not None and still.state == PENDING
    fired = run.at(1060, 0.4)

    assert fired is not None and fired.state == FIRING
    assert (fired.active_since, fired.fired_at, fired.value) == (1000, 1060, 0.4)
    assert fired.labels == {
        "service": "vrp-api",
        "team": "backend",
        "alertname": "HighErrorRate",
        "severity": "critical",
    }
    assert fired.annotations == {"summary": "vrp-api errs at 0.4"}
    assert fired.fingerprint == fingerprint("HighErrorRate", fired.labels)
    assert run.moves == [(INACTIVE, PENDING, 1000), (PENDING, FIRING, 1060)]


def test_for_zero_fires_at_the_first_evaluation() -> None:
    run = Run(_rule(for_seconds=0))

    alert = run.at(500, 1.0)

    assert alert is not None and alert.state == FIRING and alert.fired_at == 500
    assert run.moves == [(INACTIVE, PENDING, 500), (PENDING, FIRING, 500)]


def test_a_firing_alert_whose_condition_ends_is_resolved_and_kept() -> None:
    run = Run(_rule(for_seconds=0))
    run.at(100, 0.5)

    resolved = run.at(130, None)

    assert resolved is not None and resolved.state == RESOLVED
    assert (resolved.fired_at, resolved.resolved_at, resolved.value) == (100, 130, 0.5)
    assert run.at(160, None) == resolved, "a resolved alert stays as it is"
    assert run.moves[-1] == (FIRING, RESOLVED, 130)


def test_a_flapping_condition_restarts_its_for_duration_and_never_fires() -> None:
    run = Run(_rule(for_seconds=60))

    for start in (0, 100, 200, 300):
        assert run.at(start, 0.5).state == PENDING  # type: ignore[union-attr]
        assert run.at(start + 30, 0.5).state == PENDING  # type: ignore[union-attr]
        assert run.at(start + 50, None) is None, "pending and false: back to inactive"

    assert FIRING not in {to for _, to, _ in run.moves}
    assert run.moves.count((PENDING, INACTIVE, 50)) == 1
    assert len([m for m in run.moves if m[1] == PENDING]) == 4


def test_a_resolved_alert_that_comes_back_is_pending_again_then_fires_anew() -> None:
    run = Run(_rule(for_seconds=60))
    run.at(0, 0.5)
    run.at(60, 0.5)
    run.at(90, None)

    again = run.at(120, 0.7)
    assert again is not None and again.state == PENDING and again.active_since == 120
    refired = run.at(180, 0.7)

    assert refired is not None and refired.state == FIRING and refired.fired_at == 180
    assert refired.resolved_at is None
    assert run.moves[-2:] == [(RESOLVED, PENDING, 120), (PENDING, FIRING, 180)]


def test_each_label_set_is_an_alert_of_its_own() -> None:
    rule = _rule(for_seconds=0)
    samples = [Sample({"service": name}, 0.5, "/requests") for name in ("a", "b", "a")]

    alerts, transitions, _ = advance(rule, samples, [], 10)

    assert sorted(a.labels["service"] for a in alerts) == ["a", "b"]
    assert len({a.fingerprint for a in alerts}) == 2
    assert len(transitions) == 4
