"""What a WNB letter needs, read from Patient and RelatedPerson (ingest/letterfacts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.model import Contact, LetterFacts, PatientFacts

ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def _read(resource: dict[str, Any]) -> list[Any]:
    """What the Reader gives the letter: PatientFacts (a RelatedPerson also gives a household
    link, a StatusFact for ingest/household.py, which is not the letter's)."""
    return [r for r in Reader({}, frozenset()).read(resource, "in.json")
            if isinstance(r, PatientFacts)]


def test_a_patient_gives_name_contacts_languages_and_gp() -> None:
    (facts,) = _read({
        "resourceType": "Patient", "id": "p1",
        "name": [{"use": "old", "given": ["Former"]}, {"use": "official", "given": ["Amy", "Jo"],
                                                        "family": "Smith"}],
        "contact": [{"relationship": [{"coding": [{"system": ROLE, "code": "MTH",
                                                    "display": "mother"}]}],
                     "name": {"text": "Kate  Smith"}},
                    {"name": {"given": ["No"], "family": "Relationship"}},
                    {"relationship": [{"text": "father"}]}],  # no name: no one to write to
        "communication": [{"language": {"coding": [{"code": "en"}]}},
                          {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "PL",
                                                    "display": "Polish"}]}, "preferred": True}],
        "generalPractitioner": [{"reference": "Organization/gp1", "display": "Elm Surgery"}],
    })
    assert isinstance(facts, PatientFacts)
    assert facts.letter == LetterFacts(
        "Amy",
        (Contact("Kate Smith", "mother", frozenset({f"{ROLE}|MTH"})),
         Contact("No Relationship")),
        (("pl", "Polish"), ("en", "")),
        (("reference", "Organization/gp1"), ("display", "Elm Surgery")),
    )


def test_a_related_person_is_a_contact_of_its_patient() -> None:
    (facts,) = _read({"resourceType": "RelatedPerson", "id": "r1",
                      "patient": {"reference": "Patient/p1"},
                      "relationship": [{"coding": [{"system": ROLE, "code": "FTH"}],
                                        "text": "Dad"}],
                      "name": [{"given": ["Tom"], "family": "Smith"}]})
    assert facts.aliases == ("Patient/p1",)
    assert facts.letter == LetterFacts(
        contacts=(Contact("Tom Smith", "Dad", frozenset({f"{ROLE}|FTH"}), "RelatedPerson/r1"),))


@pytest.mark.parametrize("resource", [
    {"resourceType": "RelatedPerson", "id": "r1", "name": [{"given": ["Tom"]}]},  # no patient
    {"resourceType": "RelatedPerson", "id": "r1", "patient": {"reference": "Patient/p1"}},
])
def test_a_related_person_with_no_patient_or_no_name_gives_nothing(resource: dict[str, Any]) -> None:
    assert _read(resource) == []


def test_letter_details_of_the_wrong_shape_never_reject_the_patient() -> None:
    """The Patient's identity matters more than its letter: odd shapes are left out."""
    (facts,) = _read({"resourceType": "Patient", "id": "p1", "birthDate": "2015-01-01",
                      "name": "Amy", "contact": {"name": "x"},
                      "communication": [{"language": "pl"}, 7],
                      "generalPractitioner": ["Organization/gp1"]})
    assert isinstance(facts, PatientFacts)
    assert facts.birth_date == "2015-01-01"
    assert facts.letter is None


def test_a_name_use_of_the_wrong_type_is_no_use() -> None:
    """Found by tests/fuzz: ``use`` as a list must not stop the read (it is not hashable)."""
    (facts,) = _read({"resourceType": "Patient", "id": "p1",
                      "name": [{"use": ["official"], "given": ["Finn"]}]})
    assert facts.letter == LetterFacts("Finn")
