"""Every JSON body is bounded in size and depth: 400 naming the bound, never a 500."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from recorder.api import jsonbody
from recorder.api.jsonbody import JSONBodyError, check_depth
from tests.recorder.fixtures import upload

DEEP = 100_000


def _recording(client: FlaskClient) -> str:
    status, body = upload(client)
    assert status == 201, body
    return str(body["id"])


def _bound_error(response, bound: str) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    body = json.loads(response.get_data())  # not through the app, whose bounds a test may lower
    assert (body["code"], body["bound"]) == (400, bound), body
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@pytest.mark.parametrize(
    "document",
    [
        pytest.param("[" * DEEP + "]" * DEEP, id="arrays"),
        pytest.param('{"a":' * (DEEP // 2) + "1" + "}" * (DEEP // 2), id="objects"),
        pytest.param('{"title": "x", "tags": ' + "[" * DEEP + "]" * DEEP + "}", id="in-a-field"),
        pytest.param("[" * DEEP, id="unclosed"),
        pytest.param(b"\xff" + b"[" * DEEP, id="not-utf-8"),
    ],
)
def test_deeply_nested_patch_body_is_400_naming_the_depth_bound(
    client: FlaskClient, document: str | bytes
) -> None:
    rid = _recording(client)

    response = client.patch(
        f"/api/recordings/{rid}", data=document, content_type="application/json"
    )

    body = _bound_error(response, "depth")
    assert body["limit"] == jsonbody.DEFAULT_MAX_DEPTH
    assert "levels deep" in body["message"]


def test_oversized_patch_body_is_400_naming_the_size_bound(app: Flask, client: FlaskClient) -> None:
    rid = _recording(client)
    # The app's own request limit (sized for uploads) applies when it is the tighter one.
    limit = min(jsonbody.DEFAULT_MAX_BYTES, app.config["MAX_CONTENT_LENGTH"])
    document = json.dumps({"title": "x" * limit})

    response = client.patch(
        f"/api/recordings/{rid}", data=document, content_type="application/json"
    )

    body = _bound_error(response, "size")
    assert body["limit"] == limit
    assert client.get(f"/api/recordings/{rid}").get_json()["title"] == "hello"


def test_oversized_body_without_a_length_is_read_no_further_than_the_bound(
    client: FlaskClient,
) -> None:
    rid = _recording(client)
    document = json.dumps({"title": "x" * (4 * jsonbody.DEFAULT_MAX_BYTES)}).encode()
    stream = io.BytesIO(document)

    response = client.patch(
        f"/api/recordings/{rid}",
        input_stream=stream,
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )

    _bound_error(response, "size")
    assert stream.tell() <= jsonbody.DEFAULT_MAX_BYTES + 1


def test_bounds_follow_the_app_config(app: Flask, client: FlaskClient) -> None:
    rid = _recording(client)
    app.config.update(JSON_MAX_DEPTH=1, JSON_MAX_BYTES=40)

    nested = client.patch(f"/api/recordings/{rid}", json={"tags": ["a"]})
    long = client.patch(f"/api/recordings/{rid}", json={"title": "x" * 40})

    assert _bound_error(nested, "depth")["limit"] == 1
    assert _bound_error(long, "size")["limit"] == 40


def test_bodies_within_the_bounds_reach_validation(client: FlaskClient) -> None:
    rid = _recording(client)
    brackets_in_text = "[{" * 60 + '\\\\"]' * 10

    renamed = client.patch(f"/api/recordings/{rid}", json={"title": brackets_in_text})
    nested_tags = client.patch(f"/api/recordings/{rid}", json={"tags": [[["a"]]]})

    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json()["title"] == brackets_in_text
    assert nested_tags.status_code == 422
    assert "tags" in nested_tags.get_json()["errors"]["json"]


def test_a_route_parsing_json_itself_is_bounded_too(app: Flask) -> None:
    @app.post("/echo")
    def echo() -> object:
        return {"echo": request.get_json(force=True)}

    client = app.test_client()
    deep = client.post("/echo", data="[" * DEEP + "]" * DEEP, content_type="text/plain")
    app.config["JSON_MAX_BYTES"] = 1000
    big = client.post("/echo", data=json.dumps(["x" * 1000]))
    small = client.post("/echo", data="[[1]]", content_type="text/plain")

    _bound_error(deep, "depth")
    _bound_error(big, "size")
    assert small.get_json() == {"echo": [[1]]}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[[["]', 1),
        ('["\\\\", [[]]]', 3),
    ],
)
def test_depth_counts_brackets_outside_strings_only(text: str, depth: int) -> None:
    check_depth(text, depth)
    with pytest.raises(JSONBodyError) as caught:
        check_depth(text, depth - 1)
    assert caught.value.bound == "depth"


@pytest.mark.timeout(30)  # a hang guard: an open string once made the scan quadratic (hours)
@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"' + '\\"' * 500_000, id="open-string-of-escaped-quotes"),
        pytest.param('"a' * 500_000, id="many-open-strings"),
        pytest.param("[" + '"\\' * 300_000, id="trailing-backslash"),
    ],
)
def test_open_strings_are_scanned_once(text: str) -> None:
    check_depth(text, 2)


def test_a_string_left_open_hides_no_nesting_from_the_parser(client: FlaskClient) -> None:
    rid = _recording(client)
    document = '{"title": "open' + "[" * DEEP

    response = client.patch(
        f"/api/recordings/{rid}", data=document, content_type="application/json"
    )

    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
