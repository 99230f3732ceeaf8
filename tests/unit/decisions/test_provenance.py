"""Provenance says when the event happened and, separately, when the adapter decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir.resources.R4B.provenance import Provenance

from fhir_engagement.decisions.provenance import provenance_resource
from fhir_engagement.guidance.decide import Situation, decide
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import ChildStatus, Event

AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
DECIDED = AT + timedelta(days=3, minutes=7)
EVENT = Event(key="Appointment/a1", resource_type="Appointment", occurred=AT,
              patient="Patient/p1", subject={"reference": "Patient/p1"}, slots={}, origin="test")


def test_recorded_is_the_decision_time_and_occurred_the_event_time(rules: Rules) -> None:
    decision = decide(Situation(EVENT, "not-brought", (), ChildStatus(), "child"), rules)
    assert decision is not None
    prov = provenance_resource("p1", ["urn:uuid:t1"], decision, EVENT, "abc", DECIDED)
    Provenance.model_validate(prov)
    assert prov["recorded"] == DECIDED.isoformat()
    assert prov["occurredDateTime"] == AT.isoformat()
    assert prov["entity"] == [{"role": "source", "what": {"reference": "Appointment/a1"}}]
