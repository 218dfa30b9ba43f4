"""The dashboard: OTLP/HTTP receiver, telemetry store with rollups, JSON API and Dash UI.

Backend: :mod:`~dashboard.receiver` (``/v1/*``), :mod:`~dashboard.otlp` (bodies into records),
:mod:`~dashboard.writer` (group commit), :mod:`~dashboard.store` and :mod:`~dashboard.schema`
(tables, batched writes), :mod:`~dashboard.rollups`, :mod:`~dashboard.histograms`,
:mod:`~dashboard.retention`, :mod:`~dashboard.reads` and :mod:`~dashboard.api` (``/api/``),
:mod:`~dashboard.server` (:func:`~dashboard.server.create_server`). UI: :mod:`~dashboard.app`
and :mod:`~dashboard.pages`. Settings: :mod:`~dashboard.settings`.
"""
