"""The pipeline's vocabulary: light frozen values that flow ingest -> signals -> guidance -> decisions.

These are deliberately not fhir.resources models: the replay hot path builds one Event per input
resource and full pydantic validation costs ~70x a JSON parse. Validation happens at the edges
(what we act on, what we write), not here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

__all__ = [
    "ACTION_CODES",
    "CONCERN_CODES",
    "HOME",
    "REFERENCE_SLOTS",
    "SERVICE_ELEMENTS",
    "SIGNAL_CODES",
    "SLOTS",
    "STATUS_SYSTEMS",
    "Action",
    "ChildStatus",
    "Contact",
    "Decision",
    "Event",
    "FlagChange",
    "HistoryItem",
    "LetterFacts",
    "PatientFacts",
    "Signal",
    "StatusFact",
    "StatusRule",
    "resource_json",
    "scoped",
    "situations_of",
    "split_key",
]

Reference = Mapping[str, Any]

# A resource key carries its source (rules.md s.7): ``Patient/1@trust-a``. The home namespace,
# the server outputs are written to (or, with none, input that names no source), has no suffix.
HOME = ""
_SEPARATOR = "@"  # never in a FHIR id ([A-Za-z0-9.-]) nor in a urn:uuid


def scoped(path: str, namespace: str) -> str:
    """``Type/id`` in ``namespace``: the key the store and the pipeline know a resource by."""
    return f"{path}{_SEPARATOR}{namespace}" if namespace else path


def split_key(key: str) -> tuple[str, str]:
    """``Patient/1@trust-a`` -> (``Patient/1``, ``trust-a``); a home key has namespace ''."""
    path, _, namespace = key.partition(_SEPARATOR)
    return path, namespace


@dataclass(frozen=True, slots=True)
class Event:
    """One Appointment/Encounter/Procedure, normalised across R4, R4B and R5.

    ``slots`` holds every coded value the mappings may match, as ``system|code`` strings and
    ``text:<lower-case text>`` for text-only concepts, keyed by slot name (status, class, ...).

    ``raw`` is the resource as JSON bytes (an NDJSON line as read, or written once from a
    Bundle's entry), parsed by ``resource()`` only where it is used: most events are never
    validated nor written to a letter, and an event holding its parsed resource costs ~7.7 KB
    against ~3.7 KB with its bytes (docs/benchmarks.md, 2026-12-04).
    """

    key: str
    resource_type: str
    occurred: datetime | None
    patient: str | None
    subject: Reference | None
    slots: Mapping[str, frozenset[str]]
    origin: str
    source: str = ""
    provider: str | None = None
    service: str | None = None
    performer: Reference | None = None
    version: str = ""
    raw: bytes | None = field(default=None, compare=False, repr=False)
    # What a Task's focus names when ``key`` is not a resource on the server (an HL7 v2 event).
    focus: Reference | None = None
    # Business identifiers (appointment/visit ids): a v2 event and its FHIR twin share one.
    identifiers: tuple[str, ...] = ()

    def resource(self) -> dict[str, Any] | None:
        """The resource parsed from ``raw`` (anew at each call); None for an event with none
        (an HL7 v2 message's)."""
        if self.raw is None:
            return None
        try:
            return orjson.loads(self.raw)  # type: ignore[no-any-return]
        except orjson.JSONDecodeError:  # what only the stdlib wrote (see resource_json)
            return json.loads(self.raw)  # type: ignore[no-any-return]


def resource_json(resource: Mapping[str, Any]) -> bytes:
    """A parsed resource as the JSON bytes an Event keeps; never fails for parsed JSON.

    orjson refuses nesting deeper than 255 (orjson reads 1,024 levels from a file), integers
    beyond 64 bits and lone surrogates (values no JSON parser gives, but a caller building its
    own may): those are written level by level instead, as ASCII (the stdlib's encoder recurses
    and fails near 1,000 levels). ``Event.resource`` reads them back with the stdlib."""
    try:
        return orjson.dumps(resource)
    except (orjson.JSONEncodeError, TypeError):  # TypeError: orjson's "Recursion limit reached"
        return _json_level_by_level(resource).encode()


class _Punctuation(str):
    """Brackets, commas and keys already written, told apart from a string value on the stack."""


def _json_level_by_level(value: Any) -> str:
    """JSON of a value of any depth, with a stack of what is left to write instead of recursion."""
    out: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if type(item) is _Punctuation:
            out.append(item)
            continue
        if isinstance(item, Mapping):
            parts: list[Any] = [_Punctuation("{")]
            for n, (key, member) in enumerate(item.items()):
                text = json.dumps(str(key))
                parts += [_Punctuation(f"{',' if n else ''}{text}:"), member]
        elif isinstance(item, list | tuple):
            parts = [_Punctuation("[")]
            for n, member in enumerate(item):
                parts += [_Punctuation(","), member] if n else [member]
        else:
            out.append(json.dumps(item))  # a string (ASCII, escaped), number, bool or null
            continue
        parts.append(_Punctuation("}" if isinstance(item, Mapping) else "]"))
        todo.extend(reversed(parts))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Contact:
    """A parent or carer a WNB letter may go to: from Patient.contact or a RelatedPerson.

    ``reference`` is the RelatedPerson's key when the contact is a resource of its own (None for a
    Patient.contact, which a server cannot resolve apart from its Patient)."""

    name: str
    relationship: str = ""
    codes: frozenset[str] = frozenset()
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class LetterFacts:
    """Only what a "was not brought" letter needs (data minimisation): the child's given name,
    the parents or carers, the family's languages ((BCP-47 code, words), the preferred first)
    and the GP (the Reference's string parts, as given)."""

    given_name: str = ""
    contacts: tuple[Contact, ...] = ()
    languages: tuple[tuple[str, str], ...] = ()
    gp: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What a Patient resource tells us: the aliases it is known by, NHS number and birth date.

    ``letter`` is what a WNB letter needs, when the record gives any (a RelatedPerson gives its
    patient's alias and itself as a contact, nothing else)."""

    aliases: tuple[str, ...]
    nhs_number: str | None
    birth_date: str | None
    origin: str = ""
    letter: LetterFacts | None = None


@dataclass(frozen=True, slots=True)
class StatusFact:
    """A status-bearing Flag/Condition: codes, the child it is about and when it applies."""

    key: str
    patient: str
    codes: frozenset[str]
    start: datetime | None
    end: datetime | None
    active: bool


@dataclass(frozen=True, slots=True)
class StatusRule:
    """A known status (cpp, lac, cin, vulnerable): the codes that give it and those that end it."""

    name: str
    codes: frozenset[str]
    ended_by: frozenset[str]


@dataclass(frozen=True, slots=True)
class Signal:
    """A disengagement signal raised by one event; ``rule`` names the mapping rule that fired."""

    code: str
    rule: str


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One signal in a child's history, as the pattern counter sees it."""

    event_key: str
    signal: str
    occurred: datetime
    service: str | None = None
    provider: str | None = None
    situation: str = ""
    asked: frozenset[str] = frozenset()


def situations_of(situation: str) -> tuple[str, ...]:
    """The rules-table rows one signal raised, as kept in its history row.

    Usually one; a missed appointment that also completes an alternation raises its WNB row and
    ``intermittent``, kept as ``repeat-wnb+intermittent`` (so "raised once per window" holds).
    """
    return tuple(p for p in situation.split("+") if p)


@dataclass(frozen=True, slots=True)
class ChildStatus:
    """The child's known statuses at the event (cpp, lac, cin, vulnerable) and their evidence."""

    statuses: frozenset[str] = frozenset()
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One Task to raise: what, how urgent, by when and for which role."""

    code: str
    priority: str
    due: datetime
    owner_role: str


@dataclass(frozen=True, slots=True)
class FlagChange:
    """The Flag state a decision asks for; the Flag builder never lowers an existing one."""

    kind: str
    code: str
    priority: str
    category: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guidance says about one signal, with the reasons it gives."""

    rule_id: str
    rules_version: str
    situation: str
    column: str
    actions: tuple[Action, ...]
    flag: FlagChange | None
    why: str
    evidence: tuple[str, ...] = ()
    age_note: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    event_date: date | None = None


# The vocabulary shared by the readers (ingest) and the mapping files (signals): which slots each
# resource type fills, and which system a bare status code in a mapping file belongs to.
SIGNAL_CODES = frozenset(
    {
        "not-brought",
        "no-access-visit",
        "family-cancelled",
        "refused-assessment",
        "left-before-seen",
        "left-against-advice",
        "unscheduled-attendance",
        "attended",
        "discharged",
        "did-not-attend",  # only as a clinician's classify-attendance answer, never from a feed
    }
)
SLOTS: Mapping[str, frozenset[str]] = {
    "Appointment": frozenset(
        {"status", "cancellation-reason", "visit", "attendance", "delivery-channel", "priority",
         "outcome-of-attendance"}
    ),
    "Encounter": frozenset(
        {"status", "class", "type", "discharge", "ed-outcome", "subject-status",
         "outcome-of-attendance", "priority"}
    ),
    "Procedure": frozenset({"status", "status-reason"}),
    "ServiceRequest": frozenset({"status", "status-reason", "priority"}),
    # rules.md s.8 "an episode ended": read for the discharge it records, nothing else
    "EpisodeOfCare": frozenset({"status", "type"}),
}
STATUS_SYSTEMS: Mapping[str, str] = {
    "Appointment": "http://hl7.org/fhir/appointmentstatus",
    "Encounter": "http://hl7.org/fhir/encounter-status",
    "Procedure": "http://hl7.org/fhir/event-status",
    "ServiceRequest": "http://hl7.org/fhir/request-status",
    "EpisodeOfCare": "http://hl7.org/fhir/episode-of-care-status",
}
# The elements a mapping file's `service` list may name, in the order the service is looked for
# (rules.md s.7: the HealthcareService or clinic reference, then the specialty / serviceType code).
# serviceCategory is absent on purpose: a service *category* is never the service.
SERVICE_ELEMENTS: Mapping[str, frozenset[str]] = {
    "Appointment": frozenset({"participant:HealthcareService", "participant:Location",
                              "serviceType.reference", "specialty", "serviceType"}),
    "Encounter": frozenset({"serviceType.reference", "location", "serviceType"}),
    # EpisodeOfCare has no serviceType: its type is the service whose care the episode is
    "EpisodeOfCare": frozenset({"type"}),
}
# Slots whose values are references (read from extensions), not codes.
REFERENCE_SLOTS = frozenset({"provider"})
ACTION_CODES = frozenset(
    {
        "review-impact", "send-wnb-letter", "inform-gp", "inform-health-visitor",
        "inform-social-worker", "safeguarding-lead-review", "contact-childrens-services",
        "neglect-referral", "same-day-follow-up", "senior-review-refusal", "curiosity-review",
        "named-doctor-review", "classify-attendance", "review-discharge", "household-review",
    }
)
CONCERN_CODES = frozenset(
    {
        "disengagement-single", "disengagement-repeat", "disengagement-persistent",
        "disengagement-intermittent", "left-against-advice", "over-engagement",
    }
)
