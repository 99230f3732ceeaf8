"""Who a patient record is: one child across every source, never two children merged (rules.md s.7).

A verified NHS number (modulus 11, checked by the readers) joins a child's records across sources;
any other name (``Patient/1@trust-a``, a local identifier in its assigning system) joins only what
carries that same name. A record that links names already filed under two different NHS numbers
is an identity conflict: kept aside for a person (a dead letter with its reason), never merged.

The child's key is chosen so that it does not depend on the order records arrive: ``nhs:N`` once
an NHS number is known, else the smallest of the names joined. A replay reads every Patient
before it decides any event, so its outputs are those of a world where each child's NHS number
was known from the start; in live mode histories merge when the number arrives, and later
decisions count both (earlier outputs stand: nothing is lowered or withdrawn).
"""

from __future__ import annotations

import orjson

from fhir_engagement.errors import IdentityConflictError
from fhir_engagement.model import PatientFacts
from fhir_engagement.store.base import ChildHistory, Store

__all__ = ["HOUSEHOLD_CHILD", "HOUSEHOLD_PERSON", "household_aliases", "identify", "meta_list",
           "nhs_of"]

# Household links (rules.md s.8), kept both ways in the store's key-value table by the pipeline
# (docs/decisions.md: no table of their own yet): child alias -> persons, person -> child aliases.
HOUSEHOLD_CHILD = "household:child:"
HOUSEHOLD_PERSON = "household:person:"


def nhs_of(history: ChildHistory, child: str) -> str | None:
    """The child's NHS number, if one is known."""
    if child.startswith("nhs:"):
        return child[4:]
    return next((a[4:] for a in sorted(history.aliases_of(child)) if a.startswith("nhs:")), None)


def household_aliases(store: Store, child: str) -> list[str]:
    """Every alias linked to ``child`` through a shared parent or carer (theirs included)."""
    names = sorted(store.aliases_of(child) | {child})
    persons = {p for n in names for p in meta_list(store, HOUSEHOLD_CHILD + n)}
    return sorted({a for p in persons for a in meta_list(store, HOUSEHOLD_PERSON + p)})


def meta_list(store: Store, key: str) -> list[str]:
    """A list kept as JSON under ``key`` in the store's key-value table ([] when absent)."""
    raw = store.meta(key)
    return [str(v) for v in orjson.loads(raw)] if raw else []


def identify(history: ChildHistory, facts: PatientFacts) -> str:
    """File ``facts`` under their child, merging the children they prove to be one; the key.

    Raises:
        IdentityConflictError: the names in ``facts`` belong to children with different NHS
            numbers (or to one with another number than ``facts`` gives).
    """
    known = {r.key for a in facts.aliases if (r := history.child_of(a)) is not None}
    numbers = {n for c in known if (n := nhs_of(history, c))}
    if facts.nhs_number:
        numbers.add(facts.nhs_number)
    if len(numbers) > 1:
        raise IdentityConflictError(
            facts.origin or "patient record",
            f"names a child already known under another NHS number ({len(numbers)} numbers "
            "in all): not merged; a person must decide which record is right")
    child = f"nhs:{min(numbers)}" if numbers else min({*known, *facts.aliases})
    for other in sorted(known - {child}):
        history.merge_children(other, child)
    history.add_patient(facts, child)
    return child
