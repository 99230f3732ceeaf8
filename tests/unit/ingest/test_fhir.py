"""Reading FHIR JSON: reference forms, NHS numbers, per-entry errors, and files on disk."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.ingest.references import NHS_NUMBER_SYSTEM, nhs_number_is_valid, reference_key
from fhir_engagement.model import Event, PatientFacts, StatusFact

ALIASES = {"urn:uuid:8c5e4a1e-0000-4000-8000-000000000001": "Patient/p9"}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"reference": "Patient/p1"}, "Patient/p1"),
        # An absolute reference names its server: Patient/p1 there is not Patient/p1 here.
        ({"reference": "https://fhir.example.org/r4/Patient/p1"},
         "Patient/p1@https://fhir.example.org/r4"),
        ({"reference": "https://fhir.example.org/r4/Patient/p1/_history/3"},
         "Patient/p1@https://fhir.example.org/r4"),
        ({"reference": "urn:uuid:8c5e4a1e-0000-4000-8000-000000000001"}, "Patient/p9"),
        ({"reference": "urn:uuid:not-in-this-bundle"}, "urn:uuid:not-in-this-bundle"),
        ({"reference": "#kid"}, "Appointment/a1#kid"),
        ({"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "991 200 3888"}},
         "nhs:9912003888"),
        ({"identifier": {"system": "urn:oid:2.16.840.1.113883.2.1.3.2", "value": "MRN7"}},
         "id:urn:oid:2.16.840.1.113883.2.1.3.2|MRN7"),
        ({"reference": f"Patient?identifier={NHS_NUMBER_SYSTEM}|9912003888"}, "nhs:9912003888"),
        ({"reference": "Patient?identifier=urn:trust:mrn|77"}, "id:urn:trust:mrn|77"),
        ({"display": "Jo Bloggs"}, None),
        ({"identifier": {"value": "no-system"}}, None),
        ({"reference": ""}, None),
        ("Patient/p1", None),
    ],
    ids=["relative", "absolute", "absolute _history", "urn:uuid alias", "urn:uuid unknown",
         "contained", "identifier NHS", "identifier other", "conditional NHS",
         "conditional other", "display only", "identifier without system", "empty reference",
         "not an object"],
)
def test_reference_key(ref: Any, expected: str | None) -> None:
    assert reference_key(ref, ALIASES, "Appointment/a1") == expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("9912003888", True),
        ("9434765919", True),
        ("9912003889", False),
        ("991200388", False),
        ("99120038880", False),
        ("99120O3888", False),
        ("991 200 3888", False),
        ("", False),
    ],
)
def test_nhs_number_is_valid(value: str, valid: bool) -> None:
    """codes.md: 10 digits, modulus-11 check digit."""
    assert nhs_number_is_valid(value) is valid


def _appointment(rid: str, status: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": rid, "status": status,
            "start": "2026-03-04T10:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}


def test_a_bad_bundle_entry_is_an_error_and_the_good_entries_still_come_out() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _appointment("a1", "noshow")},
        {"resource": _appointment("a2", 3)},
        {"fullUrl": "urn:uuid:p1",
         "resource": {"resourceType": "Patient", "id": "p1", "birthDate": "2015-06-01"}},
    ]}
    records = list(Reader({}, frozenset()).read(bundle, "in.json"))
    assert [type(r) for r in records] == [Event, RecordError, PatientFacts]
    error = records[1]
    assert isinstance(error, RecordError)
    assert "entry[1]" in error.where
    assert "status" in error.where
    assert error.where.startswith("in.json")
    assert "number" in error.reason
    assert records[0].key == "Appointment/a1"  # type: ignore[union-attr]


def test_urn_uuid_references_resolve_through_the_bundle_full_urls() -> None:
    appointment = _appointment("a1", "noshow")
    appointment["participant"] = [{"actor": {"reference": "urn:uuid:kid"}, "status": "accepted"}]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:kid", "resource": {"resourceType": "Patient", "id": "p7"}},
        {"fullUrl": "urn:uuid:appt", "resource": appointment},
    ]}
    events = [r for r in Reader({}, frozenset()).read(bundle, "b.json") if isinstance(r, Event)]
    assert [e.patient for e in events] == ["Patient/p7"]


def test_a_patient_with_an_invalid_nhs_number_is_not_known_by_it() -> None:
    """An invalid NHS number must not merge two children."""
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [
        {"system": NHS_NUMBER_SYSTEM, "value": "9912003889"}]}
    (facts,) = Reader({}, frozenset()).read(patient, "p.json")
    assert isinstance(facts, PatientFacts)
    assert facts.nhs_number is None
    assert facts.aliases == ("Patient/p1",)


def test_not_a_json_object_is_an_error() -> None:
    (error,) = Reader({}, frozenset()).read([1, 2], "list.json")
    assert isinstance(error, RecordError)
    assert "a list" in error.reason


def test_a_status_period_with_a_placeholder_year_is_open_not_refused() -> None:
    """A child-in-need Flag "until 9999-12-31" (a PAS's no-end) must still make the child CIN."""
    flag = {"resourceType": "Flag", "id": "f1", "status": "active",
            "code": {"coding": [{"system": "http://read.info/readv2", "code": "13IS"}]},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "0001-01-01", "end": "9999-12-31T00:00:00-01:00"}}
    (fact,) = Reader({}, frozenset({"http://read.info/readv2|13IS"})).read(flag, "f.json")
    assert isinstance(fact, StatusFact)
    assert (fact.start, fact.end, fact.active) == (None, None, True)

