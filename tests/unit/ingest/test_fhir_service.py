"""Which element names an event's service (rules.md s.7), in the order the mapping files give."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_engagement.ingest import fhir
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.model import SERVICE_ELEMENTS, Event
from fhir_engagement.signals.mappings import load_mappings
from tests.conftest import MAPPINGS

SNOMED = "http://snomed.info/sct"
SPECIALIST_SURGICAL = {"coding": [{"system": SNOMED, "code": "394610002",
                                   "display": "Surgery - specialty"}],
                       "text": "Specialist Surgical"}
ORTHOPAEDICS = {"coding": [{"system": SNOMED, "code": "394801008",
                            "display": "Trauma and orthopaedics"}]}
ENT = {"coding": [{"system": SNOMED, "code": "418960008", "display": "Otolaryngology"}]}
ORDER = load_mappings(MAPPINGS).services


def _service(res: dict[str, Any], order: dict[str, tuple[str, ...]] = ORDER) -> str | None:
    base = {"id": "a1", "start": "2026-03-04T10:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}
    (event,) = Reader({}, frozenset(), services=order).read({**base, **res}, "a.json")
    assert isinstance(event, Event)
    return event.service


def test_a_service_category_is_never_the_service() -> None:
    """UK Core's Appointment example: orthopaedics and ENT share the category Specialist
    Surgical; the category once made them one service, so two misses a year apart were a pattern."""
    ortho = _service({"resourceType": "Appointment", "status": "noshow",
                      "serviceCategory": [SPECIALIST_SURGICAL], "specialty": [ORTHOPAEDICS]})
    ent = _service({"resourceType": "Appointment", "status": "noshow",
                    "serviceCategory": [SPECIALIST_SURGICAL], "specialty": [ENT]})
    assert ortho == f"{SNOMED}|394801008"
    assert ent == f"{SNOMED}|418960008"
    only_category = _service({"resourceType": "Appointment", "status": "noshow",
                              "serviceCategory": [SPECIALIST_SURGICAL]})
    assert only_category is None


def test_the_healthcare_service_outranks_the_specialty() -> None:
    res = {"resourceType": "Appointment", "status": "noshow", "specialty": [ORTHOPAEDICS],
           "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                           {"actor": {"reference": "HealthcareService/fracture-clinic"},
                            "status": "accepted"}]}
    assert _service(res) == "HealthcareService/fracture-clinic"


def test_a_code_is_the_first_coding_of_the_first_concept_not_the_first_alphabetically() -> None:
    """The same clinic keeps the same key whatever other codings a feed adds beside it."""
    local = {"system": "https://trust.example.org/clinic", "code": "ORTHO-1"}
    res = {"resourceType": "Appointment", "status": "noshow",
           "specialty": [{"text": "text only"},
                         {"coding": [{"system": "urn:z-local", "code": "zz"}, local]},
                         ORTHOPAEDICS]}
    assert _service(res) == "urn:z-local|zz"


def test_the_order_is_the_one_given_so_a_source_may_bring_its_own() -> None:
    res = {"resourceType": "Appointment", "status": "noshow", "specialty": [ORTHOPAEDICS],
           "serviceType": [ENT]}
    assert _service(res) == f"{SNOMED}|394801008"
    assert _service(res, {"Appointment": ("serviceType", "specialty")}) == f"{SNOMED}|418960008"
    assert _service(res, {}) is None


@pytest.mark.parametrize(
    ("encounter", "expected"),
    [
        ({"serviceType": ENT, "type": [ORTHOPAEDICS],
          "serviceProvider": {"reference": "Organization/trust"}}, f"{SNOMED}|418960008"),
        ({"serviceType": [{"reference": {"reference": "HealthcareService/ent"},
                           "concept": ENT}]}, "HealthcareService/ent"),
        ({"type": [ORTHOPAEDICS], "serviceProvider": {"reference": "Organization/trust"}}, None),
    ],
    ids=["R4 serviceType code", "R5 serviceType reference", "type and provider are not services"],
)
def test_an_encounters_service(encounter: dict[str, Any], expected: str | None) -> None:
    res = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": "Patient/p1"},
           "period": {"start": "2026-03-04T10:00:00Z"}, **encounter}
    assert _service(res) == expected


def test_every_service_element_the_mappings_may_name_has_a_reader() -> None:
    named = set().union(*SERVICE_ELEMENTS.values())
    assert named == set(fhir._SERVICE_READERS)
