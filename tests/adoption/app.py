"""A third-party Flask + SQLAlchemy app that adopts the instrumentation in two lines.

It is written as any small app is: its own engine from a URL, its own ``sessionmaker``, its own
HTML error pages, its own logging handler on its own logger. Nothing in it knows the
instrumentation except :func:`adopt`, the two lines docs/adopting.md shows. Where the telemetry
goes is the operator's choice, through the standard ``OTEL_*`` variables.

Run as a script it serves a fixed series of requests through Flask's test client and writes, on
stdout, one JSON document with each response (status, content type, body); the app's own log
goes to ``--app-log``. ``--instrument`` adopts the instrumentation first. The adoption tests run
it with and without, on SQLite, PostgreSQL and MariaDB, and compare.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import sqlalchemy as sa
from flask import Flask, abort, request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import instrumentation

REQUESTS = [
    ("GET", "/notes", None),
    ("POST", "/notes", {"text": "buy milk"}),
    ("POST", "/notes", {"text": "call the plumber"}),
    ("GET", "/notes/1", None),
    ("GET", "/notes/999", None),
    ("GET", "/nowhere", None),
    ("GET", "/crash", None),
    ("GET", "/notes", None),
]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(200))


def create_app(engine: sa.Engine) -> Flask:
    app = Flask("notes")
    sessions: sessionmaker[Session] = sessionmaker(engine)
    log = logging.getLogger("notes")

    @app.get("/notes")
    def list_notes() -> list[dict[str, object]]:
        with sessions() as session:
            notes = session.scalars(sa.select(Note).order_by(Note.id)).all()
            return [{"id": note.id, "text": note.text} for note in notes]

    @app.post("/notes")
    def create_note() -> tuple[dict[str, object], int]:
        text = str((request.get_json(silent=True) or {}).get("text", ""))[:200]
        with sessions.begin() as session:
            note = Note(text=text)
            session.add(note)
            session.flush()
            created = {"id": note.id, "text": note.text}
        log.info("note %d created", created["id"])
        return created, 201

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> dict[str, object]:
        with sessions() as session:
            note = session.get(Note, note_id)
            if note is None:
                log.warning("note %d not found", note_id)
                abort(404)
            return {"id": note.id, "text": note.text}

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("the notes app crashed on purpose")

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return "<!doctype html><h1>No such page</h1><p>Try the notes list.</p>", 404

    @app.errorhandler(500)
    def server_error(error: Exception) -> tuple[str, int]:
        return "<!doctype html><h1>Sorry</h1><p>Something broke on our side.</p>", 500

    return app


def adopt(app: Flask, engine: sa.Engine) -> None:
    """The adoption, as docs/adopting.md shows it."""
    instrumentation.init(app, service_name="notes")
    instrumentation.instrument_engine(engine)


def serve_requests(app: Flask) -> list[dict[str, object]]:
    client = app.test_client()
    answers = []
    for method, path, body in REQUESTS:
        response = client.open(path, method=method, json=body)
        answers.append(
            {
                "request": f"{method} {path}",
                "status": response.status_code,
                "content_type": response.content_type,
                "body": response.get_data(as_text=True),
            }
        )
    return answers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--app-log", required=True)
    parser.add_argument("--instrument", action="store_true")
    options = parser.parse_args(argv)

    # The app's own logging: its handler, its format, on its own logger.
    handler = logging.FileHandler(options.app_log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    app_logger = logging.getLogger("notes")
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.INFO)

    engine = sa.create_engine(options.database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    app = create_app(engine)
    if options.instrument:
        adopt(app, engine)
    answers = serve_requests(app)
    engine.dispose()
    sys.stdout.write(json.dumps(answers, indent=1) + "\n")


if __name__ == "__main__":
    main()
