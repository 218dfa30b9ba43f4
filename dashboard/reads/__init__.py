"""The reads behind ``/api/``: each panel function returns one JSON document of the API contract.

Rates and percentiles come from rollups (minute rollups for ranges up to 6 h, hour rollups
beyond), so their cost depends on the number of series and time buckets in the range, not on
the number of spans. Raw spans serve drill-down only: examples, traces, waterfalls, N+1.
Durations are milliseconds; times are ISO 8601 UTC; a percentile with no data is ``None``.

The generic reader, which the alert rules use too: :mod:`~dashboard.reads.window` (the time
range and its buckets), :mod:`~dashboard.reads.totals` (series and adding their rows up) and
:mod:`~dashboard.reads.rollups` (selecting series and reading their rollup rows). The panels,
one module per family of pages: :mod:`~dashboard.reads.traffic` (services, overview, requests),
:mod:`~dashboard.reads.database` (queries, pool, transactions), :mod:`~dashboard.reads.logs`
and :mod:`~dashboard.reads.traces`.
"""
