"""Configured paths made absolute once, when the settings are read.

A relative path is resolved again at every use, and not every library resolves it against the
same folder: Flask's ``send_file`` joins a relative path to the application's package folder,
not to the working folder, so a file that ``Path.is_file()`` finds can still be "missing" when
served. Settings therefore hold absolute paths only. Each package's settings loader passes every
folder and SQLite file it reads through these helpers, against the working folder the command
was started in (the default ``base``), and the rest of the code never sees a relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from instrumentation.sqlite import is_memory_database

_TRUE = ("1", "true", "yes", "on")


def absolute_path(value: str | os.PathLike[str], base: Path | None = None) -> Path:
    """``value`` as an absolute path: ``~`` expanded, a relative path joined to ``base``.

    ``base`` defaults to the current working folder. Symbolic links are kept as they are
    (no :meth:`Path.resolve`): an operator who points a setting at a link means the link.
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return (base if base is not None else Path.cwd()).absolute() / path


def absolute_sqlite_url(url: str, base: Path | None = None) -> str:
    """``url`` with the file of a SQLite database made absolute (see :func:`absolute_path`).

    Any other URL, an in-memory SQLite database and a SQLite URI filename (``?uri=true``, whose
    path is interpreted by SQLite itself) come back unchanged, as does a URL that does not
    parse: the caller's validation reports that one.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    if (
        parsed.get_backend_name() != "sqlite"
        or is_memory_database(parsed)
        or str(parsed.query.get("uri", "")).lower() in _TRUE
    ):
        return url
    database = absolute_path(str(parsed.database), base)
    return parsed.set(database=str(database)).render_as_string(hide_password=False)
