"""FHIR JSON -> Reader -> extract: one case per rules.md section 1 row, in R4 and R5 shapes."""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.model import Event
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.signals.extract import extract, is_correction
from tests.conftest import MAPPINGS

CHILD = {"reference": "Patient/child-1"}
SCT = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CANCEL = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
NUBC = "http://www.nubc.org/patient-discharge"
NUBC_NEW = "https://www.nubc.org/CodeSystem/PatDischargeStatus"
UK_METHOD_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DischargeMethod"
UK_METHOD = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeMethodEngland"
NHS_DD_METHOD = "https://fhir.hl7.org.uk/CodeSystem/NHSDataModelAndDictionary-DischargeMethod"
ECDS_EXT = ("https://fhir.hl7.org.uk/StructureDefinition/"
            "Extension-UKCore-EmergencyCareDischargeStatus")
ATTENDANCE_EXT = "https://fhir-engagement.org/fhir/StructureDefinition/attended-or-did-not-attend"
ATTENDANCE = "https://fhir.nhs.uk/CodeSystem/attended-or-did-not-attend"
SUBJECT_STATUS = "http://terminology.hl7.org/CodeSystem/encounter-subject-status"


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def ext(url: str, system: str, code: str) -> dict[str, Any]:
    return {"url": url, "valueCodeableConcept": cc(system, code)}


def r4_appointment(status: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "appt-1", "status": status,
            "start": "2026-03-04T10:00:00Z",
            "participant": [{"actor": CHILD, "status": "accepted"}], **fields}


def r5_appointment(status: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "appt-1", "status": status,
            "start": "2026-03-04T10:00:00Z", "subject": CHILD,
            "participant": [{"actor": {"reference": "Practitioner/dr-1"},
                             "status": "accepted"}], **fields}


def encounter(status: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "enc-1", "status": status, "subject": CHILD,
            "period": {"start": "2026-03-04T10:00:00Z", "end": "2026-03-04T13:00:00Z"},
            **fields}


def r4_class(code: str) -> dict[str, Any]:
    return {"class": {"system": ACT, "code": code}}


def r5_class(code: str) -> dict[str, Any]:
    return {"class": [cc(ACT, code)]}


HOME_VISIT = [cc(SCT, "439708006")]

# id -> (resource, expected signal codes); each names its rules.md section 1 row.
CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    # not-brought: Appointment status = noshow (R4 and R5); NHS attendance code 3 and 7
    "noshow R4": (r4_appointment("noshow"), {"not-brought"}),
    "noshow R5 subject": (r5_appointment("noshow"), {"not-brought"}),
    "noshow video call": (r4_appointment("noshow", extension=[ext(
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeliveryChannel",
        "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeliveryChannel", "Video")]), {"not-brought"}),
    # the NHS attendance code has no published system: not read unless a source names one
    "NHS did not attend 3, no source names it": (r4_appointment("booked", extension=[
        ext(ATTENDANCE_EXT, ATTENDANCE, "3")]), set()),
    "booked": (r4_appointment("booked"), set()),
    # no-access-visit: as not-brought, but a home visit
    "noshow home visit serviceType": (
        r4_appointment("noshow", serviceType=HOME_VISIT), {"no-access-visit"}),
    "noshow home visit R5 class HH": (
        r5_appointment("noshow", **r5_class("HH")), {"no-access-visit"}),
    "noshow home visit text only": (
        r4_appointment("noshow", appointmentType={"text": "Home visit"}), {"no-access-visit"}),
    # family-cancelled: status cancelled with a pat / pat-* reason (R4 one l, R5 two)
    "cancelled pat R4": (
        r4_appointment("cancelled", cancelationReason=cc(CANCEL, "pat")), {"family-cancelled"}),
    "cancelled pat-lt R5": (
        r5_appointment("cancelled", cancellationReason=cc(CANCEL, "pat-lt")),
        {"family-cancelled"}),
    # ... provider cancellations and a death are not signals
    "cancelled prov": (r4_appointment("cancelled", cancelationReason=cc(CANCEL, "prov")), set()),
    "cancelled maint": (
        r4_appointment("cancelled", cancelationReason=cc(CANCEL, "maint")), set()),
    "cancelled pat-dec": (
        r4_appointment("cancelled", cancelationReason=cc(CANCEL, "pat-dec")), set()),
    "cancelled pat, wrong system": (
        r4_appointment("cancelled", cancelationReason=cc("urn:local:reasons", "pat")), set()),
    # attended: Appointment fulfilled / arrived / checked-in; a finished planned Encounter
    "fulfilled": (r4_appointment("fulfilled"), {"attended"}),
    "arrived": (r4_appointment("arrived"), {"attended"}),
    "checked-in R5": (r5_appointment("checked-in"), {"attended"}),
    "finished AMB encounter": (encounter("finished", **r4_class("AMB")), {"attended"}),
    "completed AMB encounter R5": (encounter("completed", **r5_class("AMB")), {"attended"}),
    # left-against-advice: aadvice, NUBC 07/7, UK Core method 6/7, NHS DD 2, SNOMED 225928004
    "aadvice R4 hospitalization": (encounter("finished", **r4_class("IMP"), hospitalization={
        "dischargeDisposition": cc(DISPOSITION, "aadvice")}), {"left-against-advice"}),
    "aadvice R5 admission": (encounter("completed", **r5_class("IMP"), admission={
        "dischargeDisposition": cc(DISPOSITION, "aadvice")}), {"left-against-advice"}),
    "NUBC 07 (US, per source only)": (encounter("finished", hospitalization={
        "dischargeDisposition": cc(NUBC, "07")}), set()),
    "UK Core method 6": (encounter("finished", extension=[
        ext(UK_METHOD_EXT, UK_METHOD, "6")]), {"left-against-advice"}),
    "UK Core method 7": (encounter("finished", extension=[
        ext(UK_METHOD_EXT, UK_METHOD, "7")]), {"left-against-advice"}),
    "NHS DD method 2": (encounter("finished", extension=[
        ext(UK_METHOD_EXT, NHS_DD_METHOD, "2")]), {"left-against-advice"}),
    "UK Core method 1 clinical advice": (encounter("finished", extension=[
        ext(UK_METHOD_EXT, UK_METHOD, "1")]), set()),
    "SNOMED 225928004": (encounter("finished", hospitalization={
        "dischargeDisposition": cc(SCT, "225928004")}), {"left-against-advice"}),
    "discharged home": (encounter("finished", hospitalization={
        "dischargeDisposition": cc(DISPOSITION, "home")}), set()),
    "aadvice entered in error": (encounter("entered-in-error", hospitalization={
        "dischargeDisposition": cc(DISPOSITION, "aadvice")}), set()),
    "AMB against advice is not attended": (encounter("finished", **r4_class("AMB"),
        hospitalization={"dischargeDisposition": cc(DISPOSITION, "aadvice")}),
        {"left-against-advice"}),
    # left-before-seen: ECDS discharge status; R5 discontinued + subjectStatus departed
    "ECDS before initial assessment": (encounter("finished", extension=[
        ext(ECDS_EXT, SCT, "1066301000000103")]), {"left-before-seen"}),
    "ECDS after initial assessment": (encounter("finished", extension=[
        ext(ECDS_EXT, SCT, "1066311000000101")]), {"left-before-seen"}),
    "ECDS before treatment completed": (encounter("finished", extension=[
        ext(ECDS_EXT, SCT, "1066321000000107")]), {"left-before-seen"}),
    "ECDS treatment completed": (encounter("finished", extension=[
        ext(ECDS_EXT, SCT, "182992009")]), set()),
    "R5 discontinued departed": (encounter(
        "discontinued", subjectStatus=cc(SUBJECT_STATUS, "departed")), {"left-before-seen"}),
    "R5 discontinued receiving-care": (encounter(
        "discontinued", subjectStatus=cc(SUBJECT_STATUS, "receiving-care")), set()),
    # unscheduled-attendance: class EMER (R4 Coding, R5 list)
    "EMER R4 Coding": (encounter("finished", **r4_class("EMER")), {"unscheduled-attendance"}),
    "EMER R5 list": (encounter("completed", **r5_class("EMER")), {"unscheduled-attendance"}),
    "EMER planned": (encounter("planned", **r4_class("EMER")), set()),
    "EMER left before seen": (encounter("finished", **r4_class("EMER"), extension=[
        ext(ECDS_EXT, SCT, "1066301000000103")]),
        {"unscheduled-attendance", "left-before-seen"}),
    # refused-assessment: configured status reasons on Procedure / ServiceRequest
    "Procedure not-done refused": ({
        "resourceType": "Procedure", "id": "proc-1", "status": "not-done", "subject": CHILD,
        "performedDateTime": "2026-03-04T10:00:00Z",
        "statusReason": cc(SCT, "183944003")}, {"refused-assessment"}),
    "Procedure not-done other reason": ({
        "resourceType": "Procedure", "id": "proc-1", "status": "not-done", "subject": CHILD,
        "performedDateTime": "2026-03-04T10:00:00Z",
        "statusReason": cc(SCT, "398090008")}, set()),
    "ServiceRequest refused by extension": ({
        "resourceType": "ServiceRequest", "id": "sr-1", "status": "revoked",
        "intent": "order", "subject": CHILD, "authoredOn": "2026-03-04",
        "extension": [ext("http://hl7.org/fhir/StructureDefinition/request-statusReason",
                          SCT, "105480006")]}, {"refused-assessment"}),
}


def _event(reader: Reader, resource: dict[str, Any]) -> Event:
    records = list(reader.read(resource, "test.json"))
    events = [r for r in records if isinstance(r, Event)]
    assert len(events) == 1, records
    return events[0]


@pytest.mark.parametrize(("resource", "expected"), CASES.values(), ids=CASES.keys())
def test_signals_raised_by_one_resource(
    engine: Engine, resource: dict[str, Any], expected: set[str]
) -> None:
    event = _event(engine.reader, resource)
    assert {s.code for s in extract(event, engine.mappings)} == expected


def test_each_signal_names_the_mapping_rule_that_fired(engine: Engine) -> None:
    event = _event(engine.reader, r4_appointment("noshow", serviceType=HOME_VISIT))
    assert [(s.code, s.rule) for s in extract(event, engine.mappings)] == [
        ("no-access-visit", "appointment-noshow-home-visit")]


DID_NOT_WAIT = encounter("finished", extension=[{"url": ECDS_EXT, "valueString": "Did not wait"}])
DAMA = encounter("finished", hospitalization={
    "dischargeDisposition": cc("urn:example-trust:discharge-method", "DAMA")})


@pytest.mark.parametrize(
    ("resource", "source", "expected"),
    [
        (DID_NOT_WAIT, "urn:example-trust:ed", {"left-before-seen"}),
        (DID_NOT_WAIT, "", set()),
        (DID_NOT_WAIT, "urn:other-trust:", set()),
        (DAMA, "urn:example-trust:pas", {"left-against-advice"}),
        (DAMA, "", set()),
        ({**DAMA, "meta": {"source": "urn:example-trust:pas"}}, "", {"left-against-advice"}),
    ],
    ids=["text, trust source", "text, no source", "text, other source", "DAMA, trust source",
         "DAMA, no source", "DAMA, meta.source"],
)
def test_local_codes_apply_only_to_their_source(
    engine: Engine, resource: dict[str, Any], source: str, expected: set[str]
) -> None:
    """mappings/local/example-trust.toml: source prefix 'urn:example-trust:'."""
    reader = dataclasses.replace(engine.reader, source=source)
    event = _event(reader, resource)
    assert {s.code for s in extract(event, engine.mappings)} == expected


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (r4_appointment("fulfilled"), True),
        (r4_appointment("entered-in-error"), True),
        (r4_appointment("booked"), False),
        (encounter("in-progress"), True),
        (encounter("finished"), False),
    ],
    ids=["noshow corrected to fulfilled", "entered in error", "re-booked",
         "discharge cancelled", "finished"],
)
def test_which_later_versions_retract_earlier_signals(
    engine: Engine, resource: dict[str, Any], expected: bool
) -> None:
    """rules.md 5, cross-cutting: a corrected event (noshow -> fulfilled, A13) is retracted."""
    assert is_correction(_event(engine.reader, resource), engine.mappings) is expected


@pytest.mark.parametrize("code", ["07", "7"])
@pytest.mark.parametrize("system", [NUBC_NEW, NUBC], ids=["nubc.org CodeSystem", "legacy NUBC"])
@pytest.mark.parametrize(("source", "expected"), [("urn:example-trust:pas", {"left-against-advice"}),
                                                  ("", set())], ids=["trust", "no source"])
def test_nubc_07_is_read_only_for_a_source_that_names_it(
    engine: Engine, system: str, code: str, source: str, expected: set[str]
) -> None:
    """codes.md: NUBC is a US code set (02 is a transfer): per source only, both URIs."""
    reader = dataclasses.replace(engine.reader, source=source)
    event = _event(reader, encounter("finished", hospitalization={
        "dischargeDisposition": cc(system, code)}))
    assert {s.code for s in extract(event, engine.mappings)} == expected


@pytest.mark.parametrize(("system", "code"), [(UK_METHOD, "6"), (UK_METHOD, "7"),
                                              (NHS_DD_METHOD, "2")])
def test_uk_discharge_methods_read_everywhere(engine: Engine, system: str, code: str) -> None:
    event = _event(engine.reader, encounter("finished", extension=[
        ext(UK_METHOD_EXT, system, code)]))
    assert {s.code for s in extract(event, engine.mappings)} == {"left-against-advice"}


TRUST_ATTENDANCE = "urn:example-trust:attended-or-did-not-attend"


@pytest.fixture(scope="module")
def attendance_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The shipped mappings plus what a trust adds: its extension and, for its source, the codes."""
    root = tmp_path_factory.mktemp("m") / "mappings"
    shutil.copytree(MAPPINGS, root)
    appointment = root / "fhir" / "Appointment.toml"
    appointment.write_text(appointment.read_text().replace(
        "attendance = []", f'attendance = ["{ATTENDANCE_EXT}"]'))
    entries = [("attendance-not-brought", "3"), ("attendance-not-brought", "7"),
               ("attendance-attended", "5"), ("attendance-patient-cancelled", "2")]
    (root / "local" / "pas.toml").write_text('source = "urn:pas:"\n' + "".join(
        f'[[codes.{name}.code]]\nsystem = "{TRUST_ATTENDANCE}"\ncode = "{code}"\n'
        f'display = "x"\n' for name, code in entries))
    return load_engine(Settings(mappings_dir=root))


@pytest.mark.parametrize(("status", "code", "expected"), [
    ("booked", "3", {"not-brought"}), ("booked", "7", {"not-brought"}),
    ("booked", "5", {"attended"}), ("cancelled", "2", {"family-cancelled"})])
def test_the_nhs_attendance_code_is_read_where_a_source_names_its_system(
    attendance_engine: Engine, status: str, code: str, expected: set[str]
) -> None:
    resource = r4_appointment(status, extension=[ext(ATTENDANCE_EXT, TRUST_ATTENDANCE, code)])
    ours = dataclasses.replace(attendance_engine.reader, source="urn:pas:feed")
    assert {s.code for s in extract(_event(ours, resource), attendance_engine.mappings)} == expected
    other = dataclasses.replace(attendance_engine.reader, source="urn:elsewhere:")
    assert not extract(_event(other, resource), attendance_engine.mappings)
