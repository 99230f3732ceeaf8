"""The engagement and over-engagement Flags: one of each per child, escalated, never lowered.

The adapter only ever raises a Flag's stage or priority; ending or deleting it is a clinician's act.
This module is the one owner of that rule (``_higher``) and of reading a Flag resource back
(``flag_state``): the pipeline escalates its own stored Flag with ``merge_flag``, the outbox
writes over the server's Flag with ``never_lower``, and both rank stages and priorities here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_engagement.decisions.codesystems import CONCERN, CodeSystems
from fhir_engagement.decisions.ids import DEVICE_SYSTEM, FLAG_SYSTEM
from fhir_engagement.model import FlagChange

__all__ = ["PRIORITY_EXTENSION", "PRIORITY_SYSTEM", "FlagState", "flag_resource", "flag_state",
           "merge_flag", "never_lower"]

# Higher later in the tuple. A later, higher stage updates the Flag; a lower one leaves it.
_STAGES = ("disengagement-single", "disengagement-intermittent", "left-against-advice",
           "disengagement-repeat", "disengagement-persistent", "over-engagement")
_PRIORITIES = ("PL", "PM", "PH")
_PRIORITY_DISPLAY = {"PL": "Low priority", "PM": "Medium priority", "PH": "High priority"}
_MAX_EVIDENCE = 50
PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
# The extension's bound code system (codes.md). Versions before issue 12 wrote the terminology.hl7.org
# form; a Flag they stored is still read, and a coding with no system is read as the bound one.
PRIORITY_SYSTEM = "http://hl7.org/fhir/flag-priority-code"
_PRIORITY_SYSTEMS_READ = (PRIORITY_SYSTEM, "http://terminology.hl7.org/CodeSystem/flag-priority-code",
                          None)


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
    code = _higher(_STAGES, current.code, change.code)
    priority = _higher(_PRIORITIES, current.priority, change.priority)
    merged = tuple(dict.fromkeys((*current.evidence, *evidence)))[-_MAX_EVIDENCE:]
    return FlagState(current.kind, code, priority, current.category, min(current.start, at), merged)


def flag_state(resource: Mapping[str, Any]) -> FlagState:
    """Read a Flag this module built (``flag_resource``) back into the state escalation works on.

    Only for the adapter's own Flags, which have every field; a Flag from the server may not
    (a person edited it), which is why ``never_lower`` reads only the fields it compares.
    """
    code = _code(resource)
    evidence = tuple(e["valueReference"]["reference"] for e in resource["extension"]
                     if e["url"].endswith("/flag-detail"))
    return FlagState("over-engagement" if code == "over-engagement" else "engagement", code,
                     _priority(resource), resource["category"][0]["coding"][0]["code"],
                     datetime.fromisoformat(resource["period"]["start"]), evidence)


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
            {"url": PRIORITY_EXTENSION,
             "valueCodeableConcept": {"coding": [{
                 "system": PRIORITY_SYSTEM,
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

    It ranks with the same ``_higher`` as ``merge_flag`` but works on the resources, not through
    ``flag_state``: the server's Flag may lack fields a FlagState needs, and what the adapter does
    not raise (the server's code text, its start as written) is kept as the server holds it.
    """
    merged = dict(ours)
    merged["id"] = theirs["id"]
    code = _higher(_STAGES, _code(ours), _code(theirs))
    merged["code"] = theirs["code"] if code == _code(theirs) and code != _code(ours) else ours["code"]
    priority = _higher(_PRIORITIES, _priority(ours), _priority(theirs))
    merged["extension"] = [_with_priority(e, priority) for e in ours.get("extension", [])]
    starts = [f.get("period", {}).get("start") for f in (ours, theirs)]
    merged["period"] = {"start": min(s for s in starts if s)} if any(starts) else ours.get("period")
    return merged


def _higher(ladder: tuple[str, ...], first: str, second: str) -> str:
    """Never lower: the higher of two rungs, ``first`` on a tie; a code off the ladder is lowest."""
    def rank(code: str) -> int:
        return ladder.index(code) if code in ladder else -1

    return second if rank(second) > rank(first) else first


def _code(flag: Mapping[str, Any]) -> str:
    for coding in flag.get("code", {}).get("coding", []):
        if coding.get("system") == CONCERN:
            return str(coding.get("code"))
    return ""


def _priority(flag: Mapping[str, Any]) -> str:
    """The Flag's priority code, read under the current or the pre-issue-12 system (PL if none)."""
    for ext in flag.get("extension", []):
        if ext.get("url") != PRIORITY_EXTENSION:
            continue
        for coding in ext.get("valueCodeableConcept", {}).get("coding", []):
            if coding.get("system") in _PRIORITY_SYSTEMS_READ and coding.get("code"):
                return str(coding["code"])
    return "PL"


def _with_priority(ext: dict[str, Any], priority: str) -> dict[str, Any]:
    """Our priority extension carrying ``priority``, always written in the current system."""
    if ext.get("url") != PRIORITY_EXTENSION:
        return ext
    coding = {"system": PRIORITY_SYSTEM, "code": priority,
              "display": _PRIORITY_DISPLAY.get(priority, priority)}
    return {**ext, "valueCodeableConcept": {"coding": [coding]}}
