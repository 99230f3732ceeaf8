"""Reading FHIR JSON: reference forms, NHS numbers, per-entry errors, and files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest.fhir import NHS_NUMBER_SYSTEM, Reader, nhs_number_is_valid, reference_key
from fhir_engagement.ingest.files import Document, Skipped, iter_documents
from fhir_engagement.model import Event, PatientFacts

ALIASES = {"urn:uuid:8c5e4a1e-0000-4000-8000-000000000001": "Patient/p9"}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"reference": "Patient/p1"}, "Patient/p1"),
        ({"reference": "https://fhir.example.org/r4/Patient/p1"}, "Patient/p1"),
        ({"reference": "https://fhir.example.org/r4/Patient/p1/_history/3"}, "Patient/p1"),
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


def _documents(paths: list[Path]) -> list[Document | RecordError | Skipped]:
    return list(iter_documents(paths))


def test_a_utf8_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "with-bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(_appointment("a1", "noshow")))
    (doc,) = _documents([path])
    assert isinstance(doc, Document)
    assert doc.value["id"] == "a1"
    assert doc.origin == str(path)


def test_a_utf8_bom_on_ndjson_is_skipped_and_lines_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    lines = [orjson.dumps(_appointment(f"a{i}", "noshow")) for i in (1, 2)]
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\n\n" + lines[1] + b"\n")
    docs = _documents([path])
    assert [(d.origin, d.value["id"]) for d in docs] == [  # type: ignore[union-attr]
        (f"{path}:1", "a1"), (f"{path}:3", "a2")]


def test_invalid_json_is_an_error_naming_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b'{\n  "resourceType": "Appointment",\n  "id": \n}\n')
    (error,) = _documents([path])
    assert isinstance(error, RecordError)
    assert error.where == f"{path}:4:1"
    assert "not valid JSON" in error.reason


def test_a_bad_ndjson_line_names_its_line_and_the_rest_are_read(tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    path.write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n{"resourceType": \n'
                     b'{"resourceType": "Patient", "id": "p2"}\n')
    docs = _documents([path])
    assert [type(d) for d in docs] == [Document, RecordError, Document]
    assert docs[1].where == f"{path}:2"  # type: ignore[union-attr]


def test_a_folder_skips_other_files_and_a_named_file_of_another_kind_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.md").write_text("not FHIR", encoding="utf-8")
    (tmp_path / "a.json").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "p1"}))
    folder = _documents([tmp_path])
    assert [type(d) for d in folder] == [Document, Skipped]
    (named,) = _documents([tmp_path / "notes.md"])
    assert isinstance(named, RecordError)
    (missing,) = _documents([tmp_path / "nope.json"])
    assert isinstance(missing, RecordError)
    assert missing.reason == "no such file or folder"
