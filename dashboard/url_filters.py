"""The shared view of every page, as the URL's query string holds it: a time range and a service.

``?range=6h&service=vrp-api`` is a relative range (one of the presets, up to now) and
``?from=2026-12-07T04:00:00Z&to=2026-12-07T05:00:00Z`` an absolute one (a typed range or a
drag-to-zoom on a chart); ``service`` narrows every page to one service. Copying the URL gives
the same view; the defaults (the last hour, all services) are left out of it.

Links from one page to another carry the view (:func:`with_view`), so that following one keeps
the range and the service, as the navigation bar's links do.

In the navigation bar the range is one dropdown value: a preset (``1h``) or an absolute range
written as an ISO 8601 interval, ``<from>/<to>`` in UTC. The pages hand that value to
:func:`window` and :func:`previous_window` and never parse the URL themselves.

Anything the URL holds that is not a valid range (a misspelt preset, a time without a zone, a
``from`` after ``to``) falls back to the default rather than failing the page: a shared link
that has been cut short still opens the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

PRESETS: tuple[tuple[str, str, timedelta], ...] = (
    ("15m", "last 15 minutes", timedelta(minutes=15)),
    ("1h", "last hour", timedelta(hours=1)),
    ("6h", "last 6 hours", timedelta(hours=6)),
    ("24h", "last 24 hours", timedelta(hours=24)),
    ("7d", "last 7 days", timedelta(days=7)),
)
DEFAULT_RANGE = "1h"
ALL_SERVICES = ""
MAX_SERVICE_LENGTH = 255  # as the API accepts
KEYS = ("range", "from", "to", "service")
_RANGE_KEYS = frozenset(KEYS[:3])
_LENGTHS = {value: length for value, _label, length in PRESETS}
_INTERVAL = "/"


@dataclass(frozen=True)
class Filters:
    """The range as the navigation bar's dropdown holds it and the service (``""``: all)."""

    range_value: str = DEFAULT_RANGE
    service: str = ALL_SERVICES

    @property
    def absolute(self) -> tuple[datetime, datetime] | None:
        return absolute_range(self.range_value)


def iso_utc(moment: datetime) -> str:
    """``2026-12-07T04:00:00Z``: whole seconds unless the moment has a fraction (zooms do)."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_instant(text: str | None) -> datetime | None:
    """An ISO 8601 time with a zone as an aware UTC datetime; None for anything else.

    A time without a zone is read as UTC, as every time on the pages is (Plotly's axes, typed
    ranges); ``Z`` is accepted for ``+00:00``.
    """
    if not text or len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def absolute_value(since: datetime, until: datetime) -> str:
    return f"{iso_utc(since)}{_INTERVAL}{iso_utc(until)}"


def absolute_range(range_value: str | None) -> tuple[datetime, datetime] | None:
    """The (since, until) of an absolute range value; None for a preset or anything invalid."""
    if not range_value or _INTERVAL not in range_value:
        return None
    first, _, last = range_value.partition(_INTERVAL)
    since, until = parse_instant(first), parse_instant(last)
    if since is None or until is None or since >= until:
        return None
    return since, until


def is_preset(range_value: str | None) -> bool:
    return range_value in _LENGTHS


def bounds(range_value: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The (since, until) of a range value, aware UTC datetimes; a preset ends at ``now``."""
    found = absolute_range(range_value)
    if found is not None:
        return found
    until = now or datetime.now(UTC)
    return until - _LENGTHS.get(range_value or "", _LENGTHS[DEFAULT_RANGE]), until


def length(range_value: str | None) -> timedelta:
    since, until = bounds(range_value, datetime(2000, 1, 1, tzinfo=UTC))
    return until - since


def window(range_value: str | None, service: str | None) -> dict[str, str | None]:
    """The common query parameters of the JSON API for the chosen range and service."""
    found = absolute_range(range_value)
    if found is not None:
        since, until = (iso_utc(moment) for moment in found)
        return {"since": since, "until": until, "service": service or None}
    preset = range_value if range_value in _LENGTHS else DEFAULT_RANGE
    return {"since": preset, "service": service or None}


def previous_window(
    range_value: str | None, service: str | None, now: datetime | None = None
) -> tuple[dict[str, str | None], timedelta]:
    """The API parameters of the period just before the chosen one, of the same length, and
    that length: what a point of the previous period is shifted by to lie over the current one.
    """
    since, until = bounds(range_value, now)
    span = until - since
    params = {"since": iso_utc(since - span), "until": iso_utc(since), "service": service or None}
    return params, span


def from_query(search: str | None) -> Filters:
    """The view a URL's query string asks for (``?range=..`` or ``?from=..&to=..``, ``service``)."""
    query = dict(parse_qsl((search or "").lstrip("?"), max_num_fields=64))
    service = query.get("service", ALL_SERVICES)
    if len(service) > MAX_SERVICE_LENGTH or not service.isprintable():
        service = ALL_SERVICES
    since, until = parse_instant(query.get("from")), parse_instant(query.get("to"))
    if since is not None and until is not None and since < until:
        return Filters(absolute_value(since, until), service)
    preset = query.get("range", DEFAULT_RANGE)
    return Filters(preset if preset in _LENGTHS else DEFAULT_RANGE, service)


def to_query(filters: Filters, search: str | None = None) -> str:
    """``search`` (a page's own parameters, such as ``?trace=``, kept) with the view's in it.

    Empty (``""``) when nothing is left: the default view needs no query string.
    """
    kept = [
        (key, value)
        for key, value in parse_qsl((search or "").lstrip("?"), max_num_fields=64)
        if key not in KEYS
    ]
    found = filters.absolute
    if found is not None:
        kept += [("from", iso_utc(found[0])), ("to", iso_utc(found[1]))]
    elif filters.range_value != DEFAULT_RANGE and filters.range_value in _LENGTHS:
        kept.append(("range", filters.range_value))
    if filters.service:
        kept.append(("service", filters.service))
    return "?" + urlencode(kept) if kept else ""


def same_query(one: str | None, other: str | None) -> bool:
    """Whether two query strings hold the same parameters, whatever their order."""

    def pairs(search: str | None) -> list[tuple[str, str]]:
        return sorted(parse_qsl((search or "").lstrip("?"), max_num_fields=64))

    return pairs(one) == pairs(other)


def with_view(href: str, view: Filters) -> str:
    """``href`` (a page's path and its own parameters, ``/traces?trace=..``) carrying ``view``:
    every link from one page to another, the navigation bar's and those in tables alike, so
    that the page it opens shows the same range and service.

    A range or a service the link names itself (an alert's ``/?service=vrp-api``) is kept: it
    is what the link is about.
    """
    path, _, search = href.partition("?")
    own = {key for key, _value in parse_qsl(search, max_num_fields=64)}
    named = from_query(search)
    carried = Filters(
        named.range_value if own & _RANGE_KEYS else view.range_value,
        named.service if "service" in own else view.service,
    )
    return path + to_query(carried, search)


def flag(search: str | None, key: str) -> bool:
    """Whether a page's own switch is on in the URL (``?compare=1``)."""
    return dict(parse_qsl((search or "").lstrip("?"), max_num_fields=64)).get(key) == "1"


def with_flag(search: str | None, key: str, on: bool) -> str:
    """``search`` with a page's switch set (``key=1``) or left out, the rest kept."""
    kept = [(k, v) for k, v in parse_qsl((search or "").lstrip("?"), max_num_fields=64) if k != key]
    if on:
        kept.append((key, "1"))
    return "?" + urlencode(kept) if kept else ""


def describe(range_value: str | None) -> str:
    """How a range reads in the dropdown: ``last hour``, ``Dec 07 04:00-05:10 UTC``.

    Absolute ranges are shown to the minute so that the label fits the navigation bar; the URL
    and the from/to fields keep the exact times.
    """
    for value, label, _length in PRESETS:
        if value == range_value:
            return label
    found = absolute_range(range_value)
    if found is None:
        return describe(DEFAULT_RANGE)
    since, until = found
    last = until.strftime("%H:%M" if since.date() == until.date() else "%b %d %H:%M")
    return f"{since:%b %d %H:%M}-{last} UTC"


def duration_text(span: timedelta) -> str:
    """``1 h``, ``15 min``, ``7 days``, ``90 s``: how long a range or a bucket is."""
    seconds = round(span.total_seconds())
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        amount = seconds / size
        # A preset's range measured between two clocks is a little over its length: 6 h.
        whole = abs(amount - round(amount)) < 0.01
        if amount >= 1 and (whole or amount >= 2):
            text = f"{amount:.0f}" if whole else f"{amount:.1f}"
            return f"{text} {'day' if unit == 'days' and text == '1' else unit}"
    return f"{seconds:.0f} s"
