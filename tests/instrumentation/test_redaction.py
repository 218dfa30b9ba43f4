from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from instrumentation.logs import configure_logging
from instrumentation.redaction import (
    RedactionFilter,
    redact_text,
    redact_url,
    redacted_extras,
    scalar_extras,
)
from instrumentation.settings import LoggingSettings
from instrumentation.testing import reset_for_tests

# (text holding a secret, the secret, what must survive to keep the line useful)
SECRET_CASES = [
    pytest.param(
        "connect to postgresql+psycopg://app:s3cr3t-pw@db.internal:5432/vrp failed",
        "s3cr3t-pw",
        "postgresql+psycopg://app:***@db.internal:5432/vrp",
        id="url-password",
    ),
    pytest.param(
        "redis://:p@ss@cache:6379/0 is down; mail ops@example.com",
        "p@ss",
        "redis://:***@cache:6379/0",
        id="url-password-with-at-sign",
    ),
    pytest.param(
        "upstream said 401 for Authorization: Bearer eyJhbGciOi.J9.sig",
        "eyJhbGciOi.J9.sig",
        "Authorization: Bearer ***",
        id="bearer-header",
    ),
    pytest.param(
        "headers={'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': 'audio/ogg'}",
        "dXNlcjpwYXNz",
        "'Authorization': 'Basic ***'",
        id="basic-header-in-dict-repr",
    ),
    pytest.param("X-Api-Key: k-123456", "k-123456", "X-Api-Key: ***", id="api-key-header"),
    pytest.param("Cookie: session=abcdef; theme=dark", "abcdef", "Cookie: ***", id="cookie"),
    pytest.param(
        "GET /recordings?token=tok123&page=2", "tok123", "token=***&page=2", id="query-token"
    ),
    pytest.param("login password=hunter2 ok", "hunter2", "password=***", id="password-kv"),
    pytest.param("secret='a b c'", "a b c", "secret='***'", id="quoted-secret-kv"),
    pytest.param("api_key=AKIA123 region=eu", "AKIA123", "region=eu", id="api-key-kv"),
    pytest.param(
        'refresh with access_token="at-999"', "at-999", 'access_token="***"', id="access-token"
    ),
    pytest.param(
        '{"user": "bob", "password": "pw\\"quoted"}',
        'pw\\"quoted',
        '"user": "bob", "password": "***"',
        id="json-password",
    ),
    pytest.param(
        "{'client_secret': 'cs-1'}", "cs-1", "{'client_secret': '***'}", id="repr-client-secret"
    ),
    pytest.param(
        "(psycopg.errors.UniqueViolation) duplicate key value\n"
        "DETAIL:  Key (email)=(alice@example.com) already exists.\n"
        "[SQL: INSERT INTO users (email) VALUES (%(email)s)]\n"
        "[parameters: {'email': 'alice@example.com'}]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)",
        "alice@example.com",
        "[SQL: INSERT INTO users (email) VALUES (%(email)s)]\n(Background",
        id="sqlalchemy-parameters-and-pg-detail",
    ),
]


@pytest.mark.parametrize(("text", "secret", "kept"), SECRET_CASES)
def test_redact_text_masks_the_secret_and_keeps_the_context(
    text: str, secret: str, kept: str
) -> None:
    redacted = redact_text(text)

    assert secret not in redacted
    assert kept in redacted


@pytest.mark.parametrize(("text", "secret", "kept"), SECRET_CASES)
def test_redact_text_is_idempotent(text: str, secret: str, kept: str) -> None:
    once = redact_text(text)

    assert redact_text(once) == once


@pytest.mark.parametrize(
    "text",
    [
        "request finished in 12 ms",
        "GET /recordings/12: 200 in 3.1 ms",
        "tokens=5 max_tokens=7 token_count=3",
        "mail ops@example.com about 'password' rotation",
        "[SQL: SELECT recordings.id FROM recordings WHERE recordings.id = ?]",
    ],
)
def test_text_without_secrets_is_returned_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_text_without_trigger_characters_is_returned_as_the_same_object() -> None:
    text = "recording 42 stored"

    assert redact_text(text) is text


def test_redact_url_masks_user_password_and_secret_query_values() -> None:
    url = "postgresql+psycopg://vrp:pw%40x@127.0.0.1:5432/vrp?sslmode=require&sslpassword=k"

    assert (
        redact_url(url)
        == "postgresql+psycopg://vrp:***@127.0.0.1:5432/vrp?sslmode=require&sslpassword=***"
    )


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("sqlite:///var/vrp.db") == "sqlite:///var/vrp.db"
    assert redact_url("postgresql://vrp@db/vrp") == "postgresql://vrp@db/vrp"


def test_real_sqlalchemy_error_text_loses_its_parameter_values(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE users (email TEXT UNIQUE)"))
        conn.execute(sa.text("INSERT INTO users VALUES (:e)"), {"e": "carol@example.com"})
        with pytest.raises(sa.exc.IntegrityError) as caught:
            conn.execute(sa.text("INSERT INTO users VALUES (:e)"), {"e": "carol@example.com"})
    engine.dispose()

    redacted = redact_text(str(caught.value))

    assert "carol@example.com" not in redacted
    assert "[SQL: INSERT INTO users VALUES (?)]" in redacted


def _record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("vrp.test", logging.WARNING, __file__, 1, msg, args or None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_filter_formats_the_message_then_masks_it_and_clears_args() -> None:
    record = _record("connecting to %s as %s", "postgresql://u:pw@h/db", "u")

    assert RedactionFilter().filter(record) is True

    assert record.getMessage() == "connecting to postgresql://u:***@h/db as u"
    assert record.args is None


def test_filter_masks_string_extras_and_drops_parameter_attributes() -> None:
    record = _record(
        "statement failed",
        url="mysql://root:rootpw@db/x",
        context={"api_key": "k", "note": "Authorization: Bearer zzz"},
        parameters=("alice", 42),
        params={"email": "a@b.c"},
        attempts=3,
    )

    RedactionFilter().filter(record)

    assert record.url == "mysql://root:***@db/x"
    assert record.context == {"api_key": "k", "note": "Authorization: Bearer ***"}
    assert not hasattr(record, "parameters")
    assert not hasattr(record, "params")
    assert record.attempts == 3


def test_the_extras_are_collected_masked_in_order_and_rebuilt_when_a_field_is_added() -> None:
    record = _record(
        "statement failed",
        url="mysql://root:rootpw@db/x",
        attempts=3,
        _private="hidden",
        parameters=("alice", 42),
    )

    RedactionFilter().filter(record)
    extras = redacted_extras(record)

    assert extras == {"url": "mysql://root:***@db/x", "attempts": 3}
    assert list(extras) == ["url", "attempts"]
    assert redacted_extras(record) is extras
    record.trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert list(redacted_extras(record)) == ["url", "attempts", "trace_id"]


def test_scalar_extras_are_offered_only_when_every_value_is_a_plain_scalar() -> None:
    plain = _record("ok", route="/x", status=200, ratio=0.5, cached=True, user=None)
    mixed = _record("ok", route="/x", tags=["a"])
    late = _record("ok", route="/x")
    for record in (plain, mixed, late):
        RedactionFilter().filter(record)
    late.added = "after the redaction pass"

    assert scalar_extras(plain) == {
        "route": "/x",
        "status": 200,
        "ratio": 0.5,
        "cached": True,
        "user": None,
    }
    assert scalar_extras(mixed) is None
    assert scalar_extras(late) is None
    assert redacted_extras(late) == {"route": "/x", "added": "after the redaction pass"}


_EXTRA_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["GET", "/api/x", "token=abc", "postgresql://u:pw@h/db", "a:b"]),
    st.lists(st.sampled_from(["x", "password=pw"]), max_size=2),
)


@given(
    st.dictionaries(
        st.sampled_from(["http.route", "url", "_private", "status", "note", "tags", "z.last"]),
        _EXTRA_VALUES,
    )
)
def test_the_extras_are_every_added_public_field_masked_as_the_record_now_holds_it(
    extra: dict[str, object],
) -> None:
    record = logging.getLogger("vrp.test").makeRecord(
        "vrp.test", logging.INFO, __file__, 1, "msg", None, None, extra=extra
    )

    RedactionFilter().filter(record)

    public = [key for key in extra if not key.startswith("_")]
    extras = redacted_extras(record)
    assert list(extras) == public
    assert extras == {key: getattr(record, key) for key in public}
    assert all(value == redact_text(value) for value in extras.values() if isinstance(value, str))
    plain = all(type(value) in (str, int, float, bool, type(None)) for value in extras.values())
    assert (scalar_extras(record) is extras) == plain


def test_the_extras_of_a_record_from_a_custom_factory_are_found_too() -> None:
    class TaggedRecord(logging.LogRecord):
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.tag = "early"
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    record = TaggedRecord("vrp.test", logging.INFO, __file__, 1, "hello", None, None)
    record.url = "redis://:pw@cache/0"

    RedactionFilter().filter(record)

    assert redacted_extras(record) == {"tag": "early", "url": "redis://:***@cache/0"}


def test_filter_masks_the_formatted_exception() -> None:
    try:
        raise RuntimeError("could not connect to postgresql://app:topsecret@db/vrp")
    except RuntimeError:
        record = logging.LogRecord(
            "vrp.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )

    RedactionFilter().filter(record)

    assert "topsecret" not in record.exc_text
    assert "postgresql://app:***@db/vrp" in record.exc_text


def test_filter_never_raises_on_a_message_that_cannot_be_formatted() -> None:
    record = _record("%d recordings", "not-a-number")

    assert RedactionFilter().filter(record) is True


@pytest.fixture
def clean_logging() -> Iterator[None]:
    reset_for_tests()
    yield
    reset_for_tests()


@pytest.mark.usefixtures("clean_logging")
def test_every_secret_category_is_masked_in_the_log_file(tmp_path: Path) -> None:
    configure_logging(
        LoggingSettings(log_dir=tmp_path, stderr=False, level="INFO"), service="vrp-api"
    )
    log = logging.getLogger("vrp.test.redaction")
    for case in SECRET_CASES:
        text, _secret, _kept = case.values
        log.info("event: %s", text, extra={"detail": text, "parameters": {"p": "v1"}})
    try:
        raise ValueError("DSN postgresql://app:exc-secret@db/vrp rejected")
    except ValueError:
        log.exception("could not connect")

    written = (tmp_path / "vrp-api.log").read_text(encoding="utf-8")

    for case in SECRET_CASES:
        _text, secret, _kept = case.values
        assert secret not in written
        assert json.dumps(secret)[1:-1] not in written
    assert "exc-secret" not in written
    assert '"parameters"' not in written
    lines = [json.loads(line) for line in written.splitlines()]
    assert len(lines) == len(SECRET_CASES) + 1
    assert "postgresql://app:***@db/vrp" in lines[-1]["exception"]


def test_filter_masks_text_in_subclasses_and_sequences_and_leaves_numbers_alone() -> None:
    class Text(str):
        pass

    class Mapping(dict):  # type: ignore[type-arg]
        pass

    record = _record(
        "lean path",
        dsn=Text("postgresql://app:sub-pw@db/x"),
        headers=Mapping({"note": "Authorization: Bearer sub-token"}),
        count=3,
        ratio=0.5,
        missing=None,
        flags=("password=tuple-pw",),
    )

    RedactionFilter().filter(record)

    assert record.dsn == "postgresql://app:***@db/x"
    assert record.headers == {"note": "Authorization: Bearer ***"}
    assert (record.count, record.ratio, record.missing) == (3, 0.5, None)
    assert record.flags == ("password=***",)


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        pytest.param("{'password': 'cut-sh", "cut-sh", "{'password': '***", id="unclosed-pair"),
        pytest.param('token="cut-tok\nnext line', "cut-tok", 'token="***\nnext line', id="kv"),
        pytest.param(
            "DETAIL:  Key (email)=(alice@exam", "alice@exam", "Key (email)=(***", id="pg-detail"
        ),
        pytest.param(
            "[SQL: INSERT INTO users VALUES (?)]\n[parameters: ('alice@exam",
            "alice@exam",
            "[SQL: INSERT INTO users VALUES (?)]",
            id="parameters-block",
        ),
    ],
)
def test_a_value_cut_before_its_closing_quote_is_masked_to_the_end_of_its_line(
    text: str, secret: str, kept: str
) -> None:
    # Log lines get cut (a size cap, a truncated driver message): a secret without its closing
    # quote or bracket must not escape the mask for that.
    redacted = redact_text(text)

    assert secret not in redacted
    assert kept in redacted
    assert redact_text(redacted) == redacted


@pytest.mark.parametrize(
    "text",
    [
        # A backslash matched two ways: the cost doubled every two characters (34: seconds).
        pytest.param("'token': '" + "\\" * 34, id="quoted-pair-backslashes"),
        pytest.param('password="' + "\\" * 34, id="key-value-backslashes"),
        # Scans that every start position repeated to the end of the text: quadratic.
        pytest.param("a." * 30_000 + "@://", id="url-scheme-run"),
        pytest.param("Key (a)=(" * 8_000 + "=", id="pg-detail-without-end"),
        pytest.param("Key (" * 15_000 + "=", id="pg-detail-without-value"),
        pytest.param("[parameters: " * 15_000, id="parameters-without-bracket"),
    ],
)
def test_hostile_text_is_redacted_in_linear_time(text: str) -> None:
    started = time.process_time()
    redact_text(text)

    assert time.process_time() - started < 0.5
