"""OutputValidator (decisions/validate.py): a wrong output is refused by name; its once-per-shape
shortcut re-validates every new shape, and only values of a proven shape go unchecked."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_engagement.decisions.validate import InvalidOutputError, OutputValidator, shape_of

CS = "https://fhir-engagement.org/fhir/CodeSystem"


def _flag() -> dict[str, Any]:
    return {"resourceType": "Flag", "identifier": [{"system": f"{CS}/flag", "value": "fe-flag-1"}],
            "status": "active",
            "code": {"coding": [{"system": f"{CS}/engagement-concern", "code": "single-wnb"}]},
            "subject": {"reference": "Patient/c1"},
            "period": {"start": "2026-03-02T10:00:00+00:00"}}


def _task() -> dict[str, Any]:
    return {"resourceType": "Task", "identifier": [{"system": f"{CS}/task", "value": "fe-task-1"}],
            "status": "requested", "intent": "order", "priority": "routine",
            "code": {"coding": [{"system": f"{CS}/engagement-action", "code": "review-impact"}]},
            "for": {"reference": "Patient/c1"}, "authoredOn": "2026-03-02T10:00:00+00:00",
            "restriction": {"period": {"end": "2026-03-04"}}}


def _with(resource: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(resource)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("resource", "where"),
    [(_with(_flag(), ("period", "start"), "2026-03-02 at ten"), "Flag.period.start"),
     (_with(_flag(), ("status",), ""), "Flag.status"),
     (_with(_flag(), ("colour",), "red"), "Flag.colour"),
     (_with(_task(), ("for",), "Patient/c1"), "Task.for"),
     (_with(_task(), ("code", "coding", 0, "code"), "review  impact"), "Task.code.coding.0.code"),
     (_with(_task(), ("restriction", "period", "end"), "2026-13-45"), "Task.restriction.period.end")],
    ids=["flag-datetime", "flag-empty-code", "flag-unknown-key", "task-string-for-reference",
         "task-code-whitespace", "task-impossible-date"],
)
def test_an_invalid_flag_or_task_is_refused_naming_the_element(resource: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidOutputError, match=f"^{where.replace('.', '[.]')}: "):
        OutputValidator().check(resource)


def test_a_second_output_of_a_proven_shape_is_not_validated_again() -> None:
    validator = OutputValidator()
    validator.check(_flag())
    other = _with(_with(_flag(), ("subject", "reference"), "Patient/c2"), ("period", "start"),
                  "2026-04-01T09:30:00+01:00")
    assert shape_of(other) == shape_of(_flag())
    validator.check(other)
    validator.check(_task())
    validator.check(_with(_task(), ("priority",), "urgent"))
    assert validator.full_validations == 2  # one Flag shape, one Task shape


@pytest.mark.parametrize(
    ("path", "value"),
    [(("colour",), "red"),  # a key the builders never wrote
     (("status",), ["active"]),  # another JSON type
     (("status",), ""),  # an empty string
     (("subject", "reference"), {"reference": "Patient/c1"})],  # another nesting
    ids=["new-key", "new-type", "empty-string", "new-nesting"],
)
def test_a_new_shape_is_always_validated_so_a_structural_fault_is_refused(
    path: tuple[str, ...], value: Any
) -> None:
    """What the shortcut guarantees: only values of a shape already proven valid skip validation."""
    validator = OutputValidator()
    for _ in range(3):
        validator.check(_flag())
    faulty = _with(_flag(), path, value)
    for _ in range(2):  # refused every time: a refused shape is never proven
        with pytest.raises(InvalidOutputError):
            validator.check(faulty)
    assert validator.full_validations == 1


def test_a_new_shape_that_is_valid_is_validated_once_then_proven() -> None:
    validator = OutputValidator()
    validator.check(_task())
    with_owner = _with(_task(), ("owner",), {"reference": "Organization/o1"})
    validator.check(with_owner)
    validator.check(_with(with_owner, ("owner", "reference"), "Organization/o2"))
    assert validator.full_validations == 2


@pytest.mark.parametrize(
    ("path", "bad"),
    [(("period", "start"), "2026-03-02 at ten"), (("code", "coding", 0, "code"), "single  wnb")],
    ids=["malformed-datetime", "code-with-two-spaces"],
)
def test_the_shortcut_does_not_check_the_values_of_a_proven_shape(
    path: tuple[str | int, ...], bad: str
) -> None:
    """The documented trade-off, pinned: a value full validation refuses goes through once its
    shape is proven. The builders write those elements only from isoformat() and from checked
    data files, never from input, which is what makes the shortcut safe today; a builder that
    copies an input string into a date or code element would need the value checked itself."""
    broken = _with(_flag(), path, bad)
    with pytest.raises(InvalidOutputError):
        OutputValidator().check(broken)  # refused when it is the first of its shape
    validator = OutputValidator()
    validator.check(_flag())
    validator.check(broken)  # let through: same keys, same types, non-empty strings
    assert validator.full_validations == 1
