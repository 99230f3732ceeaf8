"""Apply the mapping rules to one event: pure, no I/O."""

from __future__ import annotations

from fhir_engagement.model import Event, Signal
from fhir_engagement.signals.mappings import Codes, CompiledRule, Mappings

__all__ = ["extract", "is_correction", "matches"]

_EMPTY: Codes = frozenset()


def extract(event: Event, mappings: Mappings) -> tuple[Signal, ...]:
    """Every signal the event raises, each naming the mapping rule that fired; one per signal code."""
    found: dict[str, Signal] = {}
    for rule in mappings.rules_for(event.resource_type, event.source):
        if rule.signal not in found and rule.signal != "retract" and matches(rule, event):
            found[rule.signal] = Signal(rule.signal, rule.id)
    return tuple(found.values())


def matches(rule: CompiledRule, event: Event) -> bool:
    """True when every ``when`` slot meets its codes and no ``unless`` slot does."""
    slots = event.slots
    for slot, codes in rule.when:
        if slots.get(slot, _EMPTY).isdisjoint(codes):
            return False
    return all(slots.get(slot, _EMPTY).isdisjoint(codes) for slot, codes in rule.unless)


def is_correction(event: Event, mappings: Mappings) -> bool:
    """True when this version of the event corrects earlier ones (noshow keyed in error, ...)."""
    rule = mappings.retraction(event.resource_type, event.source)
    return rule is not None and matches(rule, event)
