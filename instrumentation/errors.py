"""The one exception family of the instrumentation package.

Callers catch :class:`InstrumentationError` to handle anything this package raises on purpose;
subclasses name the failure so that an HTTP layer can map them (pool exhausted -> 503).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm.exc import StaleDataError

# Attribute an application exception class sets to say "the caller's request was refused".
CLIENT_ERROR_FLAG: Final = "client_error"


def is_client_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` refused the caller's request (404, 409, 412, 422) rather than failed.

    Such an exception rolls a unit back, but by OpenTelemetry's conventions the span keeps
    status UNSET: the service worked as intended. A stale version is optimistic locking doing
    its job (the caller lost a race), so it counts as a client error too.
    """
    return getattr(exc, CLIENT_ERROR_FLAG, False) is True or isinstance(exc, StaleDataError)


class InstrumentationError(Exception):
    """Base of every error raised on purpose by :mod:`instrumentation`."""


class ConfigurationError(InstrumentationError):
    """A setting handed to the package is unusable; the message names it and what is allowed."""


class PoolExhaustedError(InstrumentationError):
    """No database connection became free within ``pool_timeout`` seconds."""

    def __init__(self, pool_name: str, timeout: float) -> None:
        super().__init__(
            f"no database connection free in pool {pool_name!r} within {timeout:g}s; "
            "retry later or give the pool more connections (pool_size, max_overflow)"
        )
        self.pool_name = pool_name
        self.timeout = timeout


class TransactionRetryError(InstrumentationError):
    """A unit of work kept failing on transient errors until its attempts or deadline ran out.

    ``__cause__`` holds the last transient error.
    """

    def __init__(self, attempts: int, elapsed: float, last: BaseException) -> None:
        super().__init__(
            f"transaction gave up after {attempts} attempt(s) in {elapsed:.2f}s: "
            f"{type(last).__name__}"
        )
        self.attempts = attempts
        self.elapsed = elapsed
        self.last = last


class CommitOutcomeUnknownError(InstrumentationError):
    """COMMIT got no answer (the connection went away): the unit may or may not have committed.

    Raised for a unit that declared no way to check whether its commit landed; running it again
    could apply it twice. ``__cause__`` holds the driver error. An HTTP layer answers 503 with
    ``Retry-After``: the client should look for the effect before repeating the request.
    """

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(
            f"the database connection was lost during COMMIT (attempt {attempts}, "
            f"{type(last).__name__}); whether the transaction committed is unknown: check for "
            "its effect before repeating it"
        )
        self.attempts = attempts
        self.last = last
