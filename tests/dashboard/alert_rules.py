"""A rule the tests switch on and off, and a notifier that keeps what it was given."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.alert_events import AlertEvent
from dashboard.alerts.rules import Context, Rule, Sample


class Switch:
    """The active samples of :attr:`rule`: one per service switched on, with its value."""

    def __init__(self, name: str = "QueueBacklog", for_seconds: float = 60.0) -> None:
        self.on: dict[str, float] = {}
        self.rule = Rule(
            name=name,
            description="a backlog the test switches on",
            severity="warning",
            for_seconds=for_seconds,
            active=self._active,
            annotations={"summary": "backlog of {{ $labels.service }} is {{ $value }}"},
        )

    def _active(self, context: Context) -> Sequence[Sample]:
        return [
            Sample({"service": service}, value, "/requests") for service, value in self.on.items()
        ]


class Recorder:
    """An :class:`~dashboard.alert_events.AlertNotifier` keeping every submitted batch."""

    def __init__(self) -> None:
        self.batches: list[list[AlertEvent]] = []
        self.started = self.stopped = 0

    def submit(self, events: Sequence[AlertEvent]) -> None:
        self.batches.append(list(events))

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def last(self) -> list[tuple[str, str]]:
        """(service, state) of the last batch."""
        return sorted((e.labels["service"], e.state) for e in self.batches[-1])
