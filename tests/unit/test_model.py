"""model.py: an Event keeps its resource as JSON bytes and parses them only when asked."""

from __future__ import annotations

import json

import orjson
import pytest

from fhir_engagement.model import Event, _json_level_by_level, resource_json

_RESOURCE = {"resourceType": "Appointment", "id": "a1", "status": "noshow",
             "serviceType": [{"text": "Community dental"}], "minutesDuration": 20}


def _event(raw: bytes | None) -> Event:
    return Event("Appointment/a1", "Appointment", None, "Patient/1", None, {}, "test", raw=raw)


def test_the_resource_is_parsed_from_the_bytes_each_time_it_is_asked_for() -> None:
    event = _event(orjson.dumps(_RESOURCE))
    first, second = event.resource(), event.resource()
    assert first == second == _RESOURCE
    assert first is not second  # a fresh dict: no caller can change what another reads


def test_an_event_without_a_resource_gives_none() -> None:
    assert _event(None).resource() is None  # an HL7 v2 message's event


def test_the_bytes_are_no_part_of_equality() -> None:
    assert _event(b'{"a":1}') == _event(b'{"a": 1}')


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": True, "text": 'a "quoted" caf\u00e9', "n": [1, 2.5, None]}
    for _ in range(levels // 2):
        value = {"extension": [value]}
    return value


def test_what_orjson_cannot_write_is_written_level_by_level_and_reads_back() -> None:
    # orjson writes 255 levels at most: 300 are written as the stdlib would write them.
    deep = _nested(300)
    raw = resource_json(deep)
    assert raw == json.dumps(deep, separators=(",", ":")).encode()
    assert _event(raw).resource() == deep
    big = {"resourceType": "Appointment", "value": 2**70 + 1}  # beyond orjson's 64-bit integers
    assert json.loads(resource_json(big)) == big
    alone = {"resourceType": "Appointment", "id": "\ud800"}  # a lone surrogate: not UTF-8
    assert _event(resource_json(alone)).resource() == alone


def test_as_deep_as_orjson_reads_is_written_where_the_stdlib_fails() -> None:
    # 1,000 levels (orjson reads 1,024 from a file); the stdlib's encoder recurses and fails.
    deep = _nested(1000)
    with pytest.raises(RecursionError):
        json.dumps(deep)
    back = _event(resource_json(deep)).resource()
    while isinstance(back, dict) and "extension" in back:  # walked, not compared: == recurses
        back = back["extension"][0]
    assert back == {"leaf": True, "text": 'a "quoted" caf\u00e9', "n": [1, 2.5, None]}


def test_json_of_every_kind_of_value_matches_the_stdlib() -> None:
    for value in ({"a": [1, -2.5e-7, None, True, False, "x\"y\n\u00e9"], "b": {}, "c": []},
                  [], {}, "", [[[]], {"k": {"k": 0}}]):
        assert _json_level_by_level(value) == json.dumps(value, separators=(",", ":"))


def test_what_orjson_writes_is_orjson_s_compact_form() -> None:
    assert resource_json(_RESOURCE) == orjson.dumps(_RESOURCE)
