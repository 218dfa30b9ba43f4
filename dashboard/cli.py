"""``dashboard``: serve the receiver, the JSON API and the UI with waitress;
``dashboard token`` prints a new random token for ``VRP_DASHBOARD_TOKEN``.

The host application mounts :func:`make_command` in its own click group (the recorder's ``vrp
dashboard``) and hands it a :data:`ProcessScope`: what sets up logging and telemetry for the life
of the process, since the host owns those settings. Run alone (``python -m dashboard.cli``) the
command logs to stderr and exports telemetry as the standard ``OTEL_*`` variables say.

Only click is imported at the top: ``vrp --help`` must not pay for Dash, Flask or SQLAlchemy.

Refusals, each one line on stderr:

* a bad ``VRP_DASHBOARD_*`` value: exit 2, naming the variable (never a token's value);
* a bind address that is not loopback while no ``VRP_DASHBOARD_TOKEN`` is set: exit 2 - the
  telemetry holds routes, statements and log lines, and nobody should read them unasked;
* an address or port that cannot be bound (in use, not local), or a telemetry store that cannot
  be opened: exit 1.

The dashboard's own telemetry (service ``vrp-dashboard``) never loops back into itself: when an
OTLP endpoint it would export to is its own address, it exports nothing (it would otherwise
receive the spans of its own receiver, and send spans about those, without end). A loop through
a collector that forwards to this dashboard cannot be seen from here: do not route the
dashboard's own service back to it.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

SERVICE_NAME = "vrp-dashboard"
CONFIG_EXIT = 2
FAILURE_EXIT = 1
WAITRESS_THREADS = 8
# How the dashboard's waitress serves: the receiver's bodies are OTLP batches of 100 KiB and
# more, which waitress's main thread reads 8 KiB at a time by default, one pass through its
# Python loop each, holding the GIL the decoding and writing threads need.
WAITRESS_OPTIONS: Final[dict[str, Any]] = {
    "threads": WAITRESS_THREADS,
    "ident": "vrp-dashboard",
    "recv_bytes": 262144,
}
# The telemetry writer thread (dashboard.writer) gives up the GIL for every SQLite call and waits
# for it back behind the request thread decoding a body: up to this long, not Python's 5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005
# Allocations of container objects between two young-generation collections (Python's default
# is 700). A receiver allocates a dozen per span it decodes, so at 700 the cyclic GC ran after
# every 60 spans, holding the GIL for a tenth of the ingest benchmark's time; most of what it
# scanned was records about to be written, not garbage. At 20,000 it runs after ~1,700 spans.
GC_YOUNG_THRESHOLD = 20_000
OTLP_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)

ProcessScope = Callable[[bool], AbstractContextManager[None]]
"""Logging and telemetry for the process; the argument says whether telemetry may be exported."""


@contextmanager
def standalone_scope(export_telemetry: bool) -> Iterator[None]:
    """Logs to stderr; telemetry from the ``OTEL_*`` variables, or none when told not to."""
    from instrumentation import logs, telemetry
    from instrumentation.settings import LoggingSettings, TelemetrySettings

    logs.configure_logging(LoggingSettings(log_dir=None, lean=True), service=SERVICE_NAME)
    telemetry.setup(TelemetrySettings(service_name=SERVICE_NAME, disabled=not export_telemetry))
    try:
        yield
    finally:
        telemetry.shutdown()
        logs.shutdown_logging()


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"vrp dashboard: {message}", err=True)
    sys.exit(code)


def _addresses(host: str) -> set[str]:
    """Every IP address ``host`` names (the host itself when it does not resolve)."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return {host}


IpTest = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


def _is_ip(address: str, test: IpTest) -> bool:
    try:
        return test(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    addresses = _addresses(host)
    return bool(addresses) and all(_is_ip(a, lambda ip: ip.is_loopback) for a in addresses)


def _is_local(address: str) -> bool:
    # Binding succeeds only for an address of one of this machine's interfaces.
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def points_at_itself(endpoint: str, host: str, port: int) -> bool:
    """Whether an OTLP ``endpoint`` URL reaches a dashboard listening on ``host:port``."""
    try:
        parts = urlsplit(endpoint)
        endpoint_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if not parts.hostname or endpoint_port != port:
        return False
    targets = _addresses(parts.hostname)
    if _is_ip(host, lambda ip: ip.is_unspecified):
        return any(_is_local(address) for address in targets)
    return bool(targets & _addresses(host))


def exports_to_itself(settings: DashboardSettings, environ: Mapping[str, str]) -> str | None:
    """The first configured OTLP endpoint that is this dashboard, or None."""
    for name in OTLP_ENDPOINT_VARIABLES:
        endpoint = environ.get(name, "").strip()
        if endpoint and points_at_itself(endpoint, settings.host, settings.port):
            return endpoint
    return None


def _load(host: str | None, port: int | None) -> DashboardSettings:
    from dashboard.errors import DashboardConfigError
    from dashboard.settings import load_dashboard_settings

    try:
        settings = load_dashboard_settings()
    except DashboardConfigError as exc:
        _fail(CONFIG_EXIT, f"invalid configuration: {exc}")
    return replace(settings, host=host or settings.host, port=port or settings.port)


def _stop_on_sigterm() -> None:
    # waitress's run() returns cleanly on SystemExit, so SIGTERM ends the process through the
    # same path as Ctrl-C: background work stopped, store closed, telemetry flushed.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_sigterm)


def _bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (as waitress would bind them), or exit 1.

    Bound here rather than by waitress because waitress binds only once it has the app, and
    building the app creates and migrates the store: a port already in use must be reported
    before anything is written to disk.
    """
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        ):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in bound:
            sock.close()
        _fail(
            FAILURE_EXIT,
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "choose another address with --host/--port (VRP_DASHBOARD_HOST/_PORT)",
        )
    return bound


def serve(settings: DashboardSettings) -> None:
    """Bind, build the app, and serve until SIGTERM or Ctrl-C."""
    import sqlalchemy as sa

    from dashboard.app import create_app
    from dashboard.errors import StoreError
    from dashboard.limits import DashboardGate, server_limits
    from instrumentation.serving import create_server
    from instrumentation.urls import shown_url, without_secrets

    sockets = _bind(settings.host, settings.port)
    try:
        app = create_app(settings)
    # DBAPIError: unreachable, or a parameter of the URL's query the driver refuses.
    except (StoreError, sa.exc.DBAPIError) as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        reason = without_secrets(reason, settings.store_url)
        store = shown_url(settings.store_url)
        _fail(FAILURE_EXIT, f"cannot open the telemetry store {store}: {reason}")
    server = create_server(
        app.server,
        server_limits(settings),
        DashboardGate(settings, app.server.token_attempts),
        sockets=sockets,
        **WAITRESS_OPTIONS,
    )
    app.server.start_background()
    logger.info(
        "dashboard listening on http://%s:%d (OTLP/HTTP receiver at /v1/*)",
        settings.host,
        settings.port,
        extra={"auth": "token" if settings.token else "none (loopback only)"},
    )
    _stop_on_sigterm()
    tune_for_serving()
    try:
        server.run()
    finally:
        app.server.stop_background()


def tune_for_serving() -> None:
    """Settings of the serving process's interpreter, once start-up is done.

    What start-up allocated lives as long as the process: it is kept out of every later
    collection, so that the cyclic GC scans only the receiver's per-request objects, and it
    scans them less often (:data:`GC_YOUNG_THRESHOLD`). Threads switch every
    :data:`GIL_SWITCH_INTERVAL_S`.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def new_token() -> str:
    """A token for ``VRP_DASHBOARD_TOKEN``: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def make_command(process_scope: ProcessScope = standalone_scope) -> click.Group:
    """The ``dashboard`` command (serves), using ``process_scope`` for logging and telemetry,
    with its ``token`` subcommand."""

    @click.group("dashboard", invoke_without_command=True)
    @click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
    @click.option(
        "--port", type=click.IntRange(1, 65535), default=None, help="Port [default: 8050]."
    )
    @click.pass_context
    def dashboard(ctx: click.Context, host: str | None, port: int | None) -> None:
        """Serve the telemetry dashboard: OTLP receiver, JSON API and UI."""
        if ctx.invoked_subcommand is not None:
            return
        settings = _load(host, port)
        if not settings.token and not is_loopback(settings.host):
            _fail(
                CONFIG_EXIT,
                f"refusing to listen on {settings.host} without VRP_DASHBOARD_TOKEN: anyone "
                "who can reach it could read the telemetry; set a token or bind 127.0.0.1",
            )
        loop = exports_to_itself(settings, os.environ)
        with process_scope(loop is None):
            if loop is not None:
                logger.info(
                    "not exporting the dashboard's own telemetry: the OTLP endpoint %s is this "
                    "dashboard and would loop back into itself",
                    loop,
                )
            serve(settings)

    @dashboard.command("token")
    def token() -> None:
        """Print a new random token for VRP_DASHBOARD_TOKEN (256 bits)."""
        click.echo(new_token())

    return dashboard


if __name__ == "__main__":
    make_command()()
