"""The transaction Bundle: conditional writes that make a replay a no-op (rules.md 5)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from fhir_engagement.config import default_codesystems_dir
from fhir_engagement.decisions.bundle import entry, transaction
from fhir_engagement.decisions.codesystems import load_codesystems
from fhir_engagement.decisions.flag import flag_resource, merge_flag
from fhir_engagement.decisions.ids import (
    FLAG_SYSTEM,
    TASK_SYSTEM,
    flag_id,
    full_url,
    provenance_id,
    task_id,
)
from fhir_engagement.decisions.provenance import provenance_resource
from fhir_engagement.decisions.task import task_resource
from fhir_engagement.guidance.decide import Situation, decide
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import ChildStatus, Event

TASK_ID = "fe-task-0123456789abcdef0123456789abcdef"
FLAG_ID = "fe-flag-0123456789abcdef0123456789abcdef"


def test_a_task_is_a_conditional_create_on_its_identifier() -> None:
    made = entry(TASK_ID, "Task", {"resourceType": "Task"})
    assert made["request"] == {"method": "POST", "url": "Task",
                               "ifNoneExist": f"identifier={TASK_SYSTEM}|{TASK_ID}"}
    assert made["fullUrl"] == full_url(TASK_ID)
    assert made["resource"] == {"resourceType": "Task"}


def test_a_flag_is_a_conditional_update_on_its_identifier() -> None:
    made = entry(FLAG_ID, "Flag", {"resourceType": "Flag"})
    assert made["request"] == {"method": "PUT", "url": f"Flag?identifier={FLAG_SYSTEM}|{FLAG_ID}"}
    assert made["fullUrl"] == full_url(FLAG_ID)


def test_provenance_is_a_put_to_its_deterministic_id() -> None:
    made = entry("fe-prov-1", "Provenance", {"resourceType": "Provenance", "id": "fe-prov-1"})
    assert made["request"] == {"method": "PUT", "url": "Provenance/fe-prov-1"}


def test_flags_come_first_then_tasks_then_provenance() -> None:
    """A Task's reasonReference and a Provenance's target resolve to entries written earlier."""
    rows = [("p", "Provenance", b'{"resourceType": "Provenance"}'),
            ("t1", "Task", b'{"resourceType": "Task"}'),
            ("f", "Flag", b'{"resourceType": "Flag"}'),
            ("t2", "Task", b'{"resourceType": "Task"}')]
    bundle = transaction(rows)
    assert bundle["type"] == "transaction"
    assert [e["fullUrl"] for e in bundle["entry"]] == [full_url(i) for i in ("f", "t1", "t2", "p")]


@pytest.fixture
def outputs(rules: Rules) -> list[tuple[str, str, bytes]]:
    """The outputs of a real decision: single WNB for a child protection plan (rules.md 5)."""
    systems = load_codesystems(default_codesystems_dir())
    at = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    event = Event(key="Appointment/a1", resource_type="Appointment", occurred=at,
                  patient="Patient/p1", subject={"reference": "Patient/p1"}, slots={},
                  origin="test")
    decision = decide(Situation(event, "not-brought", (), ChildStatus(frozenset({"cpp"})),
                                "child"), rules)
    assert decision is not None
    assert decision.flag is not None
    child, subject = "Patient/p1", {"reference": "Patient/p1"}
    fid = flag_id(child, "engagement")
    flag = flag_resource(fid, merge_flag(None, decision.flag, at, decision.evidence), subject,
                         systems)
    rows = [(fid, "Flag", orjson.dumps(flag))]
    for action in decision.actions:
        tid = task_id(child, event.key, action.code)
        task = task_resource(tid, action, decision, event, subject, full_url(fid),
                             (None, "Service"), systems, at)
        rows.append((tid, "Task", orjson.dumps(task)))
    pid = provenance_id(child, event.key, "not-brought", decision.rule_id)
    prov = provenance_resource(pid, [full_url(r[0]) for r in rows], decision, event, "abc", at)
    return [*rows, (pid, "Provenance", orjson.dumps(prov))]


def test_the_transaction_is_a_valid_r4_bundle(outputs: list[tuple[str, str, bytes]]) -> None:
    bundle = transaction(reversed(outputs))
    Bundle.model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Flag", "Task", "Task", "Task", "Provenance"]
    urls = {e["fullUrl"] for e in bundle["entry"]}
    for task in bundle["entry"][1:4]:
        assert task["resource"]["reasonReference"]["reference"] in urls
    assert {t["reference"] for t in bundle["entry"][-1]["resource"]["target"]} <= urls


def test_building_the_same_transaction_twice_gives_the_same_bytes(
    outputs: list[tuple[str, str, bytes]],
) -> None:
    assert orjson.dumps(transaction(outputs)) == orjson.dumps(transaction(list(outputs)))
