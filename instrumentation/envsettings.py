"""One line for a bad environment variable, the same in every package of the stack.

Each package validates its own variables with a marshmallow schema (``Meta.unknown = RAISE``,
one field per variable name) and turns the first error into one line naming the variable, the
value as it may be shown and what is allowed. A value is shown only where it cannot be a
secret: never for a name that says token, password, secret, key, headers, webhook or slack,
never the password of a URL (``*_URL``, ``*_ENDPOINT``; in its user info or its query), and
never for an unknown variable (``VRP_DASHBOARD_TOKN=...`` is a mistyped secret). An unknown
variable reads the same in every package: ``NAME: unknown setting; see the Configuration
section of the README``.
"""

from __future__ import annotations

from collections.abc import Mapping

import marshmallow as ma

from instrumentation.urls import shown_url

# A webhook URL (a Slack incoming webhook, say) carries its credential in its path: the whole
# value is secret.
_SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY", "HEADERS", "WEBHOOK", "SLACK")
_UNKNOWN = "Unknown field."
UNKNOWN_SETTING = "unknown setting; see the Configuration section of the README"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class Flag(ma.fields.Boolean):
    """A yes/no variable: ``1``, ``true``, ``yes``, ``on`` or ``0``, ``false``, ``no``, ``off``."""

    truthy = set(TRUE_WORDS)
    falsy = set(FALSE_WORDS)


def prefixed(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The variables of ``environ`` named ``prefix...``; an empty value means unset."""
    return {
        name: value
        for name, value in environ.items()
        if name.startswith(prefix) and value.strip() != ""
    }


def shown_value(name: str, value: str) -> str:
    """``value`` as it may appear in an error message or a log line."""
    if any(word in name.upper() for word in _SECRET_WORDS):
        return "***"
    # URLs by name: VRP_BACKUP_REMOTE is one too (sftp://user:password@host/path).
    if name.upper().endswith(("_URL", "_ENDPOINT", "_REMOTE")):
        return shown_url(value)
    return value


def invalid_setting_line(error: ma.ValidationError, raw: Mapping[str, str]) -> str:
    """The first (by name) invalid variable of ``error`` as ``NAME='value': problem``.

    A variable the schema does not know is named without its value, with where the valid names
    are listed (a typo must not be ignored).
    """
    messages = error.normalized_messages()
    name = sorted(messages)[0]
    problem = messages[name]
    if isinstance(problem, list):
        problem = " ".join(str(part) for part in problem)
    if problem == _UNKNOWN:
        return f"{name}: {UNKNOWN_SETTING}"
    if isinstance(problem, dict):
        problem = "; ".join(f"{key}: {value}" for key, value in problem.items())
    if name not in raw:
        return f"{name}: {problem}"
    return f"{name}={shown_value(name, raw[name])!r}: {problem}"
