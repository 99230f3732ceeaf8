"""One Task per action, with the fields rules.md section 4 promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.task import Task

from fhir_engagement.config import default_codesystems_dir
from fhir_engagement.decisions.codesystems import ACTION, CodeSystems, load_codesystems
from fhir_engagement.decisions.ids import TASK_SYSTEM
from fhir_engagement.decisions.task import task_resource
from fhir_engagement.guidance.decide import Situation, decide
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import Action, ChildStatus, Decision, Event, HistoryItem

AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
SUBJECT = {"reference": "Patient/p1"}
DECIDED = AT + timedelta(days=2, hours=3)  # a late feed: decided long after the event
EVENT = Event(key="Appointment/a1", resource_type="Appointment", occurred=AT,
              patient="Patient/p1", subject=SUBJECT, slots={}, origin="test")


@pytest.fixture(scope="module")
def systems() -> CodeSystems:
    return load_codesystems(default_codesystems_dir())


@pytest.fixture
def repeat(rules: Rules) -> Decision:
    """Repeat WNB, no known status: the letter, review, GP and health visitor (rules.md 5)."""
    history = [HistoryItem("Appointment/a0", "not-brought", AT - timedelta(days=30))]
    decision = decide(Situation(EVENT, "not-brought", history, ChildStatus(), "child"), rules)
    assert decision is not None
    return decision


def _task(decision: Decision, code: str, systems: CodeSystems, **kw: Any) -> dict[str, Any]:
    action = next(a for a in decision.actions if a.code == code)
    args: dict[str, Any] = {"flag_url": "urn:uuid:flag", "owner": (None, "Service admin"),
                            "barriers": ()}
    args.update(kw)
    return task_resource("fe-task-1", action, decision, EVENT, SUBJECT, args["flag_url"],
                         args["owner"], systems, DECIDED, args["barriers"])


def test_the_task_carries_the_contract_fields(repeat: Decision, systems: CodeSystems) -> None:
    task = _task(repeat, "review-impact", systems)
    Task.model_validate(task)
    action = next(a for a in repeat.actions if a.code == "review-impact")
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "urgent")
    assert task["identifier"] == [{"system": TASK_SYSTEM, "value": "fe-task-1"}]
    assert task["code"]["coding"][0]["system"] == ACTION
    assert task["code"]["coding"][0]["code"] == "review-impact"
    assert task["for"] == SUBJECT
    assert task["focus"] == {"reference": "Appointment/a1"}
    assert task["reasonReference"] == {"reference": "urn:uuid:flag"}
    assert task["authoredOn"] == DECIDED.isoformat()  # the decision time, not the event's
    assert task["restriction"]["period"]["end"] == action.due.isoformat()
    notes = [n["text"] for n in task["note"]]
    assert notes[0] == "What impact will the missed appointment have on the child?"
    assert any(repeat.rule_id in n for n in notes)


def test_an_owner_reference_sets_owner_otherwise_performer_type(
    repeat: Decision, systems: CodeSystems
) -> None:
    owned = _task(repeat, "review-impact", systems,
                  owner=({"reference": "Practitioner/dr-1"}, "Practitioner"))
    assert owned["owner"] == {"reference": "Practitioner/dr-1"}
    assert "performerType" not in owned
    routed = _task(repeat, "inform-gp", systems, owner=(None, "The service"))
    assert "owner" not in routed
    assert routed["performerType"] == [{"text": "The service"}]


def test_no_flag_means_no_reason_reference(repeat: Decision, systems: CodeSystems) -> None:
    assert "reasonReference" not in _task(repeat, "inform-gp", systems, flag_url=None)


def test_the_letter_task_encloses_the_leaflet_and_quotes_a_barrier(
    repeat: Decision, systems: CodeSystems
) -> None:
    """README 9: the letter links the parent leaflet; codes.md: quote pat-lt / oth-int."""
    letter = _task(repeat, "send-wnb-letter", systems, barriers=("no transport",))
    notes = " ".join(n["text"] for n in letter["note"])
    assert "parent leaflet" in notes
    assert "no transport" in notes
    gp = _task(repeat, "inform-gp", systems, barriers=("no transport",))
    assert "no transport" not in " ".join(n["text"] for n in gp["note"])


def test_every_action_code_has_a_display(systems: CodeSystems) -> None:
    action = Action("classify-attendance", "routine", AT, "clinician")
    decision = Decision("r", "v", "single-wnb", "none", (action,), None, "why")
    task = task_resource("fe-task-2", action, decision, EVENT, SUBJECT, None, (None, "x"),
                         systems, DECIDED)
    Task.model_validate(task)
    assert task["code"]["text"] == systems.display(ACTION, "classify-attendance")
