"""The records that alert evaluation hands to notification delivery, and what comes back.

:mod:`dashboard.alerts` evaluates rules and keeps alert states; :mod:`dashboard.notify` groups
events and delivers them. They meet only here, so either side can change without the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

AlertState = Literal["firing", "resolved"]
DeliveryOutcome = Literal["delivered", "failed"]


@dataclass(frozen=True)
class AlertEvent:
    """One alert as it stands after an evaluation: still firing, or resolved by it.

    ``fingerprint`` is stable for a rule and its labels across evaluations and restarts;
    ``url`` is the dashboard path (with query) of the page or trace that explains the alert.
    Times are epoch seconds.
    """

    rule: str
    fingerprint: str
    state: AlertState
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float | None
    starts_at: float
    ends_at: float | None
    url: str


@dataclass(frozen=True)
class DeliveryRecord:
    """The outcome of delivering one notification (a group of events) on one channel.

    ``error`` says what went wrong in words that never contain a secret (no webhook URL,
    no password).
    """

    channel: str
    group_key: str
    fingerprints: tuple[str, ...]
    outcome: DeliveryOutcome
    attempts: int
    at: float
    error: str | None = None
    states: tuple[AlertState, ...] = field(default=())


class DeliverySink(Protocol):
    """Where delivery outcomes are kept (the alert store), so the Alerts page can show them."""

    def record_delivery(self, record: DeliveryRecord) -> None: ...


class AlertNotifier(Protocol):
    """What the evaluator calls after each evaluation with every firing or newly resolved alert."""

    def submit(self, events: Sequence[AlertEvent]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...
