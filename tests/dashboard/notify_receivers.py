"""Real receivers for the notification tests, on 127.0.0.1: an HTTP server and SMTP servers.

:class:`HttpReceiver` is a threaded ``http.server`` that keeps every POST (path and JSON body)
and answers with the statuses it is told, after an optional delay. :func:`smtp_server` runs
aiosmtpd, plain or with STARTTLS and AUTH LOGIN, with a self-signed certificate made here with
``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dashboard.alert_events import DeliveryRecord

HOST = "127.0.0.1"


@dataclass
class Received:
    path: str
    body: Any
    at: float


class HttpReceiver:
    """A webhook receiver: records POSTs, answers ``answers`` in turn (then 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self.release = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._changed:
                    receiver.arrived += 1
                    receiver._changed.notify_all()
                if receiver.delay:
                    receiver.release.wait(receiver.delay)
                with receiver._changed:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    if status == 200:
                        receiver.received.append(Received(self.path, body, time.monotonic()))
                    receiver.attempts += 1
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.attempts = 0
        # Requests whose body was read (answered or not yet).
        self.arrived = 0
        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` bodies received, waiting up to ``timeout`` seconds for them."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests have arrived, answered or not."""
        with self._changed:
            self._changed.wait_for(lambda: self.arrived >= count, timeout)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    """What an SMTP server received: envelopes and parsed messages, and the logins it saw."""

    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.changed:
            message = message_from_bytes(envelope.original_content or envelope.content)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, list[str], Message]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files in ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def smtp_server(
    mailbox: Mailbox,
    *,
    tls_folder: Path | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Iterator[int]:
    """Serve ``mailbox`` on a free port (yielded): plain, or STARTTLS and AUTH LOGIN required."""
    port = free_port()
    options: dict[str, Any] = {}
    if tls_folder is not None:
        cert, key = self_signed(tls_folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            if ok:
                mailbox.logins.append(f"{mechanism}:{data.login.decode()}")
            return AuthResult(success=ok, handled=False)

        options = {
            "tls_context": context,
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_required": True,
            "auth_require_tls": True,
            "auth_exclude_mechanism": ["PLAIN"],
        }
    controller = Controller(mailbox, hostname=HOST, port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class Sink:
    """A DeliverySink that keeps the records, for the test to wait on."""

    def __init__(self) -> None:
        self.records: list[DeliveryRecord] = []
        self._changed = threading.Condition()

    def record_delivery(self, record: DeliveryRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[DeliveryRecord]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.records) >= count, timeout)
            return list(self.records)
