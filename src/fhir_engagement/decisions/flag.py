"""The engagement and over-engagement Flags: one of each per child, escalated, never lowered.

The adapter only ever raises a Flag's stage or priority; ending or deleting it is a clinician's act.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir_engagement.decisions.codesystems import CONCERN, CodeSystems
from fhir_engagement.decisions.ids import DEVICE_SYSTEM, FLAG_SYSTEM
from fhir_engagement.model import FlagChange

__all__ = ["FlagState", "flag_resource", "merge_flag"]

# Higher later in the tuple. A later, higher stage updates the Flag; a lower one leaves it.
_STAGES = ("disengagement-single", "disengagement-intermittent", "left-against-advice",
           "disengagement-repeat", "disengagement-persistent", "over-engagement")
_PRIORITIES = ("PL", "PM", "PH")
_PRIORITY_DISPLAY = {"PL": "Low priority", "PM": "Medium priority", "PH": "High priority"}
_MAX_EVIDENCE = 50


@dataclass(frozen=True, slots=True)
class FlagState:
    """What a Flag says now: stage, priority, first triggering event and its evidence."""

    kind: str
    code: str
    priority: str
    category: str
    start: datetime
    evidence: tuple[str, ...]


def merge_flag(
    current: FlagState | None, change: FlagChange, at: datetime, evidence: tuple[str, ...]
) -> FlagState:
    """Escalate stage and priority independently; each only ever goes up."""
    if current is None:
        return FlagState(change.kind, change.code, change.priority, change.category, at,
                         evidence[-_MAX_EVIDENCE:])
    code = max(current.code, change.code, key=_STAGES.index)
    priority = max(current.priority, change.priority, key=_PRIORITIES.index)
    merged = tuple(dict.fromkeys((*current.evidence, *evidence)))[-_MAX_EVIDENCE:]
    return FlagState(current.kind, code, priority, current.category, min(current.start, at), merged)


def flag_resource(
    identifier: str, state: FlagState, subject: dict[str, object], systems: CodeSystems
) -> dict[str, object]:
    """The FHIR R4 Flag for a state (identifier-keyed, so a conditional update re-finds it)."""
    display = systems.display(CONCERN, state.code)
    details = [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                "valueReference": {"reference": key}} for key in state.evidence]
    return {
        "resourceType": "Flag",
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/flag-priority",
             "valueCodeableConcept": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/flag-priority-code",
                 "code": state.priority, "display": _PRIORITY_DISPLAY[state.priority]}]}},
            *details,
        ],
        "identifier": [{"system": FLAG_SYSTEM, "value": identifier}],
        "status": "active",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": state.category, "display": state.category.capitalize()}]}],
        "code": {"coding": [{"system": CONCERN, "code": state.code, "display": display}],
                 "text": display},
        "subject": subject,
        "period": {"start": state.start.isoformat()},
        "author": {"identifier": {"system": DEVICE_SYSTEM, "value": "fhir-engagement"},
                   "display": "fhir-engagement adapter"},
    }
