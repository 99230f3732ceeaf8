"""Never quietly discharge (rules.md s.8) from the sources beside an Encounter's outcome: an
Appointment's outpatient outcome and an EpisodeOfCare that ends.

rules.md s.8: "A child discharged from a service (UK Core outcome of attendance 1, an episode
ended, an outpatient 'discharged' outcome) within 12 months after a not-brought at that service
raises review-discharge ... urgent 2 wd". The miss here is Wed 2026-02-11 (no known status,
single WNB: review-impact); each discharge is Wed 2026-02-25 at the same service, so
review-discharge is urgent, due Fri 2026-02-27.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_engagement.model import Event
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore

CHILD = {"resourceType": "Patient", "id": "p-child", "birthDate": "2016-05-01"}
SERVICE = {"coding": [{"system": "https://example-trust.nhs.uk/fhir/CodeSystem/service",
                       "code": "community-paediatrics", "display": "Community paediatrics"}]}
OTHER = {"coding": [{"system": "https://example-trust.nhs.uk/fhir/CodeSystem/service",
                     "code": "orthoptics", "display": "Orthoptics"}]}
OUTCOME = {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-OutcomeOfAttendance",
           "valueCodeableConcept": {"coding": [{
               "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-OutcomeOfAttendanceEngland",
               "code": "1"}]}}
PATIENT = {"reference": "Patient/p-child"}


def _appointment(aid: str, status: str, start: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": aid, "status": status, "start": start,
            "serviceType": [SERVICE], "participant": [{"actor": PATIENT, "status": "accepted"}],
            **fields}


def _episode(status: str, end: str | None = None, service: dict[str, Any] = SERVICE,
             **fields: Any) -> dict[str, Any]:
    period = {"start": "2025-06-02T09:00:00Z", **({"end": end} if end else {})}
    return {"resourceType": "EpisodeOfCare", "id": "eoc1", "status": status, "type": [service],
            "patient": PATIENT, "period": period, **fields}


MISS = _appointment("a1", "noshow", "2026-02-11T10:00:00Z")


def _run(engine: Engine, store: SqliteStore, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    pipeline = Pipeline(engine, store, store.start_run("test"))
    for doc in docs:
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": r} for r in (CHILD, doc)]}
        raw = orjson.dumps(bundle)
        read = engine.records.read_document(bundle, "test", raw)
        assert read.rejected == []
        pipeline.apply(read.records, raw)
        store.commit()
    return [orjson.loads(r.resource) for r in store.run_outputs(pipeline.run) if r.kind == "Task"]


def _codes(tasks: list[dict[str, Any]], focus: str) -> set[tuple[str, str, str]]:
    return {(t["code"]["coding"][0]["code"], t["priority"], t["restriction"]["period"]["end"][:10])
            for t in tasks if t["focus"].get("reference") == focus}


def test_an_appointments_discharged_outcome_after_a_miss_there_asks_for_a_review(
    engine: Engine, store: SqliteStore
) -> None:
    seen = _appointment("a2", "fulfilled", "2026-02-25T10:00:00Z", extension=[OUTCOME])
    tasks = _run(engine, store, MISS, seen)
    assert _codes(tasks, "Appointment/a2") == {("review-discharge", "urgent", "2026-02-27")}


def test_a_no_show_carrying_a_discharged_outcome_is_a_miss_not_a_discharge(
    engine: Engine, store: SqliteStore
) -> None:
    """A PAS that stamps the outcome on every row must not turn a miss into a discharge."""
    again = _appointment("a2", "noshow", "2026-02-25T10:00:00Z", extension=[OUTCOME])
    tasks = _run(engine, store, MISS, again)
    assert "review-discharge" not in {c for c, _, _ in _codes(tasks, "Appointment/a2")}


def test_an_episode_of_care_that_ends_after_a_miss_there_asks_for_a_review(
    engine: Engine, store: SqliteStore
) -> None:
    tasks = _run(engine, store, MISS, _episode("finished", "2026-02-25T12:00:00Z"))
    assert _codes(tasks, "EpisodeOfCare/eoc1") == {("review-discharge", "urgent", "2026-02-27")}


@pytest.mark.parametrize(("episode", "why"), [
    (_episode("active"), "an open episode is no discharge"),
    (_episode("finished", "2026-02-25T12:00:00Z", OTHER), "another service than the miss"),
    (_episode("finished", "2027-03-01T12:00:00Z"), "more than 12 months after the miss"),
], ids=["active", "other service", "over a year later"])
def test_an_episode_that_is_not_a_discharge_after_a_miss_there_asks_nothing(
    engine: Engine, store: SqliteStore, episode: dict[str, Any], why: str
) -> None:
    tasks = _run(engine, store, MISS, episode)
    assert _codes(tasks, "EpisodeOfCare/eoc1") == set(), why


def test_an_episode_is_read_by_its_end_its_patient_and_its_type(engine: Engine) -> None:
    doc = _episode("finished", "2026-02-25T12:00:00Z")
    (event,) = [r for r in engine.records.read_document(doc, "t", orjson.dumps(doc)).records
                if isinstance(r, Event)]
    assert event.occurred is not None
    assert event.occurred.isoformat() == "2026-02-25T12:00:00+00:00"
    assert event.patient == "Patient/p-child"
    assert event.service == "https://example-trust.nhs.uk/fhir/CodeSystem/service|community-paediatrics"


def test_an_episode_entered_in_error_takes_its_discharge_back(
    engine: Engine, store: SqliteStore
) -> None:
    """Nothing is deleted (rules.md s.5, cross-cutting): a review-impact Task says the
    triggering event was retracted."""
    ended = _episode("finished", "2026-02-25T12:00:00Z", meta={"versionId": "1"})
    wrong = _episode("entered-in-error", "2026-02-25T12:00:00Z", meta={"versionId": "2"})
    tasks = _run(engine, store, MISS, ended, wrong)
    on_episode = [t for t in tasks if t["focus"].get("reference") == "EpisodeOfCare/eoc1"]
    assert sorted(t["code"]["coding"][0]["code"] for t in on_episode) == [
        "review-discharge", "review-impact"]
    (retraction,) = [t for t in on_episode if t["code"]["coding"][0]["code"] == "review-impact"]
    assert "retracted" in retraction["description"]
