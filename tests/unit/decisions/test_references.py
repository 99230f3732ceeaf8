"""Conditional Patient references: which ones a resource holds, and what each answer makes of them."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_engagement.decisions.ids import NHS_NUMBER_SYSTEM, reference_for
from fhir_engagement.decisions.references import patient_criteria, resolve_patients
from fhir_engagement.decisions.validate import validate_output

NHS = "9912003888"
CRITERION = (NHS_NUMBER_SYSTEM, NHS)


def _task(subject: dict[str, object]) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order", "for": subject,
            "focus": {"reference": "Appointment/a1"},
            "reasonReference": {"reference": "urn:uuid:0b3e5f2a-1c4d-8e6f-9a0b-1c2d3e4f5a6b"}}


def test_the_conditional_reference_a_child_gets_is_valid_r4_and_found() -> None:
    task = _task(reference_for(f"nhs:{NHS}"))
    validate_output(task)
    assert patient_criteria(task) == {CRITERION}


@pytest.mark.parametrize(
    "reference",
    ["Patient/p1", "urn:uuid:0b3e5f2a-1c4d-8e6f-9a0b-1c2d3e4f5a6b", "Patient?identifier=nobar",
     f"Patient?identifier={NHS_NUMBER_SYSTEM}|{NHS}&active=true", "Practitioner?identifier=a|b",
     f"Patient?identifier={NHS_NUMBER_SYSTEM}|"],
)
def test_other_references_are_not_looked_up(reference: str) -> None:
    assert patient_criteria(_task({"reference": reference})) == set()


def test_an_encoded_criterion_is_the_same_patient() -> None:
    task = _task({"reference": "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number"
                               f"%7C{NHS}"})
    assert patient_criteria(task) == {CRITERION}


def test_one_match_becomes_the_literal_patient() -> None:
    task = _task(reference_for(f"nhs:{NHS}"))
    out = resolve_patients(task, {CRITERION: "abc"})
    assert out["for"] == {"reference": "Patient/abc", "type": "Patient"}
    assert out["focus"] == task["focus"]
    assert out["reasonReference"] == task["reasonReference"]
    assert task["for"]["reference"].startswith("Patient?")  # the stored resource is not changed
    validate_output(out)


def test_no_match_becomes_an_identifier_reference_not_a_failing_transaction() -> None:
    out = resolve_patients(_task(reference_for(f"nhs:{NHS}")), {CRITERION: None})
    assert out["for"] == {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": NHS},
                          "type": "Patient"}
    assert patient_criteria(out) == set()
    validate_output(out)


def test_a_criterion_with_no_answer_stays_conditional() -> None:
    task = _task(reference_for(f"nhs:{NHS}"))
    assert resolve_patients(task, {}) == task


def test_every_reference_in_the_resource_is_rewritten_nested_ones_too() -> None:
    flag = {"resourceType": "Flag", "status": "active", "code": {"text": "x"},
            "subject": reference_for(f"nhs:{NHS}"),
            "extension": [{"url": "http://example.org/x",
                           "valueReference": reference_for(f"nhs:{NHS}")}]}
    out = resolve_patients(flag, {CRITERION: "abc"})
    assert out["subject"]["reference"] == "Patient/abc"
    assert out["extension"][0]["valueReference"]["reference"] == "Patient/abc"
