"""Limits of the WSGI server in front of a Flask app: body sizes, connections, idle time.

Two pieces, usable apart:

* :class:`GateMiddleware`, a WSGI middleware that asks a :class:`Gate` about each request from
  its head alone (method, path, headers, declared ``Content-Length``, peer address) and sends
  the gate's refusal without reading the body. It works under any WSGI server that calls the
  application before reading the body (gunicorn does).
* :func:`create_server`, a waitress server that runs the same gate *inside waitress*, as soon
  as a request's headers are in. waitress reads a whole body into its buffer before it calls
  the application, so a middleware alone would answer only once the client has sent
  everything (up to waitress's 1 GiB default). Here waitress's own ``max_request_body_size``
  is the server-wide limit (a declared length above it is refused at the headers, a chunked
  body is cut off when it passes it), and the refusals waitress writes itself are the gate's
  JSON instead of waitress's plain text.

Connections (:class:`~instrumentation.settings.ServerLimits`): waitress stops accepting at
``connection_limit`` and closes a connection idle for ``channel_timeout`` seconds. Left alone,
a client that opens more connections than the limit and sends half a request line on each keeps
everyone else waiting until their timeout. So when the limit is reached, the server here also
closes the connections that have no complete request and have been silent for
:data:`OVERFLOW_QUIET_SECONDS` (nginx reclaims idle keep-alive connections the same way when it
runs out): a flood of idle connections costs a legitimate client about a second. A client that
keeps trickling bytes is not stopped by this; a reverse proxy in front is the place for that
(see the README's Security section).

Why waitress is extended rather than wrapped: it offers no hook between "headers parsed" and
"body buffered", and nothing to choose which connection to drop under overload; its parser,
channel and server classes are subclassed here (``parser_class``, ``channel_class``,
``readable``), the smallest surface that gives both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from socket import socket
from typing import Any, Protocol

import orjson
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error, RequestEntityTooLarge

from instrumentation.settings import ServerLimits

# Under the connection limit, a connection without a complete request that has sent nothing for
# this long is closed to make room for new ones.
OVERFLOW_QUIET_SECONDS = 1.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class RequestHead:
    """What is known of a request before its body: header names are lower case."""

    method: str
    path: str
    headers: Mapping[str, str]
    content_length: int | None  # None when the body is chunked
    remote_addr: str | None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Refusal:
    """A complete answer sent instead of calling the application; the connection is closed."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class Gate(Protocol):
    """Decides from a request's head; must be thread-safe and quick (it runs on the I/O loop)."""

    def check(self, head: RequestHead) -> Refusal | None:
        """The refusal to send instead of reading the body, or None to go on."""

    def too_large(self, head: RequestHead, limit: int) -> Refusal:
        """The 413 for a body over the server-wide ``limit`` bytes (a chunked one, cut off)."""


def json_error(status: int, message: str, **extra: object) -> Refusal:
    """A refusal with the JSON error shape of the apps: ``code``, ``status``, ``message``."""
    phrase = HTTPStatus(status).phrase
    body = {"code": status, "status": phrase, "message": message, **extra}
    return Refusal(status, orjson.dumps(body))


def _environ_headers(environ: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").lower(), value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            yield key.replace("_", "-").lower(), value


def head_from_environ(environ: Mapping[str, Any]) -> RequestHead:
    headers = dict(_environ_headers(environ))
    length = headers.get("content-length", "")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    return RequestHead(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", "/"),
        headers=headers,
        content_length=None if chunked else int(length) if length.isdigit() else 0,
        remote_addr=environ.get("REMOTE_ADDR"),
    )


@dataclass
class GateMiddleware:
    """Sends the gate's refusal before the application (and so the body) is touched."""

    app: WsgiApp
    gate: Gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        refusal = self.gate.check(head_from_environ(environ))
        if refusal is None:
            return self.app(environ, start_response)
        headers = [
            ("Content-Type", refusal.content_type),
            ("Content-Length", str(len(refusal.body))),
            ("Connection", "close"),
            *refusal.headers,
        ]
        start_response(refusal.status_line, headers)
        return [refusal.body]


class _RefusedError(Error):
    """A waitress error whose response is a gate's :class:`Refusal`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.body)
        self.refusal = refusal
        self.code = refusal.status
        self.reason = HTTPStatus(refusal.status).phrase

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", self.refusal.content_type), *self.refusal.headers]
        return self.refusal.status_line, headers, self.refusal.body


class _GatedParser(HTTPRequestParser):
    """waitress's parser, asking the gate once the headers are in (before any body byte)."""

    def __init__(self, adj: Adjustments, gate: Gate, remote_addr: str | None) -> None:
        super().__init__(adj)
        self._gate = gate
        self._remote_addr = remote_addr
        self._judged = False

    def _head(self) -> RequestHead:
        headers = {key.replace("_", "-").lower(): value for key, value in self.headers.items()}
        return RequestHead(
            method=self.command or "GET",
            path=self.path or "/",
            headers=headers,
            content_length=None if self.chunked else self.content_length,
            remote_addr=self._remote_addr,
        )

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.headers_finished and not self._judged:
            self._judged = True
            # A request waitress found malformed keeps waitress's answer (400, 431, 501).
            if self.error is None or isinstance(self.error, RequestEntityTooLarge):
                refusal = self._gate.check(self._head())
                if refusal is not None:
                    self._refuse(refusal)
        if isinstance(self.error, RequestEntityTooLarge):
            limit = self.adj.max_request_body_size - 1
            self._refuse(self._gate.too_large(self._head(), limit))
        return consumed

    def _refuse(self, refusal: Refusal) -> None:
        self.error = _RefusedError(refusal)
        self.completed = True
        # A client that sent "Expect: 100-continue" gets the refusal instead of "continue".
        self.expect_continue = False


class _GatedChannel(HTTPChannel):
    server: _LimitedServer

    def parser_class(self, adj: Adjustments) -> _GatedParser:
        # waitress builds each request's parser as self.parser_class(self.adj).
        return _GatedParser(adj, self.server.gate, str(self.addr[0]) if self.addr else None)


class _LimitedServer(TcpWSGIServer):
    channel_class = _GatedChannel

    def __init__(self, *args: Any, gate: Gate, **kwargs: Any) -> None:
        self.gate = gate
        super().__init__(*args, **kwargs)

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._shed_quiet(time.time())
        return bool(super().readable())

    def _shed_quiet(self, now: float) -> None:
        cutoff = now - OVERFLOW_QUIET_SECONDS
        for channel in list(self.active_channels.values()):
            if not channel.requests and channel.last_activity < cutoff:
                channel.will_close = True


def create_server(
    app: WsgiApp,
    limits: ServerLimits,
    gate: Gate,
    *,
    host: str | None = None,
    port: int | None = None,
    sockets: Sequence[socket] = (),
    **options: Any,
) -> _LimitedServer | MultiSocketServer:
    """A waitress server for ``app`` behind ``gate``, bound to ``host``/``port`` or ``sockets``.

    As :func:`waitress.create_server` (one server per address, a :class:`MultiSocketServer`
    when there are several; ``OSError`` when an address cannot be bound, ``ValueError`` for a
    host that does not resolve), with ``limits`` applied. ``app`` needs no
    :class:`GateMiddleware` here: the gate has run before waitress calls it.
    """
    bind: dict[str, Any] = {"sockets": list(sockets)} if sockets else {"host": host, "port": port}
    adj = Adjustments(**bind, **limits.waitress_options(), **options)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict[int, Any] = {}
    servers: list[_LimitedServer] = []
    if adj.sockets:
        for sock in adj.sockets:
            sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
            servers.append(
                _LimitedServer(
                    app,
                    socket_map,
                    True,
                    sock,
                    dispatcher=dispatcher,
                    adj=adj,
                    bind_socket=False,
                    sockinfo=sockinfo,
                    gate=gate,
                )
            )
    else:
        for sockinfo in adj.listen:
            servers.append(
                _LimitedServer(
                    app,
                    socket_map,
                    True,
                    None,
                    dispatcher=dispatcher,
                    adj=adj,
                    sockinfo=sockinfo,
                    gate=gate,
                )
            )
    if len(servers) == 1:
        return servers[0]
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)
