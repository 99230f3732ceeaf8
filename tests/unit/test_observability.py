"""Logs: JSON lines, identifiers replaced by keyed hashes at every level, no exception messages."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from fhir_engagement.errors import ConfigError
from fhir_engagement.observability import (
    KEY_VARIABLE,
    JsonFormatter,
    RedactIdentifiers,
    log_key,
    mask_identifiers,
    setup_logging,
)

KEY = bytes(range(32))


def _record(level: int, msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("fhir_engagement.test", level, __file__, 1, msg, args, info)


def _hash(identifier: str) -> str:
    return hmac.new(KEY, identifier.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.ERROR])
def test_nhs_numbers_and_patient_references_become_keyed_hashes_at_every_level(level: int) -> None:
    record = _record(level, "child %s (%s) at Patient/abc-1", "999 000 1073", "nhs:9990001073")
    assert RedactIdentifiers(KEY).filter(record)
    same = _hash("9990001073")
    assert record.getMessage() == f"child [id:{same}] ([id:{same}]) at [id:{_hash('Patient/abc-1')}]"


def test_without_a_key_identifiers_are_masked_outright() -> None:
    assert mask_identifiers("sub 999-000-1073 x") == "sub [redacted] x"


def test_one_json_object_a_line() -> None:
    line = JsonFormatter().format(_record(logging.WARNING, "delivery %s rescheduled", "fe-prov-1"))
    entry = orjson.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["message"] == "delivery fe-prov-1 rescheduled"


def test_an_exception_is_logged_by_type_and_stack_never_by_its_message() -> None:
    try:
        try:
            raise ValueError("family name Fixture, born 2015-05-05")
        except ValueError as inner:
            raise KeyError("9990001073") from inner
    except KeyError as exc:
        entry = orjson.loads(JsonFormatter().format(_record(logging.ERROR, "failed", exc=exc)))
    assert "builtins.ValueError" in entry["error"]
    assert "builtins.KeyError" in entry["error"]
    assert "test_observability.py" in entry["error"]  # the stack is kept: where it went wrong
    for content in ("Fixture", "2015-05-05", "9990001073"):
        assert content not in line_of(entry)


def line_of(entry: dict[str, str]) -> str:
    return orjson.dumps(entry).decode()


def test_the_key_comes_from_the_environment_else_the_fallback() -> None:
    assert log_key({KEY_VARIABLE: KEY.hex()}, fallback=b"x" * 32) == KEY
    assert log_key({}, fallback=b"y" * 32) == b"y" * 32
    assert len(log_key({})) == 32
    with pytest.raises(ConfigError, match="hexadecimal"):
        log_key({KEY_VARIABLE: "not hex"})
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        log_key({KEY_VARIABLE: "ab" * 8})


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("fhir_engagement", "aiohttp") for lg in [logging.getLogger(name)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.mark.usefixtures("restored_loggers")
def test_setup_logging_hashes_with_the_given_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    setup_logging(key=KEY)
    out = io.StringIO()
    handler = logging.getLogger("fhir_engagement").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logging.getLogger("fhir_engagement.test").warning("ref %s", "Patient/abc-1")
    assert orjson.loads(out.getvalue())["message"] == f"ref [id:{_hash('Patient/abc-1')}]"
    assert logging.getLogger("aiohttp").handlers == [handler]


def test_the_suite_wide_log_scan_knows_the_fixture_children() -> None:
    """The autouse scan in tests/conftest.py: it must find what it is there to find."""
    from tests.conftest import _fixture_identities, _leaks

    known = _fixture_identities()
    assert {"9990001081", "Fixture", "S08", "2011-04-04", "Test", "Child", "20150601"} <= known
    leaking = [_record(logging.DEBUG, "child %s", "Fixture"),
               _record(logging.INFO, "pid 999 000 9999"),
               _record(logging.ERROR, "born %s", "2015-06-01")]
    assert len(_leaks(leaking)) == 3
    assert _leaks([_record(logging.ERROR, "inbox item %d failed (%s)", 7, "KeyError"),
                   _record(logging.INFO, "fixtures/scenarios read; Children's services")]) == []
