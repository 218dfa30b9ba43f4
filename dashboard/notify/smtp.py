"""The e-mail channel: one plain-text message per notification, over SMTP.

STARTTLS is optional (``VRP_DASHBOARD_ALERT_SMTP_STARTTLS``) and verifies the server's
certificate against the system's authorities or ``VRP_DASHBOARD_ALERT_SMTP_CA_FILE``; login is
optional and only over STARTTLS (the settings refuse a password in clear text). Every
connection has a timeout. Errors are worded from the SMTP reply code and the error's class:
never the server's reply text, which may echo what the client sent.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from dashboard.alert_events import AlertEvent
from dashboard.notify.errors import DeliveryError
from dashboard.notify.grouping import Notification
from dashboard.notify.messages import link, rfc3339, summary, title
from dashboard.notify.settings import SmtpSettings


def _alert_lines(alert: AlertEvent, external_url: str) -> list[str]:
    lines = [f"- {summary(alert)}"]
    labels = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items()))
    if labels:
        lines.append(f"  labels: {labels}")
    if alert.severity:
        lines.append(f"  severity: {alert.severity}")
    lines.append(f"  started: {rfc3339(alert.starts_at)}")
    if alert.ends_at is not None:
        lines.append(f"  ended: {rfc3339(alert.ends_at)}")
    lines += [
        f"  {name}: {value}"
        for name, value in sorted(alert.annotations.items())
        if name != "summary"
    ]
    lines.append(f"  link: {link(external_url, alert.url)}")
    return lines


def email_body(notification: Notification, external_url: str) -> str:
    """The plain-text body: the alerts firing, then the ones resolved, each with its link."""
    lines = [title(notification), ""]
    for heading, alerts in (("Firing", notification.firing), ("Resolved", notification.resolved)):
        if not alerts:
            continue
        lines.append(f"{heading} ({len(alerts)}):")
        for alert in alerts:
            lines += _alert_lines(alert, external_url)
        lines.append("")
    lines += [f"Group: {notification.group_key}", f"Dashboard: {external_url}", ""]
    return "\n".join(lines)


def email_message(
    notification: Notification, smtp: SmtpSettings, external_url: str
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = title(notification)
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.recipients)
    message["Date"] = formatdate(notification.at, usegmt=True)
    message["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2])
    message.set_content(email_body(notification, external_url))
    return message


class EmailChannel:
    """Sends each notification as one e-mail to the configured recipients."""

    name = "email"

    def __init__(self, smtp: SmtpSettings, *, external_url: str, timeout: float) -> None:
        self._smtp = smtp
        self._external_url = external_url
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"EmailChannel(host={self._smtp.host!r}, port={self._smtp.port})"

    def send(self, notification: Notification) -> None:
        message = email_message(notification, self._smtp, self._external_url)
        try:
            self._send(message)
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(
                f"{self._where}: no STARTTLS on the server", transient=False
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError(
                f"{self._where}: every recipient refused", transient=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{self._where}: SMTP {exc.smtp_code} ({_what(exc)})", transient=exc.smtp_code < 500
            ) from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{self._where}: the server disconnected", transient=True) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"{self._where}: {type(exc).__name__}", transient=True) from None
        except ssl.SSLError as exc:
            raise DeliveryError(
                f"{self._where}: TLS error ({exc.reason or 'handshake'})", transient=False
            ) from None
        except TimeoutError:
            raise DeliveryError(
                f"{self._where}: no answer within {self._timeout:g} s", transient=True
            ) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DeliveryError(
                f"{self._where}: connection failed ({reason})", transient=True
            ) from None

    def secrets(self) -> tuple[str, ...]:
        password = self._smtp.password
        if not password:
            return ()
        return (password, base64.b64encode(password.encode()).decode())

    @property
    def _where(self) -> str:
        return f"SMTP {self._smtp.host}:{self._smtp.port}"

    def _send(self, message: EmailMessage) -> None:
        smtp = self._smtp
        with smtplib.SMTP(smtp.host, smtp.port, timeout=self._timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
            if smtp.user is not None and smtp.password is not None:
                client.login(smtp.user, smtp.password)
            client.send_message(message)


def _what(exc: smtplib.SMTPResponseException) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "login refused"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "sender refused"
    return "refused" if exc.smtp_code >= 500 else "try later"
