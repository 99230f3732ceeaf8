"""validate_input (ingest/validate.py): a shape proven valid still has every value checked.

The oracle is full fhir.resources validation of each resource (``_validate_fully``, what
validate_input did for every resource before shapes were cached). Resources of a proven shape
with one value changed, to values FHIR's primitive types refuse (no calendar date, a code with
two spaces, an id with a space, a zero positiveInt) or accept, must be refused or accepted as
the oracle does, with the same message.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest import validate
from fhir_engagement.ingest.validate import validate_input
from tests.conftest import SCENARIOS

_BAD_STRINGS = ["2026-02-30T10:00:00Z", "2026-13-01", "10:00", "not a date", "a  b", " lead",
                "has space", "x", "Patient/", "urn:uuid:", "\u00e9t\u00e9", "2026-02-11",
                "2026-02-11T10:00:00+01:00", "2026-02-11T25:00:00Z", "0", "-"]
_NUMBERS = [0, -1, 1, 2**31, 15]


@pytest.fixture(autouse=True)
def _fresh_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_PROVEN", {})


def _events() -> list[dict[str, Any]]:
    """Every Appointment and Encounter in the scenarios (R4 and R5 shapes)."""
    found = []
    for path in sorted(SCENARIOS.rglob("*.json")):
        document = json.loads(path.read_text())
        for entry in document.get("entry", [document]):
            resource = entry.get("resource", entry)
            if resource.get("resourceType") in ("Appointment", "Encounter"):
                found.append(resource)
    return found


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":
                yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path


def _set(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(resource)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _verdict(check: Any, resource: dict[str, Any]) -> str:
    try:
        check(resource)
    except RecordError as error:
        return str(error)
    return "valid"


def _full(resource: dict[str, Any]) -> None:
    rtype = str(resource["resourceType"])
    validate._validate_fully(resource, "here", rtype, validate._looks_r5(resource))


def test_a_proven_shape_with_one_value_changed_is_judged_as_full_validation_judges_it() -> None:
    rng = random.Random(15)
    events = _events()
    assert len(events) > 30
    compared = refused = through_plan = 0
    for resource in events:
        validate_input(resource, "here")  # proves the shape (the fixtures are valid)
        for path in _leaves(resource):
            old: Any = resource
            for step in path:
                old = old[step]
            values = _NUMBERS if type(old) is int else rng.sample(_BAD_STRINGS, 3)
            for value in values if type(old) in (str, int) else ():
                changed = _set(resource, path, value)
                expected = _verdict(_full, changed)
                shape = (str(changed["resourceType"]), validate._looks_r5(changed),
                         validate.shape_of(changed))
                through_plan += validate._PROVEN.get(shape) is not None
                assert _verdict(lambda r: validate_input(r, "here"), changed) == expected, path
                compared += 1
                refused += expected != "valid"
    assert compared > 1000
    assert refused > 300  # the values chosen do break many fields
    assert through_plan > compared // 2  # most were judged by a proven shape's plan


def test_an_impossible_date_in_a_proven_shape_is_refused_by_its_path() -> None:
    # FHIR dateTime must be a real calendar date (there is no 30 February); a positiveInt >= 1.
    appointment = json.loads((SCENARIOS / "01-single-wnb-no-status" / "bundle.json")
                             .read_text())["entry"][1]["resource"]
    validate_input(appointment, "file:2")
    with pytest.raises(RecordError, match=r"file:3 \(Appointment\.start\)"):
        validate_input({**appointment, "start": "2026-02-30T10:00:00Z"}, "file:3")
    with_duration = {**appointment, "minutesDuration": 30}
    validate_input(with_duration, "file:4")
    with pytest.raises(RecordError, match=r"Appointment\.minutesDuration"):
        validate_input({**with_duration, "minutesDuration": 0}, "file:5")
    validate_input({**appointment, "start": "2026-02-28T10:00:00Z"}, "file:6")


def test_a_contained_resource_is_validated_fully_every_time() -> None:
    appointment = json.loads((SCENARIOS / "01-single-wnb-no-status" / "bundle.json")
                             .read_text())["entry"][1]["resource"]
    contained = {**appointment, "contained": [{"resourceType": "Patient", "id": "p"}]}
    validate_input(contained, "here")
    assert list(validate._PROVEN.values()) == [None]  # no plan: its type is told by a value
    with pytest.raises(RecordError):
        validate_input({**contained, "contained": [{"resourceType": "Patient", "id": "a b"}]},
                       "here")


def test_a_resource_too_deep_for_a_shape_is_judged_as_before() -> None:
    # As deep as orjson reads (1,024 levels) is deeper than fhir.resources validates (and than
    # a shape is taken): it fails as full validation always failed on it (the pipeline's guard
    # makes it a named rejection), and no shape is kept for it.
    appointment = json.loads((SCENARIOS / "01-single-wnb-no-status" / "bundle.json")
                             .read_text())["entry"][1]["resource"]
    deep: dict[str, Any] = {"url": "u"}
    for _ in range(1000):
        deep = {"url": "u", "extension": [deep]}
    nested = {**appointment, "extension": [deep]}
    with pytest.raises(RecursionError):
        _full(nested)
    with pytest.raises(RecursionError):
        validate_input(nested, "here")
    assert validate._PROVEN == {}
