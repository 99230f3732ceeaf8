"""The CP-IS CareTeam reader: a plan, its dates and the local authority, or nothing (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_engagement.ingest.careteam import read_careteam

SNOMED = "http://snomed.info/sct"


def _team(**changes: Any) -> dict[str, Any]:
    team: dict[str, Any] = {
        "resourceType": "CareTeam", "id": "p1", "status": "active",
        "category": [{"coding": [{"system": SNOMED, "code": "764841000000100"}]}],
        "period": {"start": "2025-01-02", "end": "2026-01-02"},
        "managingOrganization": [{"display": "A Council"}],
        "telecom": [{"system": "phone", "value": "01234 567890"},
                    {"system": "email", "value": "cp@a.example"}]}
    team.update(changes)
    return team


def test_a_plan_is_a_status_fact_for_the_child_with_its_period_and_contact() -> None:
    fact, contact = read_careteam(_team(), "Patient/7@trust-a", "cp-is")
    assert fact is not None
    assert fact.key == "CareTeam/p1@cp-is"
    assert fact.patient == "Patient/7@trust-a"
    assert fact.codes == frozenset({f"{SNOMED}|764841000000100"})
    assert fact.start == datetime(2025, 1, 2, tzinfo=UTC)
    assert fact.end == datetime(2026, 1, 2, tzinfo=UTC)
    assert fact.active
    assert contact == "A Council (01234 567890, cp@a.example)"


def test_an_inactive_plan_gives_no_status_and_no_contact() -> None:
    fact, contact = read_careteam(_team(status="inactive"), "Patient/7", "cp-is")
    assert fact is not None
    assert not fact.active
    assert contact == ""


def test_what_is_not_a_plan_gives_nothing() -> None:
    assert read_careteam(_team(category=[]), "Patient/7", "cp-is") == (None, "")
    assert read_careteam({"resourceType": "Patient"}, "Patient/7", "cp-is") == (None, "")
    assert read_careteam(["not", "a", "resource"], "Patient/7", "cp-is") == (None, "")
    assert read_careteam(_team(category="x", period=3), "Patient/7", "cp-is") == (None, "")


def test_a_hostile_contact_is_one_short_printable_line() -> None:
    team = _team(managingOrganization=[{"display": "Evil\r\nInjected: header" + "x" * 500}])
    _, contact = read_careteam(team, "Patient/7", "cp-is")
    assert "\n" not in contact
    assert "\r" not in contact
    assert len(contact) <= 120
