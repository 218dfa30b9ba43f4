"""Log levels: one table from OpenTelemetry severity numbers to the names the dashboard shows.

One spelling of levels everywhere: Python's level names, which the instrumentation sends as the
OpenTelemetry severity text. A record's level is read from its severity number (the
OpenTelemetry ranges: 1-4 TRACE, 5-8 DEBUG, ... 21-24 FATAL, which Python calls CRITICAL), so
a sender that writes "WARN" or "warning" shows up as WARNING all the same.
"""

from __future__ import annotations

from typing import Final

from instrumentation import conventions as names

LEVELS: Final = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The lowest severity number of each level.
SEVERITIES: Final = {level: 1 + 4 * index for index, level in enumerate(LEVELS)}
# The OpenTelemetry short names, accepted as filters (in any case) for the same levels.
LEVEL_ALIASES: Final = {text: level for level, text in names.SEVERITY_TEXTS.items()}
_OTEL_NAMES: Final = names.SEVERITY_TEXTS
_MAX_SEVERITY: Final = 24
UNSPECIFIED: Final = "UNSPECIFIED"


def canonical_level(name: str) -> str | None:
    """``name`` (any case, Python's or OpenTelemetry's spelling) as one of :data:`LEVELS`."""
    upper = name.strip().upper()
    upper = LEVEL_ALIASES.get(upper, upper)
    return upper if upper in SEVERITIES else None


def level_of(severity_number: int, severity_text: str) -> str:
    """The level a record is shown with: from its number, or its text when it has no number."""
    if 1 <= severity_number <= _MAX_SEVERITY:
        return LEVELS[(severity_number - 1) // 4]
    return canonical_level(severity_text) or (severity_text or UNSPECIFIED)


def severity_text(severity_number: int) -> str:
    """The OpenTelemetry short name (``WARN``, ``FATAL``, ...) for a record sent without text."""
    if severity_number < 1:
        return UNSPECIFIED
    level = LEVELS[(min(severity_number, _MAX_SEVERITY) - 1) // 4]
    return _OTEL_NAMES.get(level, level)
