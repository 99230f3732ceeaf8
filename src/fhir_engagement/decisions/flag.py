"""The engagement and over-engagement Flags: one of each per child, escalated, never lowered.

The adapter only ever raises a Flag's stage or priority; ending or deleting it is a clinician's act.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_engagement.decisions.codesystems import CONCERN, CodeSystems
from fhir_engagement.decisions.ids import DEVICE_SYSTEM, FLAG_SYSTEM
from fhir_engagement.model import FlagChange

__all__ = ["FlagState", "flag_resource", "merge_flag", "never_lower"]

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


def never_lower(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The Flag to write over the one on the server: nothing the server holds is lowered.

    A person may have raised the priority or the stage by hand; the adapter only adds to it. The
    result keeps the server's id (the write is ``PUT Flag/{id}`` with If-Match on its version).
    """
    merged = dict(ours)
    merged["id"] = theirs["id"]
    code = max(_code(ours), _code(theirs), key=_stage_rank)
    merged["code"] = theirs["code"] if code == _code(theirs) and code != _code(ours) else ours["code"]
    priority = max(_priority(ours), _priority(theirs), key=_priority_rank)
    merged["extension"] = [_with_priority(e, priority) for e in ours.get("extension", [])]
    starts = [f.get("period", {}).get("start") for f in (ours, theirs)]
    merged["period"] = {"start": min(s for s in starts if s)} if any(starts) else ours.get("period")
    return merged


def _code(flag: dict[str, Any]) -> str:
    for coding in flag.get("code", {}).get("coding", []):
        if coding.get("system") == CONCERN:
            return str(coding.get("code"))
    return ""


def _priority(flag: dict[str, Any]) -> str:
    for ext in flag.get("extension", []):
        if ext.get("url", "").endswith("/flag-priority"):
            return str(ext["valueCodeableConcept"]["coding"][0]["code"])
    return "PL"


def _stage_rank(code: str) -> int:
    return _STAGES.index(code) if code in _STAGES else -1


def _priority_rank(code: str) -> int:
    return _PRIORITIES.index(code) if code in _PRIORITIES else -1


def _with_priority(ext: dict[str, Any], priority: str) -> dict[str, Any]:
    if not ext.get("url", "").endswith("/flag-priority"):
        return ext
    coding = {**ext["valueCodeableConcept"]["coding"][0], "code": priority,
              "display": _PRIORITY_DISPLAY.get(priority, priority)}
    return {**ext, "valueCodeableConcept": {"coding": [coding]}}
