"""The pipeline (pipeline.py) on a real SQLite store with the shipped mappings and rules.

Expected outputs checked by hand against shared/guidance/rules.md: a child's first not-brought
with no known status is the "single" pattern (section 3), whose action is review-impact, routine,
due in 2 working days, owned by the practitioner the appointment names, and no Flag (section 5).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from fhir_engagement import pipeline as pipeline_module
from fhir_engagement.errors import StoreError
from fhir_engagement.model import Event
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import SqliteStore

CHILD = {"resourceType": "Patient", "id": "p-child", "birthDate": "2019-05-01"}


def _noshow(appointment: str = "a1") -> dict[str, Any]:
    # Wednesday 11 February 2026, 10:00 London: 2 working days on is Friday 13 February.
    return {"resourceType": "Appointment", "id": appointment, "status": "noshow",
            "start": "2026-02-11T10:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p-child"}, "status": "declined"},
                            {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"}]}


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in resources]}


def _apply(pipeline: Pipeline, engine: Engine, document: dict[str, Any]) -> None:
    raw = orjson.dumps(document)
    read = engine.records.read_document(document, "test", raw)
    assert read.rejected == []
    pipeline.apply(read.records, raw)
    pipeline.store.commit()


def _events(engine: Engine, document: dict[str, Any]) -> list[Event]:
    read = engine.records.read_document(document, "test", orjson.dumps(document))
    return [r for r in read.records if isinstance(r, Event)]


def _kinds(store: SqliteStore, run: int) -> list[str]:
    return sorted(r.kind for r in store.run_outputs(run))


def test_one_no_show_for_a_child_asks_for_a_routine_impact_review_and_raises_no_flag(
    engine: Engine, store: SqliteStore
) -> None:
    run = store.start_run("test")
    _apply(Pipeline(engine, store, run), engine, _bundle(CHILD, _noshow()))
    outputs = store.run_outputs(run)
    assert "Flag" not in [r.kind for r in outputs]
    tasks = [orjson.loads(r.resource) for r in outputs if r.kind == "Task"]
    assert len(tasks) == 1
    (task,) = tasks
    assert task["code"]["coding"][0]["code"] == "review-impact"
    assert task["priority"] == "routine"
    assert task["restriction"]["period"]["end"] == "2026-02-13T23:59:59+00:00"  # end of that day
    assert task["owner"] == {"reference": "Practitioner/dr-1"}
    assert task["focus"] == {"reference": "Appointment/a1"}
    assert task["for"] == {"reference": "Patient/p-child"}
    assert store.delivery_counts() == {"pending": 1}


def test_the_same_event_twice_adds_nothing(engine: Engine, store: SqliteStore) -> None:
    first = store.start_run("first")
    _apply(Pipeline(engine, store, first), engine, _bundle(CHILD, _noshow()))
    again = store.start_run("again")
    pipeline = Pipeline(engine, store, again)
    _apply(pipeline, engine, _bundle(CHILD, _noshow()))
    assert store.run_outputs(again) == []
    assert pipeline.stats["duplicates"] == 1
    assert store.delivery_counts() == {"pending": 1}
    assert _kinds(store, first) != []


def _versioned(status: str, version: str, **fields: Any) -> dict[str, Any]:
    return {**_noshow(), "status": status, "meta": {"versionId": version}, **fields}


def test_a_retracted_signal_is_raised_again_only_by_a_later_version(
    engine: Engine, store: SqliteStore
) -> None:
    """A no-show corrected by a version that raises nothing (entered in error) stays retracted
    when the original is re-sent; a later no-show version raises it again."""
    run = store.start_run("test")
    pipeline = Pipeline(engine, store, run)
    _apply(pipeline, engine, _bundle(CHILD, _versioned("noshow", "1")))
    _apply(pipeline, engine, _bundle(_versioned("entered-in-error", "2")))
    assert pipeline.stats["retracted not-brought"] == 1
    _apply(pipeline, engine, _bundle(_versioned("noshow", "1")))
    assert pipeline.stats["signal not-brought"] == 1
    _apply(pipeline, engine, _bundle(_versioned("noshow", "3")))
    assert pipeline.stats["signal not-brought"] == 2


def test_an_unforeseen_failure_on_one_event_is_a_dead_letter_and_the_next_goes_on(
    engine: Engine, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(engine, store, store.start_run("test"))
    for record in engine.records.read_document(CHILD, "test").records:
        pipeline.accept_context(record)
    (broken,) = _events(engine, _bundle(_noshow("a-broken")))
    (fine,) = _events(engine, _bundle(_noshow("a-fine")))

    def task_resource_that_fails(*_args: object, **_kwargs: object) -> dict[str, object]:
        raise ZeroDivisionError  # a defect nobody foresaw, deep in building an output

    with monkeypatch.context() as patched:
        patched.setattr(pipeline_module, "task_resource", task_resource_that_fails)
        rejection = pipeline.process_guarded(broken, b"the raw input")
    assert rejection is not None
    assert "ZeroDivisionError" in rejection.reason
    (origin, reason, raw) = store.dead_letters()[0]
    assert (origin, raw) == ("test entry[0].resource", b"the raw input")
    assert "kept for a person to look at" in reason
    assert pipeline.process_guarded(fine, b"{}") is None
    assert pipeline.stats["signal not-brought"] >= 1
    store.commit()
    assert "Task" in _kinds(store, pipeline.run)


def test_a_store_error_goes_up_so_the_input_is_not_marked_done(
    engine: Engine, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(engine, store, store.start_run("test"))
    (event,) = _events(engine, _bundle(_noshow()))

    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(store, "add_signal", full_disk)
    with pytest.raises(StoreError, match="disk is full"):
        pipeline.process_guarded(event, b"{}")
    assert store.dead_letters() == []


def test_the_decision_time_comes_from_the_pipeline_clock(engine: Engine, store: SqliteStore) -> None:
    """Task.authoredOn and Provenance.recorded are when it decided; the event keeps its own time."""
    decided = datetime(2026, 2, 20, 8, 30, tzinfo=UTC)  # nine days after the no-show
    run = store.start_run("test")
    _apply(Pipeline(engine, store, run, clock=lambda: decided), engine, _bundle(CHILD, _noshow()))
    outputs = {r.kind: orjson.loads(r.resource) for r in store.run_outputs(run)}
    assert outputs["Task"]["authoredOn"] == decided.isoformat()
    assert outputs["Provenance"]["recorded"] == decided.isoformat()
    assert outputs["Provenance"]["occurredDateTime"] == "2026-02-11T10:00:00+00:00"
    # the due date still runs from the event, not from the decision
    assert outputs["Task"]["restriction"]["period"]["end"] == "2026-02-13T23:59:59+00:00"


_PAT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                    "code": "pat"}]}


def _outcome(n: int, kind: str) -> dict[str, Any]:
    """Appointment n (a week apart from 2026-01-07) attended (A), not brought (N) or cancelled
    by the family (C)."""
    status = {"A": "fulfilled", "N": "noshow", "C": "cancelled"}[kind]
    start = datetime(2026, 1, 7, 10, tzinfo=UTC) + timedelta(days=7 * n)
    res = {**_noshow(f"alt-{n}"), "status": status, "start": start.isoformat()}
    return {**res, "cancelationReason": _PAT} if kind == "C" else res


@pytest.mark.parametrize("run", ["ACAN", "ANAC", "NACA"])
def test_alternation_is_raised_once_whichever_outcome_completes_it(
    engine: Engine, store: SqliteStore, run: str
) -> None:
    """rules.md 3: attended / not-brought / cancelled alternating is intermittent, found on the
    4th outcome whatever it is; a 5th alternating outcome in the window raises nothing more."""
    pipeline = Pipeline(engine, store, store.start_run("test"))
    _apply(pipeline, engine, _bundle(CHILD, *(_outcome(i, k) for i, k in enumerate(run))))
    assert pipeline.stats["task curiosity-review"] == 1
    tasks = [orjson.loads(r.resource) for r in store.run_outputs(pipeline.run) if r.kind == "Task"]
    (review,) = [t for t in tasks if t["code"]["coding"][0]["code"] == "curiosity-review"]
    assert review["focus"] == {"reference": "Appointment/alt-3"}
    misses = run.count("N")
    assert pipeline.stats["task review-impact"] == misses  # the WNB ladder still runs at each miss
    fifth = "N" if run[-1] == "A" else "A"
    _apply(pipeline, engine, _bundle(_outcome(4, fifth)))
    assert pipeline.stats["task curiosity-review"] == 1
