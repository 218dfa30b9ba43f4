"""``vrp api --workers N``: the API under gunicorn, N worker processes of threads each.

What each process does, and why:

* the master binds the socket (the CLI hands it over as ``fd://``, so a port in use is one
  line and exit 1, and ``--port 0`` is logged with its real port), checks the schema once,
  logs to ``vrp-api.log`` and stderr, and starts no telemetry: providers, their exporter
  threads and the log buffer's writer thread do not survive a fork, so nothing of them may
  exist before one;
* each worker, after the fork, sets up its own logging (``vrp-api.<slot>.log``: a size-rotated
  file has one writer, and a worker that replaces a dead one takes its slot), its own
  telemetry (a new ``service.instance.id``, so the dashboard keeps each worker's cumulative
  series apart and adds them up), its own database pool, and the Flask app; it serves with
  gunicorn's ``gthread`` worker, ``VRP_API_THREADS`` threads;
* a worker that stops (SIGTERM to the master, a graceful stop of the workers) flushes its
  telemetry and closes its pool on the way out (gunicorn's ``worker_exit`` hook); a worker
  that dies is replaced by the master, a new process with a new instance id.

The master's own records (workers booting and exiting) go through the same JSON logging as
everything else: gunicorn's loggers get no handlers of their own (:class:`_GunicornLogger`).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.base import Worker

from instrumentation.serving import GateMiddleware
from recorder import __version__
from recorder.errors import RecorderError

if TYPE_CHECKING:
    from flask import Flask

    from instrumentation import Database, Instrumentation
    from recorder.config import Settings

logger = logging.getLogger(__name__)

# A worker gets this long to finish its requests and flush its telemetry after SIGTERM.
GRACEFUL_TIMEOUT_S = 10
# A worker silent for this long (its main loop stuck) is killed and replaced.
WORKER_TIMEOUT_S = 60
# Seconds a keep-alive connection may sit idle between two requests (gunicorn's default is 2;
# waitress keeps them longer, and clients that reuse connections should find them open).
KEEPALIVE_S = 15
LISTEN_BACKLOG = 2048


class _GunicornLogger(GunicornLogger):
    """gunicorn's logger, writing through the root logger's handlers instead of its own.

    gunicorn's access log is left off: every request already has its access record.
    """

    def setup(self, cfg: Any) -> None:
        self.error_log.propagate = True
        self.access_log.propagate = False
        self.error_log.setLevel(logging.INFO)


def _free_slot(arbiter: Arbiter) -> int:
    """The smallest worker slot (1, 2, ...) that no live worker holds."""
    taken = {getattr(worker, "vrp_slot", 0) for worker in arbiter.WORKERS.values()}
    slot = 1
    while slot in taken:
        slot += 1
    return slot


class WorkerState:
    """What one worker process set up after the fork, torn down by :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database: Database | None = None
        self.instrumentation: Instrumentation | None = None

    def start(self, slot: int) -> None:
        from instrumentation import init

        # Gunicorn's arbiter owns the workers' signals: it stops a worker through stop().
        self.instrumentation = init(
            service_name=self.settings.telemetry.service_name,
            telemetry_settings=self.settings.telemetry,
            logging_settings=replace(self.settings.logging, file_name=f"vrp-api.{slot}.log"),
            signal_handlers=False,
        )

    def app(self, open_database: Callable[[Settings], Database]) -> Flask:
        from recorder.api import create_app

        self.database = open_database(self.settings)
        app = create_app(self.settings, db=self.database, check_schema=False)
        _tune_gc()
        return app

    def stop(self) -> None:
        if self.instrumentation is None:
            return
        if self.database is not None:
            self.database.dispose()
        self.instrumentation.shutdown()
        self.instrumentation = None


def _tune_gc() -> None:
    # As `vrp api` under waitress (recorder.cli): what start-up allocated stays out of every
    # later collection, and the young generation is collected less often.
    from recorder.cli import API_GC_YOUNG_THRESHOLD

    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(API_GC_YOUNG_THRESHOLD, older, oldest)


class ApiApplication(BaseApplication):
    """gunicorn embedded: the configuration comes from the settings, not from a file or argv."""

    def __init__(
        self,
        settings: Settings,
        listener: socket.socket,
        open_database: Callable[[Settings], Database],
    ) -> None:
        self._settings = settings
        self._listener = listener
        self._open_database = open_database
        self._worker = WorkerState(settings)
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        worker = self._worker

        def pre_fork(arbiter: Arbiter, new_worker: Worker) -> None:
            new_worker.vrp_slot = _free_slot(arbiter)

        def post_fork(arbiter: Arbiter, new_worker: Worker) -> None:
            worker.start(new_worker.vrp_slot)

        def worker_exit(arbiter: Arbiter, old_worker: Worker) -> None:
            worker.stop()

        options: dict[str, Any] = {
            "bind": [f"fd://{self._listener.fileno()}"],
            "workers": settings.api_workers,
            "worker_class": "gthread",
            "threads": settings.api_threads,
            "proc_name": settings.telemetry.service_name,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "timeout": WORKER_TIMEOUT_S,
            "keepalive": KEEPALIVE_S,
            "logger_class": _GunicornLogger,
            "pre_fork": pre_fork,
            "post_fork": post_fork,
            "worker_exit": worker_exit,
        }
        # gunicorn 24 and later open a control socket in the home folder unless told not to.
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> GateMiddleware:
        # gunicorn has no body limit of its own: the same gate as under waitress answers an
        # oversized declared body with the app's 413 before a byte of it is read.
        from recorder.api.limits import BodyLimitGate

        app = self._worker.app(self._open_database)
        return GateMiddleware(app, BodyLimitGate.from_settings(self._settings))


class ListenError(RecorderError):
    """The API's address cannot be bound (in use, not this machine's, not resolvable)."""


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (its first address), or :class:`ListenError`."""
    address = f"{host}:{port}"
    try:
        return socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    except OSError as exc:
        # socket.create_server adds the address to strerror; the errno's own text is enough.
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        raise ListenError(
            f"cannot listen on {address}: {reason} (pick another with --port)"
        ) from exc


def serve(settings: Settings, open_database: Callable[[Settings], Database]) -> None:
    """Serve the API with ``settings.api_workers`` workers until SIGTERM or SIGINT.

    In this (the master) process: bind, check the schema once with a database from
    ``open_database`` (closed again before any fork), sweep interrupted uploads, then run
    gunicorn. The caller has configured the master's logging; telemetry must not be set up here.
    Raises :class:`ListenError` or :class:`~recorder.errors.SchemaOutOfDateError`.
    """
    from recorder import schema_version
    from recorder.cli import STALE_UPLOAD_SECONDS
    from recorder.storage import BlobStore

    listener = listen(settings.api_host, settings.api_port)
    try:
        database = open_database(settings)
        try:
            schema_version.check_current(database.engine)
        finally:
            database.dispose()
    except BaseException:
        listener.close()
        raise
    swept = BlobStore(settings.storage_dir, settings.max_upload_bytes).sweep_temp(
        STALE_UPLOAD_SECONDS
    )
    if swept:
        logger.info("removed %d temporary file(s) left by interrupted uploads", swept)
    host, port = listener.getsockname()[:2]
    logger.info(
        "API listening on http://%s:%s",
        host,
        port,
        extra={"version": __version__, "workers": settings.api_workers},
    )
    # gunicorn owns the socket from here on, and closes it.
    ApiApplication(settings, listener, open_database).run()
