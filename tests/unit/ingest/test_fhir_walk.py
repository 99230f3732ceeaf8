"""The Reader's hot path: the shapes its shortcuts (inline Codings, one extension lookup, the
participants typed once, a service's coding not re-checked) must read as the general walk does.

Each expectation follows from the FHIR shape and rules.md s.7 (the service is the first element
of the mapping's order that the resource gives), not from a run of the Reader.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.model import Event

SCT = "http://snomed.info/sct"
CHANNEL = "https://example.org/delivery-channel"
OUTCOME = "https://example.org/outcome"
BOOKED_BY = "https://example.org/booking-organisation"
READER = Reader(
    {"Appointment": {"delivery-channel": (CHANNEL,), "provider": (BOOKED_BY,),
                     "outcome": (OUTCOME,)}},
    frozenset(),
    services={"Appointment": ("participant:HealthcareService", "serviceType.reference",
                              "specialty", "serviceType"),
              "Encounter": ("serviceType.reference", "serviceType")},
)


def _appointment(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "a1", "status": "noshow",
            "start": "2025-03-01T10:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}}], **fields}


def _one(resource: dict[str, Any]) -> Event | RecordError:
    (record,) = READER.read(resource, "in.json")
    assert isinstance(record, Event | RecordError)
    return record


def _event(resource: dict[str, Any]) -> Event:
    record = _one(resource)
    assert isinstance(record, Event), record
    return record


def _error(resource: dict[str, Any]) -> RecordError:
    record = _one(resource)
    assert isinstance(record, RecordError), record
    return record


def test_service_is_the_first_concept_with_a_system_and_code() -> None:
    # The first concept's system/code sit on the CodeableConcept, beside an empty coding list:
    # not a Coding, so not a service. The second's first Coding has no system; its second does.
    event = _event(_appointment(serviceType=[
        {"coding": [], "system": SCT, "code": "1"},
        {"coding": [{"code": "no-system"}, {"system": SCT, "code": " 310127003 "}]},
    ]))
    assert event.service == f"{SCT}|310127003"
    assert event.slots["visit"] == {"text:no-system", f"{SCT}|310127003"}


def test_service_from_a_bare_coding_and_from_a_specialty_first() -> None:
    # specialty comes before serviceType in the order; a bare Coding is read as one.
    event = _event(_appointment(specialty=[{"system": SCT, "code": "394537008"}],
                                serviceType=[{"coding": [{"system": SCT, "code": "2"}]}]))
    assert event.service == f"{SCT}|394537008"
    assert {f"{SCT}|394537008", f"{SCT}|2"} <= event.slots["visit"]


def test_service_from_r5_codeable_references() -> None:
    concept = _event(_appointment(serviceType=[{"concept": {"coding": [
        {"system": SCT, "code": "3"}]}}]))
    assert concept.service == f"{SCT}|3"
    # serviceType.reference comes before serviceType: the HealthcareService is the service.
    referenced = _event(_appointment(serviceType=[
        {"concept": {"coding": [{"system": SCT, "code": "3"}]}},
        {"reference": {"reference": "HealthcareService/h1"}}]))
    assert referenced.service == "HealthcareService/h1"


def test_service_from_a_participant_before_any_code() -> None:
    event = _event(_appointment(
        serviceType=[{"coding": [{"system": SCT, "code": "4"}]}],
        participant=[
            {"actor": {"reference": "Patient/p1"}},
            {"actor": {"reference": "Location/l1/_history/2"}},
            {"actor": {"display": "a clinic with no reference"}},
            {"actor": {"reference": "HealthcareService/h1"}},
            {"actor": {"reference": "HealthcareService/h2"}},
            {"actor": {"reference": "Practitioner/d1/_history/1"}},
        ]))
    assert event.service == "HealthcareService/h1"  # the first HealthcareService
    assert event.provider == "Location/l1"  # where it took place: the first place named
    assert event.patient == "Patient/p1"
    assert event.performer == {"reference": "Practitioner/d1/_history/1"}


def test_a_participant_typed_by_its_declared_type_or_nhs_number() -> None:
    event = _event(_appointment(participant=[
        {"actor": {"type": "HealthcareService", "display": "no reference"}},
        {"actor": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                  "value": "9912003888"}}},
        {"actor": {"reference": "_history/x"}},  # names no type: neither patient nor place
    ]))
    assert event.service is None  # the HealthcareService has no key to name it by
    assert event.patient == "nhs:9912003888"


@pytest.mark.parametrize(
    ("fields", "where", "reason"),
    [
        ({"serviceType": [{"coding": [{"system": SCT, "code": "1"}, "x"]}]},
         "Appointment.serviceType[0].coding[1]", "expected a Coding, got a string"),
        ({"serviceType": [{"coding": [{"code": "1"}]}, {"coding": [{"code": 7}]}]},
         "Appointment.serviceType[1].coding[0].code", "expected a string, got a number"),
        ({"serviceType": [{}, {}, {"coding": {"code": "1"}}]},
         "Appointment.serviceType[2].coding", "expected a list, got an object"),
        ({"specialty": [{"system": SCT, "code": ["1"]}]},
         "Appointment.specialty[0].code", "expected a string, got a list"),
        ({"specialty": ["394537008"]},
         "Appointment.specialty[0]", "expected a CodeableConcept, got a string"),
        ({"serviceType": [{"concept": {"concept": {"concept": {}}}}]},
         "Appointment.serviceType[0].concept.concept", "concept nested more than 2 deep"),
        ({"appointmentType": {"coding": [{"code": False}]}},
         "Appointment.appointmentType.coding[0].code", "expected a string, got a boolean"),
    ],
    ids=["coding not an object", "code not a string", "coding not a list", "bare coding's code",
         "concept a string", "concepts too deep", "appointmentType"],
)
def test_a_malformed_concept_is_named_where_it_is(
    fields: dict[str, Any], where: str, reason: str
) -> None:
    error = _error(_appointment(**fields))
    assert error.where == f"in.json ({where})"
    assert error.reason == reason


def test_extension_slots_read_in_the_mappings_order() -> None:
    ok = _event(_appointment(extension=[
        {"url": OUTCOME, "valueCoding": {"system": SCT, "code": "5"}},
        {"url": BOOKED_BY, "valueReference": {"reference": "Organization/RRV"}},
        {"url": CHANNEL, "valueCode": " Video "},
        {"url": CHANNEL, "valueCodeableConcept": {"coding": [{"system": SCT, "code": "6"}]}},
    ]))
    assert ok.slots["outcome"] == {f"{SCT}|5"}
    assert ok.slots["delivery-channel"] == {"text:video", f"{SCT}|6"}
    assert ok.provider == "Organization/RRV"
    # Two faults: the delivery channel is read first (the mappings' order), so its fault is
    # the one named, though the outcome's comes first in the list.
    error = _error(_appointment(extension=[
        {"url": OUTCOME, "valueCodeableConcept": "x"},
        {"url": CHANNEL, "valueCoding": 1},
    ]))
    assert error.where == "in.json (Appointment.extension[1].valueCoding)"
    assert error.reason == "expected a CodeableConcept, got a number"


def test_extension_not_a_list_is_named_only_where_a_slot_reads_it() -> None:
    error = _error(_appointment(extension=5))
    assert error.where == "in.json (Appointment.extension)"
    assert error.reason == "expected a list, got a number"
    # One object where a list belongs is read as a list of it (R4/R5 drift).
    one = _event(_appointment(extension={"url": CHANNEL, "valueCode": "phone"}))
    assert one.slots["delivery-channel"] == {"text:phone"}
    # No mapping reads a Procedure's extensions: a malformed list there refuses nothing.
    procedure = _event({"resourceType": "Procedure", "id": "p1", "status": "not-done",
                        "extension": 5})
    assert procedure.slots == {"status": {"http://hl7.org/fhir/event-status|not-done"}}


def test_an_r4_encounter_class_is_a_bare_coding() -> None:
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "AMB"},
                 "period": {"start": "2025-03-01T10:00:00.1234567Z"}}
    event = _event(encounter)
    assert event.slots["class"] == {"http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB"}
    # A 7-digit fraction is cut to 6 digits, not refused.
    assert event.occurred == datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    error = _error({**encounter, "class": {"system": "s", "code": 1}})
    assert error.where == "in.json (Encounter.class[0].code)"
    assert error.reason == "expected a string, got a number"
