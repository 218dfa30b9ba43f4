"""The dashboard's pages, in the order of the navigation bar (see :mod:`dashboard.pages.base`)."""

from __future__ import annotations

from dashboard.pages import (
    alerts,
    backups,
    logs,
    overview,
    queries,
    requests,
    traces,
    transactions,
)
from dashboard.pages.base import Page

PAGES: tuple[Page, ...] = (
    overview.PAGE,
    queries.PAGE,
    requests.PAGE,
    transactions.PAGE,
    logs.PAGE,
    traces.PAGE,
    backups.PAGE,
    alerts.PAGE,
)
