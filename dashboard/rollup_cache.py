"""The rollup rows a SQLite store's writer wrote last, so that its next write needs not read them.

Every group of spans merges into the rollups of the current minute, hour and day of each
series: reading those rows back is one step of SQLite per row, and each step gives up the GIL
and waits to take it back from the request threads (the naive cache of this module took the
ingest benchmark from 35,400 to 41,600 spans/s in interleaved runs). The rows a write just
wrote are what the next write would read, as long as nobody else wrote in between. That is
checked at the start of each use, inside the write transaction, which on SQLite holds the
database's one write lock:

* another connection, of this process or another, committed: ``PRAGMA data_version`` of the
  connection changed (the same connection must be used; another one starts afresh);
* a connection of this process committed, the writer's own included when it wrote no rollups:
  the engine's commit count (:meth:`RollupCache.count_commit`) is not the one seen after the
  writer's last commit.

Either empties the cache, as does any transaction that fails: entries staged during a
transaction are kept only once it has committed. PostgreSQL stores have no cache (several
receivers write the same rows under row locks).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashboard.rollups import RollupCell, RollupKey

# Entries kept at most; the cache is emptied when a commit would leave more.
MAX_ENTRIES = 16384


class RollupCache:
    """Rollup rows as last written by this store's writer (SQLite only)."""

    def __init__(self) -> None:
        self._entries: dict[RollupKey, RollupCell] = {}
        self._staged: dict[RollupKey, RollupCell] = {}
        # (connection, data_version, commits) after the commit that made the entries.
        self._valid_for: tuple[Any, int, int] | None = None
        self._opened_for: tuple[Any, int, int] | None = None
        self._opened_in: Any = None
        self._commits = 0
        self._lock = threading.Lock()

    def count_commit(self) -> None:
        """Called for every commit of the store's engine (an event listener)."""
        with self._lock:
            self._commits += 1

    def open(self, transaction: Any, driver_connection: Any) -> None:
        """Start a use inside ``transaction``: drop the entries if anybody else wrote.

        A second use inside the same transaction sees what the first one staged.
        """
        if self._opened_in is transaction:
            return
        row = driver_connection.execute("PRAGMA data_version").fetchone()
        with self._lock:
            state = (driver_connection, row[0], self._commits)
        valid = self._valid_for
        if valid is None or valid[0] is not state[0] or valid[1:] != state[1:]:
            self._entries.clear()
            self._valid_for = None
        self._opened_for = state
        self._opened_in = transaction
        self._staged.clear()

    def lookup(self, key: RollupKey) -> RollupCell | None:
        """A copy of the entry for ``key``: merging into it leaves the cache as it is."""
        agg = self._staged.get(key) or self._entries.get(key)
        return None if agg is None else replace(agg, counts=list(agg.counts))

    def stage(self, key: RollupKey, agg: RollupCell) -> None:
        """``agg`` is what this transaction writes for ``key``; it must not change later."""
        self._staged[key] = agg

    def committed(self, transaction: Any) -> None:
        """``transaction`` committed: what it staged is what the rows now hold."""
        if self._opened_in is None:
            return
        if self._opened_in is not transaction:
            self.discard()
            return
        opened, self._opened_for, self._opened_in = self._opened_for, None, None
        if opened is None:
            return
        with self._lock:
            commits = self._commits
        # Exactly one commit since open(): this transaction's own.
        if commits != opened[2] + 1 or len(self._entries) + len(self._staged) > MAX_ENTRIES:
            self.discard()
            return
        self._entries.update(self._staged)
        self._staged.clear()
        self._valid_for = (opened[0], opened[1], commits)

    def discard(self) -> None:
        """The transaction failed, or nothing can be known: forget everything."""
        self._entries.clear()
        self._staged.clear()
        self._valid_for = None
        self._opened_for = None
        self._opened_in = None
