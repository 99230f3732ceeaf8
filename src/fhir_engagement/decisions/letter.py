"""The "was not brought" letter drafts that go with each send-wnb-letter Task (rules.md s.8).

Two CommunicationRequests, status ``draft``, ``basedOn`` the Task: the letter to the parent or
carer (else to the child's address holder, the child's own record) and a copy for the GP. The
payload is the plain-English letter from the trust's template (mappings/letters/): the missed
appointment, why it matters to the child, how to rebook, help with transport and an interpreter
in the family's language, and the parent leaflet. Pure: the caller passes the child's letter
facts (what ingest kept of Patient.name/contact/communication, RelatedPerson) and the templates.

A letter names one child only: it is built from this child's facts and nothing else. Never for
over-engagement (the guidance: no letter to the parents), never to the parents of a 16-17-year-old
who chose not to attend: ``LetterRefusedError`` says so if a caller ever asks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fhir_engagement.decisions.ids import LETTER_SYSTEM, event_reference, letter_id
from fhir_engagement.decisions.lettertemplates import LetterLanguage, LetterTemplates
from fhir_engagement.model import Contact, Decision, Event, LetterFacts

__all__ = ["COPIES", "LetterRefusedError", "letter_drafts", "merge_facts"]

COPIES = ("parent", "gp")
_CATEGORY = "https://fhir-engagement.org/fhir/CodeSystem/engagement-action"
# The rule's reason, as decide.py words it: "Rule X fired: <reason>. Known status: ...".
_REASON = re.compile(r"fired: (.+?)\. Known status")


class LetterRefusedError(ValueError):
    """A letter was asked for where the guidance forbids one: a defect in the caller."""


def letter_drafts(
    task_id: str,
    task_url: str,
    decision: Decision,
    event: Event,
    subject: dict[str, object],
    facts: LetterFacts,
    letters: LetterTemplates,
    tz: ZoneInfo,
    decided: datetime,
    band: str = "",
    reliant_on_adult: bool = False,
    signal: str = "not-brought",
    care: str = "",
) -> list[tuple[str, dict[str, Any]]]:
    """The parent's letter and the GP's copy, as (id, CommunicationRequest), for one Task.

    ``signal`` is what the event raised: a ``no-access-visit`` letter says no one was in when
    the visit came, rather than that the child was not brought. ``care`` is the sending source's
    setting (rules.md s.8): a GP practice's letter does not say it will tell the child's GP.

    Raises:
        LetterRefusedError: over-engagement, or a young person (16-17) not known to have been
            reliant on an adult (today such a child gets classify-attendance, never a letter).
    """
    if decision.situation == "over-engagement":
        raise LetterRefusedError("over-engagement never gives a letter to the parents")
    if band == "young-person" and not reliant_on_adult:
        raise LetterRefusedError("a 16-17-year-old who may have chosen not to attend: no letter "
                                 "to the parents")
    letter = letters.pick(tuple(code for code, _ in facts.languages))
    recipient = _recipient(facts, letter)
    values = _values(decision, event, facts, letter, recipient, tz)
    values["home_visit"] = signal == "no-access-visit"
    values["care"] = care
    parent_text = letter.render("parent.body", values)
    values["letter"] = parent_text
    gp_text = letter.render("gp.body", values)
    gp = _gp_reference(facts)
    return [
        _draft(task_id, "parent", task_url, event, subject, _recipient_reference(recipient, subject),
               letter.render("parent.subject", values), parent_text, letter.language, decided),
        _draft(task_id, "gp", task_url, event, subject, gp,
               letter.render("gp.subject", values), gp_text, letter.language, decided),
    ]


def merge_facts(parts: list[LetterFacts]) -> LetterFacts:
    """One child's facts from each of its records (in a stable order): the first given name and
    GP found, every contact and language once."""
    contacts = tuple(dict.fromkeys(c for p in parts for c in p.contacts))
    languages = tuple(dict.fromkeys(lang for p in parts for lang in p.languages))
    given = next((p.given_name for p in parts if p.given_name), "")
    gp = next((p.gp for p in parts if p.gp), None)
    return LetterFacts(given, contacts, languages, gp)


def _values(
    decision: Decision, event: Event, facts: LetterFacts, letter: LetterLanguage,
    recipient: Contact | None, tz: ZoneInfo,
) -> dict[str, Any]:
    child = facts.given_name or "your child"
    service = _service_name(event.resource())
    local = event.occurred.astimezone(tz) if event.occurred else None
    # The GP is told the rule's own reason (an infant's first no-access visit counts as repeat,
    # say), not a paraphrase that could be wrong for the row that fired.
    reason = _REASON.search(decision.why)
    situation = f"of this pattern of missed care: {reason.group(1) if reason else decision.why}"
    return {
        "child": child,
        "to": recipient.name if recipient else "",
        "service": service,
        "day": f"{local:%A} {local.day} {local:%B %Y}" if local else "the day it was booked",
        "time": f"{local:%H:%M}" if local else "the time it was booked",
        "why": _why(letter, service, event.service),
        "language": _interpreter_language(facts, letter),
        "gp": _gp_display(facts),
        "situation": situation,
    }


def _why(letter: LetterLanguage, service: str, service_key: str | None) -> str:
    """The service's own words if the trust gave some (by name, else by the code of its key)."""
    code = (service_key or "").rsplit("|", 1)[-1].lower()
    return letter.why.get(service.lower()) or letter.why.get(code) or letter.why["default"]


def _interpreter_language(facts: LetterFacts, letter: LetterLanguage) -> str:
    """The family's first language that is not the letter's own, in words ('' when none)."""
    for code, words in facts.languages:
        primary = code.split("-")[0]
        if primary == letter.language or (not code and words.lower() == "english"):
            continue
        return letter.language_names.get(primary) or words or code
    return ""


def _recipient(facts: LetterFacts, letter: LetterLanguage) -> Contact | None:
    """The first parent or carer: by relationship code, else by words in its text."""
    for contact in facts.contacts:
        words = contact.relationship.lower()
        if contact.codes & letter.recipient_codes or any(w in words for w in letter.recipient_words):
            return contact
    return None


def _recipient_reference(contact: Contact | None, subject: dict[str, object]) -> dict[str, Any]:
    """A RelatedPerson by reference; a Patient.contact by name; else the child's own record,
    whose address is the family's (the letter then says "Dear parent or carer")."""
    if contact is None:
        return dict(subject)
    display = f"{contact.name} ({contact.relationship})" if contact.relationship else contact.name
    if contact.reference:
        ref = event_reference(contact.reference)
        if "reference" in ref:
            return {**ref, "type": "RelatedPerson", "display": display}
    return {"type": "RelatedPerson", "display": display}


def _gp_reference(facts: LetterFacts) -> dict[str, Any]:
    parts = dict(facts.gp or ())
    ref: dict[str, Any] = {k: v for k, v in parts.items() if k in ("reference", "type", "display")}
    if parts.get("identifier.value"):
        ident = {"value": parts["identifier.value"]}
        if parts.get("identifier.system"):
            ident["system"] = parts["identifier.system"]
        ref["identifier"] = ident
    return ref or {"display": "The child's GP"}


def _gp_display(facts: LetterFacts) -> str:
    return dict(facts.gp or ()).get("display", "")


def _service_name(raw: Mapping[str, Any] | None) -> str:
    """The service in words, as the appointment gives it: serviceType, specialty, then the
    HealthcareService's display; '' when it gives none (an HL7 v2 event, say)."""
    if not isinstance(raw, Mapping):
        return ""
    for name in ("serviceType", "specialty", "appointmentType"):
        words = _concept_words(raw.get(name))
        if words:
            return words
    for part in raw.get("participant") or []:
        actor = part.get("actor") if isinstance(part, dict) else None
        if isinstance(actor, dict) and str(actor.get("reference", "")).startswith("HealthcareService"):
            display = actor.get("display")
            if isinstance(display, str) and display.strip():
                return display.strip()
    return ""


def _concept_words(value: Any) -> str:
    items = value if isinstance(value, list) else [value]
    for concept in items:
        if isinstance(concept, dict) and isinstance(concept.get("concept"), dict):
            concept = concept["concept"]  # R5 CodeableReference
        if not isinstance(concept, dict):
            continue
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            return " ".join(concept["text"].split())
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                return " ".join(coding["display"].split())
    return ""


def _draft(
    task_id: str, copy: str, task_url: str, event: Event, subject: dict[str, object],
    recipient: dict[str, Any], title: str, text: str, language: str, decided: datetime,
) -> tuple[str, dict[str, Any]]:
    rid = letter_id(task_id, copy)
    what = "Was not brought letter" if copy == "parent" else "Was not brought letter: GP copy"
    return rid, {
        "resourceType": "CommunicationRequest",
        "language": language,
        "identifier": [{"system": LETTER_SYSTEM, "value": rid}],
        "basedOn": [{"reference": task_url}],
        "status": "draft",
        "category": [{"coding": [{"system": _CATEGORY, "code": "send-wnb-letter"}], "text": what}],
        "priority": "routine",
        "subject": dict(subject),
        "about": [dict(event.focus) if event.focus else event_reference(event.key)],
        "authoredOn": decided.isoformat(),
        "recipient": [recipient],
        "payload": [{"contentString": f"{title}\n\n{text}"}],
        "note": [{"text": "A draft for the service's admin team to check, print and send, with "
                          "the parent leaflet enclosed."}],
    }
