"""The child's age band and known status at an event (rules.md sections 1 and 2)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from fhir_engagement.guidance.rules import Patterns
from fhir_engagement.model import ChildStatus, StatusFact, StatusRule

__all__ = ["age_band", "age_in_years", "child_status", "column_of"]

# Rank for the rules table: CPP = LAC > CIN > vulnerable > none.
_COLUMNS = (("cpp-lac", {"cpp", "lac"}), ("cin", {"cin"}), ("vulnerable", {"vulnerable"}))


def age_in_years(birth: date | None, on: date) -> int | None:
    """Whole years from birth to ``on``; None when the birth date is unknown."""
    if birth is None:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return max(years, 0)


def age_band(years: int | None, patterns: Patterns) -> str:
    """infant, child, young-person, adult, or unknown (treated as a child by the rules)."""
    if years is None:
        return "unknown"
    if years < 1:
        return "infant"
    if years < patterns.young_person_from:
        return "child"
    return "young-person" if years < patterns.adult_from else "adult"


def child_status(
    facts: Iterable[StatusFact], at: datetime, rules: tuple[StatusRule, ...], band: str
) -> ChildStatus:
    """Statuses in force at ``at``: a status fact covers the event and no ending code came later."""
    facts = list(facts)
    found: set[str] = set()
    evidence: list[str] = []
    for rule in rules:
        for fact in facts:
            if _applies(fact, rule, at) and not _ended(facts, rule, fact, at):
                found.add(rule.name)
                evidence.append(fact.key)
                break
    if band == "infant":
        found.add("vulnerable")
    return ChildStatus(frozenset(found), tuple(evidence))


def column_of(status: ChildStatus) -> str:
    """The rules-table column for the child's highest-ranked status."""
    for column, names in _COLUMNS:
        if status.statuses & names:
            return column
    return "none"


def _applies(fact: StatusFact, rule: StatusRule, at: datetime) -> bool:
    return (
        fact.active
        and not fact.codes.isdisjoint(rule.codes)
        and (fact.start is None or fact.start <= at)
        and (fact.end is None or at < fact.end)
    )


def _ended(facts: list[StatusFact], rule: StatusRule, fact: StatusFact, at: datetime) -> bool:
    """A 'no longer ...' code dated after the status began and on or before the event ends it."""
    for other in facts:
        if other.codes.isdisjoint(rule.ended_by) or other.start is None:
            continue
        if other.start <= at and (fact.start is None or fact.start <= other.start):
            return True
    return False
