"""Tables of the alert states, their history, silences and notification deliveries.

Part of the telemetry store's schema (:data:`dashboard.schema.metadata`), created by revision
0004. Times here are Unix seconds (floats), as in :mod:`dashboard.alert_events`; labels,
annotations and fingerprint lists are JSON text.
"""

from __future__ import annotations

import sqlalchemy as sa

from dashboard.schema import metadata

alert_states = sa.Table(
    "alert_states",
    metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("rule", sa.String(255), nullable=False),
    # pending, firing or resolved; an alert that goes back to inactive from pending is deleted.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("annotations", sa.Text, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("url", sa.Text, nullable=False),
    # When the condition last became true (the start of "for:"), when it fired, when resolved.
    sa.Column("active_since", sa.Float, nullable=False),
    sa.Column("fired_at", sa.Float, nullable=True),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Column("evaluated_at", sa.Float, nullable=False),
    sa.Index("ix_alert_states_rule", "rule"),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("rule", sa.String(255), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("from_state", sa.String(16), nullable=False),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_alert_history_at", "at"),
    sa.Index("ix_alert_history_fingerprint", "fingerprint", "at"),
)

alert_silences = sa.Table(
    "alert_silences",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # One of the two: every alert of a rule, or one alert.
    sa.Column("rule", sa.String(255), nullable=True),
    sa.Column("fingerprint", sa.String(32), nullable=True),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Index("ix_alert_silences_ends", "ends_at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("channel", sa.String(255), nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("fingerprints", sa.Text, nullable=False),
    sa.Column("states", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_alert_deliveries_at", "at"),
)
