"""Hostile requests to the receiver: each gets its 4xx, memory stays bounded, serving goes on."""

from __future__ import annotations

import gzip
import random
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
import requests
import sqlalchemy as sa
from google.rpc import status_pb2

from dashboard.schema import spans
from dashboard.settings import DashboardSettings
from dashboard.store import TelemetryStore
from tests.dashboard.conftest import Live, serve
from tests.dashboard.otlp_bodies import kv, request_trace, span, traces_request

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
LIMIT = 4 * 1024 * 1024
TOKEN = "a-long-enough-token"
# Far below what the bodies would take if read, inflated or decoded whole (1 GiB for the bomb).
MEMORY_BOUND = 40 * 1024 * 1024


def valid_body(seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return traces_request(request_trace(rng, time.time_ns())).SerializeToString()


def gzip_bomb(inflated: int = 1024 * 1024 * 1024) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    return b"".join(parts) + compressor.flush()


def huge_attribute() -> bytes:
    rng = random.Random(2)
    big = span(
        rng.randbytes(16),
        rng.randbytes(8),
        "big",
        time.time_ns(),
        1000,
        attributes={"blob": "x" * (1024 * 1024)},
    )
    return traces_request([big]).SerializeToString()


def many_attributes() -> bytes:
    rng = random.Random(3)
    crowded = span(rng.randbytes(16), rng.randbytes(8), "crowded", time.time_ns(), 1000)
    crowded.attributes.extend(kv(f"attribute.{i}", i) for i in range(10_000))
    return traces_request([crowded]).SerializeToString()


def deeply_nested_json() -> bytes:
    depth = 100_000
    return b'{"resourceSpans": ' + b"[" * depth + b"]" * depth + b"}"


CASES: dict[str, tuple[Callable[[], tuple[bytes, dict[str, str]]], int]] = {
    "truncated protobuf": (lambda: (valid_body()[:-7], PROTOBUF), 400),
    "invalid JSON": (lambda: (b'{"resourceSpans": [', JSON), 400),
    "deeply nested JSON": (lambda: (deeply_nested_json(), JSON), 400),
    "gzip bomb": (lambda: (gzip_bomb(), {**PROTOBUF, "Content-Encoding": "gzip"}), 413),
    "truncated gzip": (
        lambda: (gzip.compress(valid_body())[:-20], {**PROTOBUF, "Content-Encoding": "gzip"}),
        400,
    ),
    "body over the limit": (lambda: (b"\x0a" * (LIMIT + 1), PROTOBUF), 413),
    "1 MB attribute value": (lambda: (huge_attribute(), PROTOBUF), 400),
    "10,000 attributes": (lambda: (many_attributes(), PROTOBUF), 400),
    "wrong content type": (lambda: (valid_body(), {"Content-Type": "text/plain"}), 415),
    "unknown encoding": (lambda: (valid_body(), {**PROTOBUF, "Content-Encoding": "br"}), 415),
    "missing token": (lambda: (valid_body(), {**PROTOBUF, "Authorization": ""}), 401),
    "wrong token": (lambda: (valid_body(), {**PROTOBUF, "Authorization": "Bearer nope"}), 401),
}


@pytest.fixture
def guarded(store: TelemetryStore) -> Iterator[Live]:
    settings = DashboardSettings(store_url=store.url, max_body_bytes=LIMIT, token=TOKEN)
    yield from serve(settings, store)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_body_gets_its_4xx_with_bounded_memory_and_serving_goes_on(
    guarded: Live, case: str
) -> None:
    make, expected = CASES[case]
    body, headers = make()
    headers = {"Authorization": f"Bearer {TOKEN}", **headers}
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        response = requests.post(f"{guarded.url}/v1/traces", data=body, headers=headers, timeout=60)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert response.status_code == expected, response.content[:300]
    assert peak < MEMORY_BOUND + len(body)
    if response.headers["Content-Type"] == "application/x-protobuf":
        status = status_pb2.Status.FromString(response.content)
    else:
        status = status_pb2.Status(message=response.json()["message"])
    assert status.message

    good = requests.post(
        f"{guarded.url}/v1/traces",
        data=valid_body(seed=99),
        headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert good.status_code == 200
    with guarded.store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(spans)).scalar()
    assert stored == 6
