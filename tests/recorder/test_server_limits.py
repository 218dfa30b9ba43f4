"""``vrp api`` bounds what a client can make it read and hold, measured on real sockets.

A body larger than the upload limit is refused with a 413 JSON answer as soon as the headers
are in (a declared ``Content-Length``) or as soon as it passes the limit (chunked), never after
the client has sent it all; a flood of idle half-requests above the connection limit does not
keep ``/healthz`` waiting.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving_probes import (
    clean_env,
    closed_by_server,
    free_port,
    idle_flood,
    request_head,
    send_slowly,
    timed_get,
    vrp_server,
)

UPLOAD_LIMIT = 1024 * 1024
FORM_OVERHEAD = 64 * 1024
BODY_LIMIT = UPLOAD_LIMIT + FORM_OVERHEAD
# A client that gets no answer after sending this much was made to send the body whole.
GIVE_UP = 8 * 1024 * 1024
UPLOAD = {"Content-Type": "multipart/form-data; boundary=b"}


def _vrp(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli", *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=["waitress", "gunicorn"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """One process under waitress, or two gunicorn workers: the same limits hold under both."""
    assert _vrp(["db", "upgrade"], tmp_path).returncode == 0
    workers = "1" if request.param == "waitress" else "2"
    with vrp_server(
        ["api"],
        tmp_path,
        free_port(),
        VRP_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
        VRP_API_WORKERS=workers,
    ) as port:
        yield port


def test_declared_oversized_upload_gets_413_json_before_its_body(api: int) -> None:
    head = request_head("POST", "/api/recordings", Content_Length=64 * 1024 * 1024, **UPLOAD)

    answer = send_slowly(api, head, give_up_after=GIVE_UP)

    assert answer.status == 413, answer
    assert answer.sent < 256 * 1024, f"sent {answer.sent} bytes before the answer"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == 413
    assert f"limit of {UPLOAD_LIMIT} bytes" in answer.json()["message"]


def test_oversized_upload_expecting_100_continue_gets_the_413_instead(api: int) -> None:
    head = request_head(
        "POST", "/api/recordings", Content_Length=BODY_LIMIT + 1, Expect="100-continue", **UPLOAD
    )

    answer = send_slowly(api, head, give_up_after=0)

    if answer.status == 100:
        # gunicorn answers "100 Continue" as it parses the headers, before the app can refuse;
        # the 413 follows at once and the client has sent nothing of its body.
        assert answer.sent == 0
        assert answer.body.startswith(b"HTTP/1.1 413 "), answer
        assert b'"code": 413' in answer.body or b'"code":413' in answer.body
        return
    assert answer.status == 413, answer
    assert answer.json()["code"] == 413


def test_declared_length_at_the_limit_reaches_the_app_and_one_byte_more_does_not(
    api: int,
) -> None:
    # POST /healthz: the app's answer (405) tells that the request got past the limit.
    at_limit = send_slowly(
        api,
        request_head("POST", "/healthz", Content_Length=BODY_LIMIT),
        give_up_after=BODY_LIMIT,
        pause=0,
    )
    over = send_slowly(
        api,
        request_head("POST", "/healthz", Content_Length=BODY_LIMIT + 1),
        give_up_after=BODY_LIMIT + 1,
    )

    assert at_limit.status == 405, at_limit
    assert at_limit.sent == BODY_LIMIT
    assert over.status == 413, over
    assert over.sent < 256 * 1024
    assert over.json()["code"] == 413


def test_chunked_upload_is_cut_off_once_it_passes_the_limit(api: int) -> None:
    head = request_head("POST", "/api/recordings", Transfer_Encoding="chunked", **UPLOAD)

    answer = send_slowly(api, head, chunked=True, give_up_after=GIVE_UP)

    assert answer.status == 413, answer
    assert answer.sent < BODY_LIMIT + 1024 * 1024, f"sent {answer.sent} bytes"
    assert answer.json()["code"] == 413


def test_idle_connections_above_the_limit_do_not_starve_healthz(tmp_path: Path) -> None:
    assert _vrp(["db", "upgrade"], tmp_path).returncode == 0
    with vrp_server(["api"], tmp_path, free_port()) as port, idle_flood(port, 130) as flood:
        status, seconds = timed_get(port, "/healthz")
        shed = closed_by_server(flood)

    assert status == 200
    assert seconds < 3.0
    # The server made room by closing the quiet ones (so the limit is the one configured).
    assert shed >= 50, shed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VRP_API_CONNECTION_LIMIT", "5"),
        ("VRP_API_CONNECTION_LIMIT", "5000"),
        ("VRP_API_CHANNEL_TIMEOUT", "0"),
        ("VRP_API_CHANNEL_TIMEOUT", "soon"),
    ],
)
def test_bad_server_limit_setting_exits_2_naming_it(tmp_path: Path, name: str, value: str) -> None:
    result = _vrp(["api", "--port", "0"], tmp_path, **{name: value})

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert name in result.stderr
