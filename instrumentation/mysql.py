"""MySQL and MariaDB error numbers, read from any of their Python drivers.

PyMySQL, mysqlclient (``MySQLdb``), MariaDB Connector/Python and MySQL Connector/Python all raise
exceptions whose first argument is the server's (or the client library's) error number. The
numbers below 2000 are the server's answers; 2000 and up are the client library's own, among them
"server has gone away" and "lost connection", which mean that no answer came.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONFLICT_CODES",
    "DISCONNECT_CODES",
    "error_code",
    "is_server_answer",
]

_DRIVER_PACKAGES: Final = frozenset({"pymysql", "MySQLdb", "mariadb", "mysql"})

# ER_LOCK_DEADLOCK (the server rolled the transaction back) and ER_LOCK_WAIT_TIMEOUT (a row lock
# was not granted in innodb_lock_wait_timeout). InnoDB rolls back only the statement on a lock
# wait timeout, but a unit of work rolls back and runs again as a whole, which is safe.
CONFLICT_CODES: Final = frozenset({1213, 1205})
# CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ER_CLIENT_INTERACTION_TIMEOUT, ER_SERVER_SHUTDOWN.
DISCONNECT_CODES: Final = frozenset({2006, 2013, 4031, 1053})

_FIRST_CLIENT_CODE: Final = 2000


def error_code(exc: BaseException) -> int | None:
    """The MySQL/MariaDB error number ``exc`` carries, if a MySQL driver raised it."""
    if type(exc).__module__.partition(".")[0] not in _DRIVER_PACKAGES:
        return None
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def is_server_answer(code: int) -> bool:
    """Whether error number ``code`` came from the server (rather than the client library)."""
    return code < _FIRST_CLIENT_CODE
