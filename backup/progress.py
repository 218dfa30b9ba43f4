"""Progress of long work: a bar on a terminal, plain lines otherwise, nothing by default.

Run, verify and restore call ``reporter.task(label, total, unit)`` around each long step and
the ``advance`` function it yields with every chunk of bytes or every file. :func:`for_stream`
picks the presentation: click's progress bar when the stream is a terminal, otherwise one line
when a task starts, one every :data:`PLAIN_INTERVAL_SECONDS`, and one when it ends (a log file
or CI output is not flooded with bar redraws).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Final, Literal, Protocol

import click

Unit = Literal["bytes", "files"]
Advance = Callable[[int], None]
PLAIN_INTERVAL_SECONDS: Final = 5.0


def human_size(value: int) -> str:
    """``value`` bytes in B, KiB, MiB or GiB, as the commands print sizes."""
    size = float(value)
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or suffix == "GiB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    return f"{value} B"


def _amount(value: int, unit: Unit) -> str:
    if unit == "files":
        return f"{value} file{'s' if value != 1 else ''}"
    return human_size(value)


class Reporter(Protocol):
    def task(
        self, label: str, total: int | None, unit: Unit
    ) -> AbstractContextManager[Advance]: ...


class NullReporter:
    """No output (library use, the scheduler)."""

    @contextmanager
    def task(self, label: str, total: int | None, unit: Unit) -> Iterator[Advance]:
        yield lambda amount: None


class BarReporter:
    """click's progress bar, on a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    @contextmanager
    def task(self, label: str, total: int | None, unit: Unit) -> Iterator[Advance]:
        if not total:  # a bar needs a length: lines for work of unknown size (pg_dump)
            with PlainReporter(self.stream).task(label, total, unit) as advance:
                yield advance
            return
        with click.progressbar(
            length=total,
            label=label,
            file=self.stream,
            show_pos=unit == "files",
            show_percent=True,
            item_show_func=None,
        ) as bar:
            yield bar.update


class PlainReporter:
    """One line at the start and end of a task, and one every few seconds in between."""

    def __init__(self, stream: IO[str], interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self.stream = stream
        self.interval = interval

    @contextmanager
    def task(self, label: str, total: int | None, unit: Unit) -> Iterator[Advance]:
        done = 0
        started = time.monotonic()
        last = started
        of = f" of {_amount(total, unit)}" if total else ""
        click.echo(
            f"{label}: started" + (f" ({_amount(total, unit)})" if total else ""), file=self.stream
        )

        def advance(amount: int) -> None:
            nonlocal done, last
            done += amount
            now = time.monotonic()
            if now - last >= self.interval:
                last = now
                click.echo(f"{label}: {_amount(done, unit)}{of}", file=self.stream)

        yield advance
        elapsed = time.monotonic() - started
        click.echo(f"{label}: done, {_amount(done, unit)} in {elapsed:.1f}s", file=self.stream)


def for_stream(stream: IO[str]) -> Reporter:
    """A bar on a terminal, plain lines otherwise."""
    return BarReporter(stream) if stream.isatty() else PlainReporter(stream)
