"""model.py: an Event keeps its resource as JSON bytes and parses them only when asked."""

from __future__ import annotations

import json

import orjson

from fhir_engagement.model import Event, resource_json

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


def test_what_orjson_cannot_write_the_stdlib_writes_and_it_reads_back() -> None:
    deep: dict[str, object] = {"leaf": True}
    for _ in range(300):  # orjson writes 255 levels at most
        deep = {"extension": [deep]}
    big = {"resourceType": "Appointment", "value": 2**70}  # beyond orjson's 64-bit integers
    for resource in (deep, big):
        raw = resource_json(resource)
        assert json.loads(raw) == resource
        assert _event(raw).resource() == resource


def test_what_orjson_writes_is_orjson_s_compact_form() -> None:
    assert resource_json(_RESOURCE) == orjson.dumps(_RESOURCE)
