"""Intervals in settings: ``6h``, ``30m``, ``1d``, ``90s`` or a bare number of seconds.

Kept apart from :mod:`dashboard.settings` so that the settings of a sub-package
(:mod:`dashboard.notify.settings`) can declare interval variables that the dashboard's schema
then includes.
"""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import fields

_DURATION = re.compile(r"^\s*+(\d++(?:\.\d++)?)\s*+([smhd]?)\s*+$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(value: str) -> float:
    """Seconds in ``6h``, ``30m``, ``1d``, ``90s`` or a bare number of seconds.

    Raises :class:`ValueError` for anything else or for a non-positive interval.
    """
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an interval such as 6h, 30m, 1d or 3600")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("the interval must be positive")
    return seconds


class Interval(fields.Field):
    """A settings variable holding an interval, loaded as seconds (a float)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        try:
            return parse_interval(str(value))
        except ValueError as exc:
            raise ma.ValidationError(
                "must be an interval such as 6h, 30m, 1d or a number of seconds"
            ) from exc
