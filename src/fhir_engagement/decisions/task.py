"""One Task per action: who must do what, by when, and why (rules.md section 4)."""

from __future__ import annotations

from datetime import datetime

from fhir_engagement.decisions.codesystems import ACTION, SIGNAL, CodeSystems
from fhir_engagement.decisions.ids import TASK_SYSTEM, describe, event_reference
from fhir_engagement.decisions.wording import TaskWording
from fhir_engagement.model import Action, Decision, Event

__all__ = ["OwnerRef", "task_resource"]

# The guidance's one question, asked in the words that fit what happened.
_QUESTIONS = {
    "left-against-advice": "What impact will being taken away against medical advice have on "
                           "the child?",
    "left-before-seen": "What impact will leaving before care was given have on the child?",
    "refused-assessment": "What impact will the refused assessment or treatment have on the child?",
    "over-engagement": "Does this pattern of attendance suggest the child's needs are being "
                       "fabricated or induced? Do not write to the parents.",
    "intermittent": "What impact will these cancellations have on the child?",
    "discharged-after-wnb": "What impact will this discharge have on the child? Confirm the "
                            "impact review of the missed appointment was done and the discharge "
                            "is safe; tell the GP and the referrer.",
    "household": "Is the same pattern affecting this child? A brother or sister who shares a "
                 "parent or carer with them is not being brought to appointments.",
}
_DEFAULT_QUESTION = "What impact will the missed appointment have on the child?"

OwnerRef = tuple[dict[str, object] | None, str]
_GENERIC = TaskWording()


def task_resource(
    identifier: str,
    action: Action,
    decision: Decision,
    event: Event,
    subject: dict[str, object],
    flag_url: str | None,
    owner: OwnerRef,
    systems: CodeSystems,
    decided: datetime,
    barriers: tuple[str, ...] = (),
    index_child: dict[str, object] | None = None,
    care: str = "",
    wording: TaskWording = _GENERIC,
) -> dict[str, object]:
    """The FHIR R4 Task for one action of a decision.

    ``authoredOn`` is ``decided``, the decision time the caller took from its clock (this module
    never reads one): when the Task was asked for, not when the event happened. ``care`` is the
    event's source's setting (primary, secondary, or '' when no source is configured), whose
    ``wording`` opens the description and asks the question (rules.md s.8).
    """
    display = systems.display(ACTION, action.code)
    reference, role_text = owner
    task: dict[str, object] = {
        "resourceType": "Task",
        "identifier": [{"system": TASK_SYSTEM, "value": identifier}],
        "status": "requested",
        "intent": "order",
        "priority": action.priority,
        "code": {"coding": [{"system": ACTION, "code": action.code, "display": display}],
                 "text": display},
        "description": _description(action, decision, event, systems, care, wording),
        "focus": dict(event.focus) if event.focus else event_reference(event.key),
        "for": subject,
        "authoredOn": decided.isoformat(),
        "restriction": {"period": {"end": action.due.isoformat()}},
        "note": [{"text": text} for text in _notes(action, decision, barriers, care, wording)],
    }
    if index_child:  # a brother's or sister's review: the index child by reference, never text
        task["input"] = [{"type": {"text": "Index child"}, "valueReference": index_child}]
    if flag_url:
        task["reasonReference"] = {"reference": flag_url}
    if reference:
        task["owner"] = reference
    else:
        task["performerType"] = [{"text": role_text}]
    return task


def _description(
    action: Action, decision: Decision, event: Event, systems: CodeSystems, care: str,
    wording: TaskWording,
) -> str:
    what = wording.description(care, action.code, systems.definition(ACTION, action.code))
    if decision.situation == "retracted":
        return f"{what} The event that raised earlier actions ({describe(event.key)}) was retracted."
    day = decision.event_date.isoformat() if decision.event_date else "unknown date"
    if decision.situation == "household":
        return f"{what} Raised by a brother's or sister's missed contact on {day}."
    signals = ", ".join(sorted(set(_signal_names(decision, systems))))
    return f"{what} Raised by: {signals} on {day} ({describe(event.key)})."


def _signal_names(decision: Decision, systems: CodeSystems) -> list[str]:
    situation = decision.situation
    if situation.endswith("-wnb"):
        return [systems.display(SIGNAL, "not-brought").lower()]
    if situation == "intermittent":
        return [systems.display(SIGNAL, "family-cancelled").lower()]
    if situation == "over-engagement":
        return [systems.display(SIGNAL, "unscheduled-attendance").lower()]
    if situation == "discharged-after-wnb":
        return [systems.display(SIGNAL, "discharged").lower()]
    return [systems.display(SIGNAL, situation).lower()]


def _notes(
    action: Action, decision: Decision, barriers: tuple[str, ...], care: str, wording: TaskWording,
) -> list[str]:
    situation = decision.situation
    generic = _QUESTIONS.get(situation, _DEFAULT_QUESTION)
    question = wording.question(care, situation if situation in _QUESTIONS else "missed", generic)
    notes = [question, f"Why: {decision.why}"]
    notes.extend(n for n in (decision.age_note, *decision.notes) if n)
    if barriers and action.code in ("send-wnb-letter", "review-impact", "curiosity-review"):
        notes.append(f"The family named a barrier: {', '.join(barriers)}. Say in the letter how "
                     "to get help (transport, interpreter, their own health).")
    if action.code == "send-wnb-letter":
        notes.append("Enclose the parent leaflet 'What happens when a child is not brought to "
                     "their appointment?'.")
    return notes
