"""``vrp up --demo``: sample recordings and light, realistic traffic against the running API.

A newcomer's dashboard is empty until something uses the API. With ``--demo``, ``vrp up``
runs one more child, ``vrp demo-traffic``, which is only an HTTP client of the API (urllib, no
access to the database): it waits for ``/healthz``, uploads a few short WAV tones it makes with
the standard :mod:`wave` module, starts one backup run (``vrp backup run`` as its own child,
so the run is a real one with its own telemetry), then sends a few requests per second:
listings with filters and pages, metadata and audio (with and without a Range), tags, PATCHes
with ``If-Match``, uploads and deletes, some 404s and 422s, and now and then a burst of
concurrent PATCHes on one recording with the same version, of which all but one get a 412
(or, under SQLite, a busy database the app retries). Every number the dashboard shows then is
the app's own telemetry of requests that really happened.

Stopping: SIGTERM or SIGINT sets a flag checked between requests (each has a short timeout);
a backup still running is sent SIGTERM and waited for; the process exits 0. Failed requests
(the API restarting, say) are logged and the traffic goes on: the demo never stops the stack.
"""

from __future__ import annotations

import array
import json
import logging
import math
import random
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from types import FrameType
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8000
REQUEST_TIMEOUT_SECONDS = 10.0
# Between two steps of the traffic (a step is one to four requests): a few requests a second.
PAUSE_SECONDS = (0.2, 0.6)
SEED_RECORDINGS = 8
# Uploads stop, and deletes take over, past this many live recordings.
MAX_LIVE_RECORDINGS = 40
CONCURRENT_PATCHES = 4
BACKUP_STOP_SECONDS = 15.0

_TITLES = (
    "standup notes",
    "interview with Ana",
    "voice memo",
    "lecture: signals",
    "song idea",
    "call with support",
    "grocery list",
    "podcast draft",
)
_TAGS = ("work", "personal", "music", "meeting", "idea", "draft")
_NOTES = (261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25)


def tone_wav(frequencies: Sequence[float], seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM WAV of ``frequencies`` played one after the other, ``seconds`` long."""
    import io
    import wave

    count = int(seconds * rate)
    per_note = max(1, count // max(1, len(frequencies)))
    samples = array.array("h")
    for index in range(count):
        frequency = frequencies[min(index // per_note, len(frequencies) - 1)]
        fade = min(1.0, (count - index) / (rate * 0.05))  # no click at the end
        samples.append(int(12000 * fade * math.sin(2 * math.pi * frequency * index / rate)))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


@dataclass(frozen=True)
class Response:
    """A response as the demo needs it; header names lower-cased."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(message: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in message.items()}


def _multipart(fields: Sequence[tuple[str, str]], wav: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + wav
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class DemoTraffic:
    """The client behind ``vrp demo-traffic``; :meth:`run` returns once :meth:`stop` is called.

    ``backup_argv`` is the command line of one backup run, started once the sample recordings
    are in (None: no backup).
    """

    base_url: str
    backup_argv: Sequence[str] | None = None
    seed: int | None = None
    pause: tuple[float, float] = PAUSE_SECONDS
    _stopping: threading.Event = field(default_factory=threading.Event)
    _ids: list[str] = field(default_factory=list)
    _backup: subprocess.Popen[bytes] | None = None
    requests_sent: int = 0

    def __post_init__(self) -> None:
        # Sample titles, tags and tones: no secret comes from this generator.
        self._random = random.Random(self.seed)  # nosec B311

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        try:
            if not self._await_api():
                return
            self._seed()
            self._start_backup()
            steps = self._steps()
            while not self._stopping.is_set():
                try:
                    self._random.choices(*zip(*steps, strict=True))[0]()
                except (URLError, OSError, ValueError) as exc:
                    logger.warning("demo request failed: %s", exc)
                self._stopping.wait(self._random.uniform(*self.pause))
                self._report_backup()
        finally:
            self._stop_backup()

    # The requests

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, object] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request; an HTTP error status is a :class:`Response` too, never an exception."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        req = Request(url, data=body, method=method, headers=headers or {})
        self.requests_sent += 1
        try:
            # The URL is the API's own (http://host:port from vrp up), never user input.
            with urlopen(req, timeout=REQUEST_TIMEOUT_SECONDS) as resp:  # nosec B310
                return Response(resp.status, _headers(resp.headers), resp.read())
        except HTTPError as exc:
            with exc:
                return Response(exc.code, _headers(exc.headers), exc.read())

    def _await_api(self) -> bool:
        while not self._stopping.is_set():
            try:
                if self.request("GET", "/healthz").status == 200:
                    return True
            except (URLError, OSError):
                pass
            self._stopping.wait(0.5)
        return False

    def _seed(self) -> None:
        for _ in range(SEED_RECORDINGS):
            if self._stopping.is_set():
                return
            try:
                self.upload()
            except (URLError, OSError) as exc:
                logger.warning("demo upload failed: %s", exc)
        logger.info("demo: %d sample recordings uploaded", len(self._ids))

    def upload(self) -> Response:
        notes = self._random.sample(_NOTES, self._random.randint(1, 4))
        wav = tone_wav(notes, self._random.uniform(0.5, 3.0))
        tags = self._random.sample(_TAGS, self._random.randint(0, 3))
        title = f"{self._random.choice(_TITLES)} #{self._random.randint(1, 999)}"
        body, content_type = _multipart(
            [("title", title), ("tags", ",".join(tags))], wav, f"{title.split()[0]}.wav"
        )
        response = self.request(
            "POST", "/api/recordings", body=body, headers={"Content-Type": content_type}
        )
        if response.status == 201:
            self._ids.append(response.json()["id"])
        return response

    def _steps(self) -> list[tuple[Callable[[], object], int]]:
        """What the traffic does, with weights: mostly reads, some writes, some mistakes."""
        return [
            (self.list_page, 30),
            (self.get_metadata, 20),
            (self.get_audio, 12),
            (self.list_tags, 6),
            (self.patch, 10),
            (self.upload_or_delete, 8),
            (self.not_found, 5),
            (self.invalid, 5),
            (self.concurrent_patches, 2),
        ]

    def _pick(self) -> str | None:
        return self._random.choice(self._ids) if self._ids else None

    def list_page(self) -> Response:
        query: dict[str, object] = {"page": self._random.randint(1, 3), "page_size": 5}
        if self._random.random() < 0.4:
            query["tag"] = self._random.choice(_TAGS)
        if self._random.random() < 0.3:
            query["q"] = self._random.choice(_TITLES).split()[0]
        if self._random.random() < 0.5:
            query["sort"] = self._random.choice(("created_at", "title", "duration"))
            query["order"] = self._random.choice(("asc", "desc"))
        return self.request("GET", "/api/recordings", query=query)

    def get_metadata(self) -> Response | None:
        public_id = self._pick()
        return self.request("GET", f"/api/recordings/{public_id}") if public_id else None

    def get_audio(self) -> Response | None:
        public_id = self._pick()
        if public_id is None:
            return None
        headers = {"Range": "bytes=0-1023"} if self._random.random() < 0.4 else {}
        return self.request("GET", f"/api/recordings/{public_id}/audio", headers=headers)

    def list_tags(self) -> Response:
        return self.request("GET", "/api/tags")

    def patch(self) -> Response | None:
        public_id = self._pick()
        if public_id is None:
            return None
        current = self.request("GET", f"/api/recordings/{public_id}")
        if current.status != 200:
            return current
        changes: dict[str, object] = {"tags": self._random.sample(_TAGS, 2)}
        if self._random.random() < 0.5:
            changes["title"] = f"{self._random.choice(_TITLES)} (edited)"
        return self._send_patch(public_id, changes, current.headers.get("etag", ""))

    def _send_patch(self, public_id: str, changes: dict[str, object], etag: str) -> Response:
        return self.request(
            "PATCH",
            f"/api/recordings/{public_id}",
            body=json.dumps(changes).encode(),
            headers={"Content-Type": "application/json", "If-Match": etag},
        )

    def upload_or_delete(self) -> Response | None:
        if len(self._ids) < MAX_LIVE_RECORDINGS and self._random.random() < 0.6:
            return self.upload()
        public_id = self._pick()
        if public_id is None:
            return None
        self._ids.remove(public_id)
        purge = {"purge": "true"} if self._random.random() < 0.3 else None
        return self.request("DELETE", f"/api/recordings/{public_id}", query=purge)

    def not_found(self) -> Response:
        return self.request("GET", f"/api/recordings/{uuid.uuid4()}")

    def invalid(self) -> Response:
        """A 422: a page size over the limit, a bad sort, or a PATCH with an empty title."""
        kind = self._random.randrange(3)
        if kind == 0:
            return self.request("GET", "/api/recordings", query={"page_size": 1000})
        if kind == 1:
            return self.request("GET", "/api/recordings", query={"sort": "loudness"})
        public_id = self._pick() or str(uuid.uuid4())
        return self.request(
            "PATCH",
            f"/api/recordings/{public_id}",
            body=b'{"title": ""}',
            headers={"Content-Type": "application/json"},
        )

    def concurrent_patches(self) -> list[Response]:
        """Several clients editing one recording from the same version at the same moment."""
        public_id = self._pick()
        if public_id is None:
            return []
        current = self.request("GET", f"/api/recordings/{public_id}")
        if current.status != 200:
            return [current]
        etag = current.headers.get("etag", "")
        results: list[Response] = []
        start = threading.Barrier(CONCURRENT_PATCHES)

        def edit(index: int) -> None:
            start.wait()
            try:
                results.append(
                    self._send_patch(public_id, {"title": f"edited by client {index}"}, etag)
                )
            except (URLError, OSError) as exc:
                logger.warning("demo request failed: %s", exc)

        threads = [threading.Thread(target=edit, args=(i,)) for i in range(CONCURRENT_PATCHES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    # The backup

    def _start_backup(self) -> None:
        if self.backup_argv is None or self._stopping.is_set():
            return
        # The command line is this interpreter running `vrp backup run` (recorder.cli).
        self._backup = subprocess.Popen(  # nosec B603
            list(self.backup_argv), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        logger.info("demo: started a backup run (pid %d)", self._backup.pid)

    def _report_backup(self) -> None:
        process = self._backup
        if process is not None and process.poll() is not None:
            logger.info("demo: the backup run ended with status %d", process.returncode)
            self._backup = None

    def _stop_backup(self) -> None:
        process = self._backup
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(BACKUP_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._report_backup()


def run_until_signalled(traffic: DemoTraffic) -> None:
    """Run ``traffic`` in this (main) thread until SIGTERM or SIGINT."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, traffic.stop)
    traffic.run()
