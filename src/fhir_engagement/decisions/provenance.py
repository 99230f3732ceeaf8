"""Provenance for every decision: what triggered it, which rule, which rules version, and when.

``recorded`` is when the adapter made the decision (its clock, passed in: this module never reads
one); ``occurredDateTime`` is when the triggering event happened.
"""

from __future__ import annotations

from datetime import datetime

from fhir_engagement.decisions.ids import DEVICE_SYSTEM, event_reference
from fhir_engagement.model import Decision, Event

__all__ = ["POLICY_BASE", "provenance_resource"]

POLICY_BASE = "https://fhir-engagement.org/fhir/rules"


def provenance_resource(
    identifier: str,
    targets: list[str],
    decision: Decision,
    event: Event,
    mappings_digest: str,
    decided: datetime,
) -> dict[str, object]:
    """Provenance targeting the decision's Flag and Tasks (by their fullUrls in the Bundle).

    ``decided`` is the decision time the caller took from its clock; the event's own time goes
    in ``occurredDateTime``, so a replay of old events still says when they happened.
    """
    sources = dict.fromkeys((event.key, *decision.evidence))
    occurred = {"occurredDateTime": event.occurred.isoformat()} if event.occurred else {}
    return {
        "resourceType": "Provenance",
        "id": identifier,
        "target": [{"reference": url} for url in targets],
        **occurred,
        "recorded": decided.isoformat(),
        "policy": [
            f"{POLICY_BASE}/{decision.rules_version}#{decision.rule_id}",
            f"{POLICY_BASE}/mappings/{mappings_digest}",
        ],
        "reason": [{"text": decision.why}],
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE", "display": "create"}]},
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "assembler", "display": "Assembler"}]},
            "who": {"identifier": {"system": DEVICE_SYSTEM, "value": "fhir-engagement"},
                    "display": "fhir-engagement adapter"},
        }],
        "entity": [{"role": "source", "what": _what(key, event)} for key in sources],
    }


def _what(key: str, event: Event) -> dict[str, object]:
    """The trigger as the server knows it: an HL7 v2 event is named by its business identifier."""
    return dict(event.focus) if key == event.key and event.focus else event_reference(key)
