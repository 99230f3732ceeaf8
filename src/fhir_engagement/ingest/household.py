"""Context the guidance's section 8 reads: household links and the 16-17 decision -> StatusFact.

Both are kept as status facts, so they travel the one context path every input already has
(records -> ``Pipeline.accept_context``), in every store, with no table of their own:

- a **household link** says "this child has this parent or carer". Its codes are
  ``household|<person>`` for every name the person is known by (a RelatedPerson's own key and its
  identifiers, the Patient or RelatedPerson a Patient.link or Patient.contact names, a household
  Group). Two children who share any such name share a parent or carer (rules.md s.8). A name
  alone (Patient.contact.name) never joins two children: only an identified person does.
- a **completed classify-attendance Task** says how a young person's misses are counted from
  then on: its output "was not brought" (``engagement-signal|not-brought``) or "did not attend"
  (``engagement-signal|did-not-attend``), from the time the Task was completed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from fhir_engagement.ingest.fhirtime import parse_datetime
from fhir_engagement.ingest.references import identifier_key
from fhir_engagement.model import StatusFact

__all__ = ["HOUSEHOLD", "classify_answer", "group_links", "patient_links", "related_person_link"]

HOUSEHOLD = "household|"
_ACTION = "https://fhir-engagement.org/fhir/CodeSystem/engagement-action"
_SIGNAL = "https://fhir-engagement.org/fhir/CodeSystem/engagement-signal"
_ANSWERS = (("was not brought", "not-brought"), ("not brought", "not-brought"),
            ("did not attend", "did-not-attend"))

Json = Mapping[str, Any]
Ref = Callable[[Any], str | None]


def _list(res: Json, name: str) -> list[Any]:
    value = res.get(name)
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _identifiers(res: Json) -> list[str]:
    return [k for i in _list(res, "identifier") if (k := identifier_key(i)) is not None]


def _link(key: str, child: str, persons: list[str]) -> StatusFact | None:
    names = frozenset(f"{HOUSEHOLD}{p}" for p in persons if p)
    return StatusFact(key, child, names, None, None, True) if names else None


def related_person_link(res: Json, key: str, ref: Ref) -> StatusFact | None:
    """A RelatedPerson: the child it is about (``patient``) has this person as parent or carer."""
    child = ref(res.get("patient")) if isinstance(res.get("patient"), dict) else None
    if child is None or res.get("active") is False:
        return None
    return _link(key, child, [key, *_identifiers(res)])


def patient_links(res: Json, key: str, ref: Ref) -> Iterator[StatusFact]:
    """Patient.link (to a RelatedPerson or another Patient) and Patient.contact naming an
    identified person (an extension whose value is a Reference or an Identifier)."""
    persons: list[str] = []
    for link in _list(res, "link"):
        other = link.get("other")
        if isinstance(other, dict) and link.get("type") in ("seealso", "refer", None):
            persons.extend(p for p in [ref(other)] if p and p.split("/")[0] == "RelatedPerson")
    for contact in _list(res, "contact"):
        for ext in _list(contact, "extension"):
            if isinstance(ext.get("valueReference"), dict):
                persons.extend(p for p in [ref(ext["valueReference"])] if p)
            if isinstance(ext.get("valueIdentifier"), dict):
                persons.extend(p for p in [identifier_key(ext["valueIdentifier"])] if p)
    fact = _link(f"{key}#household", key, persons)
    if fact is not None:
        yield fact


def group_links(
    res: Json, key: str, ref: Ref, concept: Callable[[Any], set[str]], household: frozenset[str]
) -> Iterator[StatusFact]:
    """A configured household Group: every Patient member shares the Group as a carer."""
    if concept(res.get("code")).isdisjoint(household) or res.get("active") is False:
        return
    for i, member in enumerate(_list(res, "member")):
        entity = member.get("entity")
        child = ref(entity) if isinstance(entity, dict) else None
        if child and child.split("/")[0] == "Patient" and member.get("inactive") is not True:
            fact = _link(f"{key}#member{i}", child, [key])
            if fact is not None:
                yield fact


def classify_answer(res: Json, key: str, ref: Ref, concept: Callable[[Any], set[str]]
                    ) -> StatusFact | None:
    """A completed classify-attendance Task -> the young person's answer, from its completion."""
    if res.get("status") != "completed" or f"{_ACTION}|classify-attendance" not in concept(
            res.get("code")):
        return None
    child = ref(res.get("for")) if isinstance(res.get("for"), dict) else None
    answer = _answer(res, concept)
    if child is None or answer is None:
        return None
    return StatusFact(key, child, frozenset({f"{_SIGNAL}|{answer}"}), _completed(res), None, True)


def _answer(res: Json, concept: Callable[[Any], set[str]]) -> str | None:
    for out in _list(res, "output"):
        codes = concept(out.get("valueCodeableConcept"))
        for code in ("not-brought", "did-not-attend"):
            if f"{_SIGNAL}|{code}" in codes:
                return code
        text = out.get("valueString")
        texts = [text] if isinstance(text, str) else [c[5:] for c in codes if c.startswith("text:")]
        for said in texts:
            for words, code in _ANSWERS:
                if words in said.lower():
                    return code
    return None


def _completed(res: Json) -> datetime | None:
    period = res.get("executionPeriod") if isinstance(res.get("executionPeriod"), dict) else {}
    for raw in (period.get("end"), res.get("lastModified"), res.get("authoredOn")):
        if isinstance(raw, str) and (at := parse_datetime(raw)) is not None:
            return at
    return None
