"""Masking of secrets and SQL parameter values in log text, before any handler writes it.

What is masked (the value becomes ``***``, the key or scheme stays so the line still reads):

* the password of any URL with user info: ``postgresql+psycopg://app:s3cret@db/x`` becomes
  ``postgresql+psycopg://app:***@db/x``;
* ``Authorization`` / ``Proxy-Authorization`` / ``X-Api-Key`` header values (the ``Bearer`` or
  ``Basic`` scheme word is kept) and ``Cookie`` / ``Set-Cookie`` values;
* ``key=value`` pairs (also in query strings) and quoted ``"key": "value"`` pairs (JSON, Python
  reprs) whose key ends in ``password``, ``passwd``, ``pwd``, ``secret``, ``token``, ``api_key``,
  ``apikey``, ``secret_key``, ``private_key``, ``credential(s)`` or ``auth`` - so
  ``access_token``, ``client_secret`` and ``db_password`` are covered;
* SQL parameter values: the ``[parameters: ...]`` block SQLAlchemy appends to DBAPI errors is
  removed entirely (``[SQL: ...]`` stays: it holds placeholders only), and PostgreSQL's
  ``Key (col)=(value)`` detail loses its value.

A value cut before its closing quote or bracket (a truncated driver message, a capped line) is
masked to the end of its line. Every pattern runs in linear time on any text, however hostile
(the User-Agent and the path of every access record pass through here).

:class:`RedactionFilter` applies this to a :class:`logging.LogRecord`: the message (formatted
with its args, which are then cleared), extra fields holding text (strings, and strings in
dicts, lists and tuples), the formatted exception and stack, and it drops record attributes
named ``parameters`` / ``params``. It mutates the record in place
(a Python 3.11 filter cannot hand a copy on), so every handler after it also sees the masked
record - which is the intent: a secret should reach no sink. A record is redacted once however
many handlers carry the filter.

The same pass collects the record's extra fields, masked and in the order they were set, for
the handlers to share (:func:`redacted_extras`): the JSON line and the OTLP attributes are built
from that dict instead of each walking the record's forty-odd attributes again.

The common message costs three substring checks (every rule needs an ``@``, ``=`` or ``:``);
one that has them costs a lowercase copy and a few more, and a regex runs only where its
literal keyword occurs.
"""

from __future__ import annotations

import logging
import re
from itertools import islice
from typing import Any

MASK = "***"

_KEY = (
    r"[\w.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|secret[_-]?key"
    r"|private[_-]?key|credentials?|auth)"
)

# Every pattern here sees untrusted text (a User-Agent, a URL path, an exception message), so
# each runs in linear time (tests/test_regular_expressions.py checks it): no two alternatives
# under a repetition can match the same text, repetitions whose text cannot be given back are
# possessive, and a scan that could reach the end of the line without finding its closing part
# falls back to consuming the line, so that the next start position does not scan it again.

# Greedy up to the last "@" before the host, so an unescaped "@" inside the password is covered.
# Anchored on "://" (after any scheme character) rather than on the scheme's first letter: every
# "." or "-" of a long scheme-like run would be a new start position scanning the whole run.
_URL_USERINFO = re.compile(r"(?P<head>(?<=[a-zA-Z0-9+.-])://[^:/?#@\s]*+:)[^\s/?#]*@")
# The block and the rest of its line (SQLAlchemy ends the line with the block).
_SQL_PARAMETERS = re.compile(r"\n?\[parameters: [^\n]*+")
# Without its closing ") already" / ") is", the value is masked up to the end of the line; a
# "Key (" with no ")=(" on its line is consumed unchanged (group "head" unset).
_PG_KEY_DETAIL = re.compile(
    r"(?P<head>\bKey \([^\n]*?\)=\()(?:[^\n]*?(?P<tail>\)(?: already| is)\b)|[^\n]*+)"
    r"|\bKey \([^\n]*+"
)
_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization|x-api-key)(?P<sep>[\"']?\s*+[:=]\s*+[\"']?)"
    r"(?P<scheme>(?:bearer|basic|digest|negotiate|token)\s++)?[^\s\"',;}]+",
    re.IGNORECASE,
)
_COOKIE = re.compile(r"(?P<head>\b(?:set-)?cookie[\"']?\s*+:\s*+[\"']?)[^\r\n\"']+", re.IGNORECASE)
# A quoted value: a backslash always escapes the next character (one way to match it, never
# two), and a value whose closing quote is missing is masked to the end of the line.
_QUOTED_VALUE = (
    r"(?:(?P<dq>\"(?:[^\"\\\n]|\\.)*+\")|(?P<sq>'(?:[^'\\\n]|\\.)*+')"
    r"|(?P<open>[\"'])[^\n]*+)"
)
_KEY_VALUE = re.compile(
    rf"(?P<head>(?<![\w.-]){_KEY}\s*+=\s*+)(?:{_QUOTED_VALUE}|[^\s&,;)\]}}]+)",
    re.IGNORECASE,
)
_QUOTED_PAIR = re.compile(
    rf"(?P<head>(?P<q1>[\"']){_KEY}(?P=q1)\s*+:\s*+){_QUOTED_VALUE}", re.IGNORECASE
)

# Anchored: unanchored, every position of a long word would start a scan to the word's end.
_SECRET_KEY = re.compile(rf"\A{_KEY}\Z", re.IGNORECASE)

_DROPPED_ATTRIBUTES = frozenset({"parameters", "params"})
_CONTAINERS = frozenset({dict, list, tuple})
_SCALARS = frozenset({int, float, bool, type(None)})
_SAMPLE_RECORD = vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None, None))
RECORD_ATTRIBUTES = frozenset(_SAMPLE_RECORD) | {"message", "asctime", "taskName"}
"""Attributes every LogRecord has (plus what formatters add): everything else is an extra field."""
# LogRecord.__init__ sets the same attributes in the same order every time, and the record's
# __dict__ keeps insertion order, so the extras of a plain LogRecord start at this position.
_STANDARD_COUNT = len(_SAMPLE_RECORD)
_STATE = "_vrp"
_NOT_REDACTED = RECORD_ATTRIBUTES | {_STATE}
_EXCEPTION_FORMATTER = logging.Formatter()


def _mask_value(match: re.Match[str]) -> str:
    """``head`` then the value masked, in its quotes (only the opening one if it was unclosed)."""
    if match.group("dq"):
        return f'{match.group("head")}"{MASK}"'
    if match.group("sq"):
        return f"{match.group('head')}'{MASK}'"
    return f"{match.group('head')}{match.group('open') or ''}{MASK}"


def _mask_pg_key_detail(match: re.Match[str]) -> str:
    head = match.group("head")
    if head is None:
        return match.group(0)
    return f"{head}{MASK}{match.group('tail') or ''}"


def _mask_header(match: re.Match[str]) -> str:
    return f"{match.group('head')}{match.group('sep')}{match.group('scheme') or ''}{MASK}"


def is_secret_key(name: str) -> bool:
    """Whether the value of a ``name=value`` pair is masked (``password``, ``client_secret``)."""
    return _SECRET_KEY.match(name) is not None


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret query values replaced by ``***``.

    Safe on any text holding URLs; a string without credentials comes back unchanged.
    """
    if "@" in url:
        url = _URL_USERINFO.sub(rf"\g<head>{MASK}@", url)
    if "=" in url:
        url = _KEY_VALUE.sub(_mask_value, url)
    return url


def redact_text(text: str) -> str:
    """``text`` with every secret and SQL parameter value listed in the module doc masked.

    Idempotent, and returns ``text`` itself when nothing needed masking.
    """
    has_at = "@" in text
    has_eq = "=" in text
    has_colon = ":" in text
    if not (has_at or has_eq or has_colon):
        return text
    if has_colon and "[parameters: " in text:
        text = _SQL_PARAMETERS.sub("", text)
    if has_at and "://" in text:
        text = _URL_USERINFO.sub(rf"\g<head>{MASK}@", text)
    if has_eq and "Key (" in text:
        text = _PG_KEY_DETAIL.sub(_mask_pg_key_detail, text)
    # Case-insensitive regexes are slow to scan; a lowered copy gates them on literal keywords.
    lowered = text.lower()
    if "authoriz" in lowered or "x-api-key" in lowered:
        text = _HEADER.sub(_mask_header, text)
    if has_colon and "cookie" in lowered:
        text = _COOKIE.sub(rf"\g<head>{MASK}", text)
    if _mentions_secret_key(lowered):
        if has_colon and ('"' in text or "'" in text):
            text = _QUOTED_PAIR.sub(_mask_value, text)
        if has_eq:
            text = _KEY_VALUE.sub(_mask_value, text)
    return text


def _mentions_secret_key(lowered: str) -> bool:
    return (
        "pass" in lowered
        or "pwd" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "key" in lowered
        or "cred" in lowered
        or "auth" in lowered
    )


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: _redact_value(item)
            for key, item in value.items()
            if key not in _DROPPED_ATTRIBUTES
        }
    if isinstance(value, list | tuple):
        items = [_redact_value(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _added_fields(record: logging.LogRecord) -> Any:
    fields = record.__dict__
    if type(record) is logging.LogRecord:
        return islice(fields.items(), _STANDARD_COUNT, None)
    return fields.items()


def record_state(record: logging.LogRecord) -> dict[str, Any]:
    """This package's bookkeeping for one record (what was done to it, results to share).

    It is one attribute of the record, so what the handlers note there does not count as a
    field added to the record (see :func:`redacted_extras`).
    """
    fields = record.__dict__
    state: dict[str, Any] | None = fields.get(_STATE)
    if state is None:
        state = fields[_STATE] = {}
    return state


def redacted_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra fields (not a standard attribute, not starting with ``_``), in order.

    After :class:`RedactionFilter` the values are the masked ones. The dict is made once per
    record and shared: callers must not change it. Fields added to the record since (another
    filter's) make it be built again.
    """
    return _extras(record)[0]


def scalar_extras(record: logging.LogRecord) -> dict[str, Any] | None:
    """:func:`redacted_extras` if every value is a ``str``, ``int``, ``float``, ``bool`` or
    ``None`` (known from the redaction pass, at no extra cost), else ``None``."""
    extras, scalars = _extras(record)
    return extras if scalars else None


def _extras(record: logging.LogRecord) -> tuple[dict[str, Any], bool]:
    state = record_state(record)
    cached = state.get("extras")
    if cached is not None and cached[0] == len(record.__dict__):
        return cached[1], cached[2]
    extras = {
        key: value
        for key, value in _added_fields(record)
        if key[0] != "_" and key not in RECORD_ATTRIBUTES
    }
    state["extras"] = (len(record.__dict__), extras, False)
    return extras, False


class RedactionFilter(logging.Filter):
    """Masks secrets in a record in place and always lets it through (see the module doc).

    It never raises: a record whose message cannot be formatted is left for the handler's own
    error path (``Handler.handleError``) rather than breaking the caller's logging call.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        state = record_state(record)
        if "redacted" in state:
            return True
        try:
            extras, scalars = self._redact(record)
        except Exception:  # a log call must never fail because of redaction
            return True
        state["redacted"] = True
        state["extras"] = (len(record.__dict__), extras, scalars)
        return True

    @staticmethod
    def _redact(record: logging.LogRecord) -> tuple[dict[str, Any], bool]:
        msg = record.msg
        if isinstance(msg, dict) and not record.args:
            record.msg = _redact_value(msg)
        else:
            record.msg = redact_text(
                msg if type(msg) is str and not record.args else record.getMessage()
            )
            record.args = None
        fields = record.__dict__
        for key in _DROPPED_ATTRIBUTES:
            fields.pop(key, None)
        # Only text can carry a secret: numbers, None and booleans are set aside by one type
        # test, and a string without "@", "=" or ":" by redact_text's first three substring
        # tests. The extras are collected on the way (see redacted_extras).
        masked: list[tuple[str, Any]] = []
        extras: dict[str, Any] = {}
        scalars = True
        for key, value in _added_fields(record):
            if key in _NOT_REDACTED:
                continue
            kind = type(value)
            if kind is str:
                # redact_text's own first test, inlined: most extras are short plain strings.
                if "@" in value or "=" in value or ":" in value:
                    cleaned = redact_text(value)
                else:
                    cleaned = value
            elif kind in _SCALARS:
                cleaned = value
            else:
                if key[0] != "_":
                    scalars = False
                if kind in _CONTAINERS or isinstance(value, str | dict | list | tuple):
                    cleaned = _redact_value(value)
                else:
                    cleaned = value
            if cleaned is not value:
                masked.append((key, cleaned))
            if key[0] != "_":
                extras[key] = cleaned
        for key, cleaned in masked:
            fields[key] = cleaned
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return extras, scalars
