"""Delivery on one channel: a worker thread, retries with exponential backoff, an outcome.

Each channel has its own :class:`ChannelWorker` (thread and queue), so a slow or dead channel
delays only itself. A notification is tried up to ``retry_attempts`` times while its errors are
transient, waiting ``retry_initial`` seconds and doubling up to ``retry_max`` between attempts
(:func:`tenacity.wait_exponential_jitter`); every attempt has the channel's timeout. Whatever
happens, one :class:`~dashboard.alert_events.DeliveryRecord` comes out per notification and
channel - delivered, or failed with the reason - including for notifications still queued or
waiting for a retry when the dashboard stops.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dashboard.alert_events import DeliveryOutcome, DeliveryRecord
from dashboard.notify.errors import DeliveryError
from dashboard.notify.grouping import Notification
from dashboard.notify.settings import NotifySettings

logger = logging.getLogger(__name__)
QUEUE_SIZE = 256
# How often an idle worker looks at the stopping flag (in case its queue was too full to take
# the shutdown marker).
IDLE_CHECK = 1.0
MASK = "***"
STOPPED = "not sent: the dashboard stopped first"


class Channel(Protocol):
    """One destination of notifications (:mod:`~dashboard.notify.webhook`, ``slack``, ``smtp``).

    ``send`` raises :class:`DeliveryError` (worded without any secret); ``secrets`` lists the
    strings that must never be shown, masked in any error message as a second guard.
    """

    name: str

    def send(self, notification: Notification) -> None: ...

    def secrets(self) -> tuple[str, ...]: ...


class _Stopping(Exception):
    """The dashboard stops: a retry that waits is abandoned."""


class _Shutdown:
    """Put on a worker's queue to end its thread."""


_SHUTDOWN = _Shutdown()


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.transient


class ChannelWorker:
    """Delivers notifications on one channel, in its own thread, and reports each outcome."""

    def __init__(
        self,
        channel: Channel,
        settings: NotifySettings,
        report: Callable[[DeliveryRecord, Notification], None],
        clock: Callable[[], float],
        stopping: threading.Event,
    ) -> None:
        self.channel = channel
        self._settings = settings
        self._report = report
        self._clock = clock
        self._stopping = stopping
        self._queue: queue.Queue[Notification | _Shutdown] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self._run, name=f"alert-notify-{self.channel.name}", daemon=True
        )
        self._thread.start()

    def put(self, notification: Notification) -> None:
        """Queue ``notification``; a full queue fails it at once (reported, never dropped)."""
        try:
            self._queue.put_nowait(notification)
        except queue.Full:
            error = f"not sent: {QUEUE_SIZE} notifications already wait for this channel"
            self._report(self._record(notification, "failed", 0, error), notification)

    def shutdown(self) -> None:
        """Ask the thread to end once its current delivery is over (it abandons retries)."""
        # With a full queue, the thread sees the stopping flag and reports the queue instead.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_SHUTDOWN)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(max(timeout, 0.0))
            if not self._thread.is_alive():
                self._thread = None

    def fail_queued(self) -> None:
        """Report every notification still queued as not sent."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Notification):
                self._report(self._record(item, "failed", 0, STOPPED), item)

    def deliver(self, notification: Notification) -> DeliveryRecord:
        """Try ``notification`` with retries; the outcome, never an exception."""
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self.channel.send(notification)

        settings = self._settings
        retrying = Retrying(
            stop=stop_after_attempt(settings.retry_attempts),
            wait=wait_exponential_jitter(
                multiplier=settings.retry_initial,
                max=settings.retry_max,
                jitter=settings.retry_initial / 2,
            ),
            retry=retry_if_exception(_transient),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            retrying(attempt)
        except DeliveryError as exc:
            return self._record(notification, "failed", attempts, exc.message)
        except _Stopping:
            return self._record(notification, "failed", attempts, f"{STOPPED} ({attempts} tried)")
        except Exception as exc:  # a channel's bug must not end the thread nor lose the record
            error = f"unexpected {type(exc).__name__} while sending"
            return self._record(notification, "failed", attempts, error)
        return self._record(notification, "delivered", attempts, None)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_CHECK)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if isinstance(item, _Shutdown):
                return
            if self._stopping.is_set():
                self._report(self._record(item, "failed", 0, STOPPED), item)
                continue
            self._report(self.deliver(item), item)

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Stopping

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reason = self._masked(exc.message) if isinstance(exc, DeliveryError) else "error"
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.info(
            "alert notification on %s failed (%s); attempt %d, retrying in %.1f s",
            self.channel.name,
            reason,
            state.attempt_number,
            delay,
        )

    def _masked(self, text: str) -> str:
        for secret in sorted(self.channel.secrets(), key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def _record(
        self,
        notification: Notification,
        outcome: DeliveryOutcome,
        attempts: int,
        error: str | None,
    ) -> DeliveryRecord:
        return DeliveryRecord(
            channel=self.channel.name,
            group_key=notification.group_key,
            fingerprints=notification.fingerprints,
            outcome=outcome,
            attempts=attempts,
            at=self._clock(),
            error=None if error is None else self._masked(error),
            states=notification.states,
        )
