"""Patterns in one child's history, counted across every service the adapter sees (rules.md s.3).

``history`` is always the child's earlier, unretracted signals in event-time order; the event
being decided is passed separately and is not in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from fhir_engagement.guidance.rules import Patterns
from fhir_engagement.model import HistoryItem, situations_of

__all__ = [
    "MISSED",
    "Finding",
    "discharged_after_wnb",
    "happened_before",
    "intermittent",
    "letter_asked",
    "over_engagement",
    "wnb_stage",
]

MISSED = frozenset({"not-brought", "no-access-visit"})
_OUTCOMES = MISSED | {"attended", "family-cancelled"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A pattern and the events that make it, for the Task note and Provenance."""

    name: str
    reason: str
    evidence: tuple[str, ...]


def _within(history: Sequence[HistoryItem], at: datetime, days: int) -> list[HistoryItem]:
    since = at - timedelta(days=days)
    return [h for h in history if since <= h.occurred <= at]


def letter_asked(history: Sequence[HistoryItem]) -> bool:
    """The adapter already asked for a WNB letter for this child (at any earlier event)."""
    return any("send-wnb-letter" in h.asked for h in history)


def wnb_stage(
    history: Sequence[HistoryItem], key: str, at: datetime, service: str | None, p: Patterns
) -> Finding:
    """single / repeat / persistent for a missed appointment at ``at``."""
    days = p.not_brought_window_days
    misses = [h for h in _within(history, at, days) if h.signal in MISSED]
    count = len(misses) + 1
    evidence = (*(h.event_key for h in misses), key)
    if letter_asked(history):
        return Finding("persistent", "missed again after a WNB letter was asked for", evidence)
    if count >= p.persistent_count:
        return Finding("persistent", f"{_nth(count)} not-brought in {days} days", evidence)
    if count >= p.repeat_count:
        return Finding("repeat", f"{_nth(count)} not-brought in {days} days", evidence)
    previous = _last_outcome_for(history, service)
    if previous is not None and previous.signal in MISSED:
        return Finding("repeat", "2 consecutive not-brought for the same service",
                       (previous.event_key, key))
    return Finding("single", f"first not-brought in {days} days", (key,))


def _last_outcome_for(history: Sequence[HistoryItem], service: str | None) -> HistoryItem | None:
    if service is None:
        return None
    for item in reversed(history):
        if item.service == service and item.signal in _OUTCOMES - {"family-cancelled"}:
            return item
    return None


def intermittent(
    history: Sequence[HistoryItem], key: str, at: datetime, p: Patterns,
    signal: str = "family-cancelled",
) -> Finding | None:
    """3+ family cancellations in 6 months, or the last ``alternating_run`` outcomes (this
    event's ``signal`` the last) alternating attended/missed; once per window.

    The count needs this event to be a cancellation; alternation is found whichever outcome
    completes it (attended, not brought, no access or cancelled by the family).
    """
    recent = _within(history, at, p.intermittent_window_days)
    if any(_raised(h, "intermittent") for h in recent):
        return None  # already raised in this window: one curiosity review, not one per cancellation
    cancels = [h for h in recent if h.signal == "family-cancelled"]
    if signal == "family-cancelled" and len(cancels) + 1 >= p.intermittent_count:
        evidence = (*(h.event_key for h in cancels), key)
        return Finding("intermittent", f"{len(cancels) + 1} family cancellations in "
                       f"{p.intermittent_window_days} days", evidence)
    return _alternation(recent, key, signal, p)


def _alternation(
    recent: Sequence[HistoryItem], key: str, signal: str, p: Patterns
) -> Finding | None:
    if signal not in _OUTCOMES:
        return None
    run = [h for h in recent if h.signal in _OUTCOMES][-(p.alternating_run - 1):]
    if len(run) == p.alternating_run - 1 and _alternates([*[h.signal for h in run], signal]):
        return Finding("intermittent", f"the last {p.alternating_run} appointments alternate "
                       "between attended and missed", (*(h.event_key for h in run), key))
    return None


def _raised(item: HistoryItem, situation: str) -> bool:
    return situation in situations_of(item.situation)


def _alternates(signals: list[str]) -> bool:
    kinds = ["attended" if s == "attended" else "missed" for s in signals]
    return all(a != b for a, b in pairwise(kinds))


def over_engagement(
    history: Sequence[HistoryItem], key: str, at: datetime, provider: str | None, p: Patterns
) -> Finding | None:
    """4+ unscheduled attendances in 90 days, or at 3+ providers; raised once per window."""
    recent = _within(history, at, p.over_engagement_window_days)
    if any(_raised(h, "over-engagement") for h in recent):
        return None
    visits = [h for h in recent if h.signal == "unscheduled-attendance"]
    evidence = (*(h.event_key for h in visits), key)
    days = p.over_engagement_window_days
    if len(visits) + 1 >= p.over_engagement_count:
        return Finding("over-engagement", f"{len(visits) + 1} unscheduled attendances in "
                       f"{days} days", evidence)
    providers = {h.provider for h in visits if h.provider} | ({provider} if provider else set())
    if len(providers) >= p.over_engagement_providers:
        return Finding("over-engagement", f"unscheduled attendances at {len(providers)} "
                       f"providers in {days} days", evidence)
    return None


def discharged_after_wnb(
    history: Sequence[HistoryItem], key: str, at: datetime, service: str | None, p: Patterns
) -> Finding | None:
    """A discharge within the not-brought window after a miss at the same service (rules.md s.8:
    never quietly discharge). No service, no finding: a discharge elsewhere is not this one."""
    if service is None:
        return None
    misses = [h for h in _within(history, at, p.not_brought_window_days)
              if h.signal in MISSED and h.service == service]
    if not misses:
        return None
    days = (at - misses[-1].occurred).days
    return Finding("discharged-after-wnb", f"discharged from the service {days} days after the "
                   "child was not brought to it", (*(h.event_key for h in misses), key))


def happened_before(
    history: Sequence[HistoryItem], signal: str, at: datetime, days: int
) -> tuple[str, ...]:
    """Earlier events with the same signal inside the window."""
    return tuple(h.event_key for h in _within(history, at, days) if h.signal == signal)


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
