"""What a "was not brought" letter needs from a Patient or RelatedPerson: names, contacts, language.

Read leniently on purpose: a letter detail of the wrong shape (a name that is not a HumanName, a
language with no code) is left out, never a rejected Patient, because the Patient's identity and
birth date matter more than its letter. Only what a letter needs is kept (data minimisation): the
child's given name, each contact's name and relationship, the languages, the GP reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_engagement.model import Contact, LetterFacts

__all__ = ["contact_of_related_person", "letter_facts"]

Json = Mapping[str, Any]
_MAX_ITEMS = 20  # contacts, names, languages: more than this is not one family's


def letter_facts(patient: Json) -> LetterFacts | None:
    """The letter's facts from a Patient resource; None when it gives none of them."""
    facts = LetterFacts(
        given_name=_given_name(patient.get("name")),
        contacts=tuple(c for item in _list(patient.get("contact"))
                       if (c := _contact(item)) is not None),
        languages=_languages(patient.get("communication")),
        gp=_gp(patient.get("generalPractitioner")),
    )
    return facts if facts != LetterFacts() else None


def contact_of_related_person(person: Json, key: str) -> Contact | None:
    """A RelatedPerson as a contact of its patient, known by its own ``key``."""
    name = _full_name(person.get("name"))
    if not name:
        return None
    relationship, codes = _relationship(person.get("relationship"))
    return Contact(name, relationship, codes, key)


def _list(value: Any) -> list[Any]:
    return value[:_MAX_ITEMS] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _names(value: Any) -> list[Json]:
    """HumanNames, the one in use first (official, usual, then the rest; "old" ones never)."""
    names = [n for n in _list(value) if isinstance(n, dict) and _text(n.get("use")) != "old"]
    order = {"usual": 0, "official": 1}
    return sorted(names, key=lambda n: order.get(_text(n.get("use")), 2))


def _given_name(value: Any) -> str:
    for name in _names(value):
        given = [g for g in _list(name.get("given")) if _text(g)]
        if given:
            return _text(given[0])
        if _text(name.get("text")):
            return _text(name["text"]).split(" ")[0]
    return ""


def _full_name(value: Any) -> str:
    names = _names(value) if isinstance(value, list) else _names([value])
    for name in names:
        if _text(name.get("text")):
            return _text(name["text"])
        parts = [_text(g) for g in _list(name.get("given"))] + [_text(name.get("family"))]
        joined = " ".join(p for p in parts if p)
        if joined:
            return joined
    return ""


def _contact(item: Any) -> Contact | None:
    if not isinstance(item, dict):
        return None
    name = _full_name(item.get("name"))
    if not name:
        return None
    relationship, codes = _relationship(item.get("relationship"))
    return Contact(name, relationship, codes)


def _relationship(value: Any) -> tuple[str, frozenset[str]]:
    """The relationship in words (first display or text found) and every ``system|code``."""
    words, codes = "", set()
    for concept in _list(value):
        if not isinstance(concept, dict):
            continue
        for coding in _list(concept.get("coding")):
            if isinstance(coding, dict) and _text(coding.get("code")):
                codes.add(f"{_text(coding.get('system'))}|{_text(coding['code'])}")
                words = words or _text(coding.get("display"))
        words = words or _text(concept.get("text"))
    return words, frozenset(codes)


def _languages(value: Any) -> tuple[tuple[str, str], ...]:
    """(code, words) per language, the preferred one first; code is BCP-47 lower case."""
    found: list[tuple[bool, str, str]] = []
    for item in _list(value):
        language = item.get("language") if isinstance(item, dict) else None
        if not isinstance(language, dict):
            continue
        code, words = "", _text(language.get("text"))
        for coding in _list(language.get("coding")):
            if isinstance(coding, dict) and _text(coding.get("code")):
                code = code or _text(coding["code"]).lower()
                words = words or _text(coding.get("display"))
        if code or words:
            found.append((item.get("preferred") is True, code, words))
    found.sort(key=lambda f: not f[0])  # stable: the preferred first, the rest as given
    return tuple((code, words) for _, code, words in found)


def _gp(value: Any) -> tuple[tuple[str, str], ...] | None:
    """The first GP reference, kept as its plain string parts (reference, display, identifier)."""
    for ref in _list(value):
        if not isinstance(ref, dict):
            continue
        parts = [(k, _text(ref.get(k))) for k in ("reference", "type", "display") if _text(ref.get(k))]
        ident = ref.get("identifier")
        if isinstance(ident, dict) and _text(ident.get("value")):
            parts += [("identifier.system", _text(ident.get("system"))),
                      ("identifier.value", _text(ident["value"]))]
        if parts:
            return tuple(parts)
    return None
