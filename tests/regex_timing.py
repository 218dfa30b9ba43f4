"""Time regular expressions in a child process, so that a catastrophic one can be stopped.

Python's ``re`` holds the GIL and checks no signal while it matches: a pattern that backtracks
exponentially cannot be interrupted in the test process itself. :class:`PatternTimer` runs the
matching in ``python -m tests.regex_timing``: it sends a batch of recipes (what
:func:`hostile_text` builds a text from, so that long texts cost no pipe traffic) and reads back
one line per recipe, the CPU time of the match at each size. A recipe whose line has not come
``timeout`` seconds of wall time after the previous one ends the child (a new one starts for the
next batch) and counts as catastrophic.

The child looks the pattern up by module and name (``instrumentation.redaction:_KEY_VALUE``), so
what is timed is the compiled object the package uses, flags included.
"""

from __future__ import annotations

import importlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_pattern(ref: str) -> re.Pattern[Any]:
    """The compiled pattern named ``module:name``."""
    module, _, name = ref.partition(":")
    pattern = getattr(importlib.import_module(module), name)
    if type(pattern) is not re.Pattern:
        raise TypeError(f"{ref} is not a compiled pattern")
    return pattern


def hostile_text(prefix: str, unit: str, size: int, *, repeat_prefix: bool, end: str) -> str:
    """``prefix + unit * k + end``, or ``(prefix + unit) * k + end``, about ``size`` long."""
    if repeat_prefix:
        return (prefix + unit) * max(1, size // len(prefix + unit)) + end
    return prefix + unit * max(1, size // len(unit)) + end


def _cpu_seconds(pattern: re.Pattern[Any], text: str | bytes) -> float:
    # finditer covers search, sub and findall (every start position, every match); fullmatch
    # is the one start position that must reach the end, where validators fail on bad input.
    started = time.thread_time()
    for _ in pattern.finditer(text):
        pass
    pattern.fullmatch(text)
    return time.thread_time() - started


def serve() -> None:
    """The child: one JSON batch per stdin line, one line of CPU seconds per recipe."""
    for line in sys.stdin:
        batch = json.loads(line)
        pattern = load_pattern(batch["pattern"])
        for recipe in batch["recipes"]:
            times = []
            for size in batch["sizes"]:
                text: str | bytes = hostile_text(size=size, **recipe)
                if isinstance(pattern.pattern, bytes):
                    text = text.encode("latin-1")
                times.append(_cpu_seconds(pattern, text))
            sys.stdout.write(json.dumps(times) + "\n")
            sys.stdout.flush()


class PatternTimer:
    """A long-lived child process that times batches of matches (see the module doc)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._child: subprocess.Popen[str] | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()

    def measure(
        self, ref: str, recipes: Sequence[dict[str, Any]], sizes: Sequence[int]
    ) -> Iterator[list[float] | None]:
        """Per recipe, the CPU seconds to match its :func:`hostile_text` at each size
        everywhere and as a whole; None (and nothing after it) for one past the timeout.

        Bytes patterns get the text encoded as latin-1 (keep it below U+0100 for them).
        """
        child = self._running()
        assert child.stdin is not None
        request = {"pattern": ref, "recipes": list(recipes), "sizes": list(sizes)}
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        for _ in recipes:
            try:
                answer = self._answers.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                yield None
                return
            if answer is None:
                self.close()
                raise RuntimeError(f"the timing process died on {ref}")
            yield json.loads(answer)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.wait()

    def _running(self) -> subprocess.Popen[str]:
        if self._child is None:
            self._answers = queue.Queue()
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tests.regex_timing"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            threading.Thread(
                target=_forward, args=(self._child, self._answers), daemon=True
            ).start()
        return self._child


def _forward(child: subprocess.Popen[str], answers: queue.Queue[str | None]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        answers.put(line)
    answers.put(None)


if __name__ == "__main__":
    serve()
