"""Database URLs from settings: checked once, and never shown with their secrets.

A URL may carry a password in two places: its user info (``postgresql://app:pw@db/x``) and its
query string (``postgresql://app@db/x?password=pw``, which libpq and psycopg honour, as they do
``sslpassword``). SQLAlchemy's ``render_as_string(hide_password=True)`` masks the first only, so
every package shows a URL through :func:`shown_url` and cleans a driver's message with
:func:`without_secrets` before it reaches a terminal, a log line or a span.

:func:`parse_database_url` turns every way a URL can be malformed (SQLAlchemy raises
``ArgumentError`` for some, a bare ``ValueError`` from ``int()`` for a port such as ``[::1``)
into one :class:`~instrumentation.errors.ConfigurationError` whose message holds no secret, so
that a settings loader can refuse the value in one line.
"""

from __future__ import annotations

from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from instrumentation.errors import ConfigurationError
from instrumentation.redaction import MASK, is_secret_key, redact_text, redact_url

_MAX_PORT = 65535
_POSTGRESQL_DRIVER = "postgresql+psycopg"
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def parse_database_url(value: str) -> URL:
    """``value`` parsed, or :class:`ConfigurationError` saying why (never with a secret in it)."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError, TypeError) as exc:
        reason = without_secrets(str(exc), value)
        raise ConfigurationError(f"not a database URL ({reason})") from None
    if url.port is not None and not 0 < url.port <= _MAX_PORT:
        raise ConfigurationError(f"port {url.port} is out of range 1-{_MAX_PORT}")
    return url


def with_default_driver(url: URL) -> URL:
    """``url`` with a bare ``postgresql://`` read as psycopg 3 (``postgresql+psycopg://``).

    SQLAlchemy's default PostgreSQL driver is psycopg2, which the project does not install; every
    package opens PostgreSQL through psycopg 3, so a URL naming no driver gets that one.
    """
    if url.drivername == "postgresql":
        return url.set(drivername=_POSTGRESQL_DRIVER)
    return url


def database_address(value: str | URL) -> tuple[str, int | None, str | None]:
    """``(host, port, database)`` of a server database, with the dialect's defaults filled in,
    so that two URLs naming one database by other spellings compare equal."""
    url = make_url(value)
    return (
        url.host or "localhost",
        url.port or _DEFAULT_PORTS.get(url.get_backend_name()),
        url.database,
    )


def database_label(value: str | URL) -> str:
    """The database for a person: a SQLite file's path, or ``name on host:port``; never a user,
    password or query (which may hold secrets)."""
    url = make_url(value)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    host, port, database = database_address(url)
    return f"{database} on {host}:{port}" if port else f"{database} on {host}"


def without_credentials(value: str | URL) -> str:
    """``value`` as a URL with its driver, host, port and database only: what telemetry may
    carry to name a database (user and query are left out, as either may hold a secret)."""
    url = make_url(value)
    bare = URL.create(url.drivername, host=url.host, port=url.port, database=url.database)
    return bare.render_as_string(hide_password=True)


def shown_url(value: str | URL) -> str:
    """``value`` as it may appear in a message: the password of its user info and the values of
    secret query parameters (``password``, ``sslpassword``, ``...token``) become ``***``.

    Safe on a string that does not parse: its whole user info is masked then.
    """
    if isinstance(value, URL):
        return redact_url(value.render_as_string(hide_password=True))
    try:
        url = make_url(value)
    except (ArgumentError, ValueError, TypeError):
        return redact_url(_without_user_info(value))
    return redact_url(url.render_as_string(hide_password=True))


def without_secrets(text: str, url: str | URL) -> str:
    """``text`` (a driver's error message, say) with every secret of ``url`` masked in it."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_text(text)


def _secrets(url: str | URL) -> set[str]:
    """The password and secret query values of ``url``, as written and as decoded."""
    raw = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    found: set[str] = set()
    head, _, query = raw.partition("?")
    authority = head.partition("://")[2]
    if "@" in authority:
        user_info = authority.rpartition("@")[0]
        if ":" in user_info:
            found.add(user_info.partition(":")[2])
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if is_secret_key(unquote(key)):
            found.add(value)
    if isinstance(url, URL) and url.password is not None:
        found.add(str(url.password))
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret and secret != MASK}


def _without_user_info(value: str) -> str:
    """``value`` with everything between ``://`` and the last ``@`` before the query masked."""
    scheme, separator, rest = value.partition("://")
    head, question, query = rest.partition("?")
    if not separator or "@" not in head:
        return value
    return f"{scheme}://{MASK}@{head.rpartition('@')[2]}{question}{query}"
