"""The pipeline keeps each child's letter facts and writes the drafts beside the letter Task.

Two misses of a child with no known status in 12 months are the "repeat" pattern (rules.md s.3),
whose row asks for send-wnb-letter (s.5); s.8 puts two drafts beside it.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore

ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def _patient(given: str, contacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "birthDate": "2015-05-01",
            "name": [{"given": [given]}], "contact": contacts or []}


FATHER = {"resourceType": "RelatedPerson", "id": "dad", "patient": {"reference": "Patient/p1"},
          "relationship": [{"coding": [{"system": ROLE, "code": "FTH", "display": "father"}]}],
          "name": [{"text": "Tom Smith"}]}


def _noshow(appointment: str, start: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": appointment, "status": "noshow", "start": start,
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "declined"}]}


def _apply(pipeline: Pipeline, engine: Engine, resource: dict[str, Any]) -> None:
    raw = orjson.dumps(resource)
    read = engine.records.read_document(resource, "test", raw)
    assert read.rejected == []
    pipeline.apply(read.records, raw)
    pipeline.store.commit()


def _drafts(store: SqliteStore, run: int) -> list[dict[str, Any]]:
    return [orjson.loads(r.resource) for r in store.run_outputs(run)
            if r.kind == "CommunicationRequest"]


def test_a_newer_patient_keeps_the_related_person_and_the_drafts_use_both(
    engine: Engine, store: SqliteStore
) -> None:
    pipeline = Pipeline(engine, store, store.start_run("test"))
    _apply(pipeline, engine, _patient("Amy"))
    _apply(pipeline, engine, FATHER)
    _apply(pipeline, engine, _patient("Amelia"))  # a newer version: its name, Dad still known
    _apply(pipeline, engine, _noshow("a1", "2026-02-11T10:00:00Z"))
    assert _drafts(store, pipeline.run) == []  # a single miss asks for no letter
    _apply(pipeline, engine, _noshow("a2", "2026-03-11T10:00:00Z"))
    parent, gp = _drafts(store, pipeline.run)
    assert parent["recipient"] == [{"reference": "RelatedPerson/dad", "type": "RelatedPerson",
                                    "display": "Tom Smith (father)"}]
    assert "Dear Tom Smith," in parent["payload"][0]["contentString"]
    assert "Amelia was not brought" in parent["payload"][0]["contentString"]
    assert "Amy" not in parent["payload"][0]["contentString"]
    assert gp["category"][0]["text"] == "Was not brought letter: GP copy"
    assert pipeline.stats["letter parent"] == pipeline.stats["letter gp"] == 1


def test_the_same_miss_again_writes_no_second_draft(engine: Engine, store: SqliteStore) -> None:
    pipeline = Pipeline(engine, store, store.start_run("test"))
    for resource in (_patient("Amy"), _noshow("a1", "2026-02-11T10:00:00Z"),
                     _noshow("a2", "2026-03-11T10:00:00Z")):
        _apply(pipeline, engine, resource)
    again = Pipeline(engine, store, store.start_run("again"))
    _apply(again, engine, _noshow("a2", "2026-03-11T10:00:00Z"))
    assert len(_drafts(store, pipeline.run)) == 2
    assert _drafts(store, again.run) == []
