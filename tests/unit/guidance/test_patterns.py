"""Patterns in a child's history (rules.md section 3), with the thresholds from rules.toml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fhir_engagement.guidance.patterns import (
    happened_before,
    intermittent,
    letter_asked,
    over_engagement,
    wnb_stage,
)
from fhir_engagement.guidance.rules import Patterns, Rules
from fhir_engagement.model import HistoryItem

AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
KEY = "Appointment/now"


def item(signal: str, days_before: int, n: int = 0, **fields: object) -> HistoryItem:
    """A history item ``days_before`` the event being decided."""
    key = f"Appointment/{signal}-{days_before}-{n}"
    return HistoryItem(key, signal, AT - timedelta(days=days_before), **fields)  # type: ignore[arg-type]


@pytest.fixture
def p(rules: Rules) -> Patterns:
    return rules.patterns


def test_the_default_thresholds_are_those_of_rules_md(p: Patterns) -> None:
    """rules.md 3: 12 months; 2 / 3 misses; 3 cancellations in 6 months; 4 in 90 days; 3 providers."""
    assert (p.not_brought_window_days, p.repeat_count, p.persistent_count) == (365, 2, 3)
    assert (p.intermittent_window_days, p.intermittent_count) == (183, 3)
    assert (p.over_engagement_window_days, p.over_engagement_count,
            p.over_engagement_providers) == (90, 4, 3)
    assert (p.young_person_from, p.adult_from) == (16, 18)


# ---------------------------------------------------------------------------- single/repeat/persistent

@pytest.mark.parametrize(
    ("history", "stage"),
    [
        ([], "single"),
        ([item("not-brought", 30)], "repeat"),
        ([item("no-access-visit", 30)], "repeat"),
        ([item("not-brought", 365)], "repeat"),
        ([item("not-brought", 366)], "single"),
        ([item("not-brought", 400), item("not-brought", 200)], "repeat"),
        ([item("not-brought", 200), item("not-brought", 30)], "persistent"),
        ([item("not-brought", 300), item("no-access-visit", 100), item("not-brought", 30)],
         "persistent"),
        ([item("family-cancelled", 60), item("attended", 30)], "single"),
    ],
    ids=["first", "2nd in 12 months", "no-access counts", "365 days ago is inside",
         "366 days ago is outside", "one of two inside", "3rd in 12 months", "4th in 12 months",
         "cancellations and attendances do not count"],
)
def test_wnb_stage_counts_misses_in_12_months(
    p: Patterns, history: list[HistoryItem], stage: str
) -> None:
    """rules.md 3: single = 1st, repeat = 2nd, persistent = 3+ not-brought in 12 months."""
    assert wnb_stage(history, KEY, AT, None, p).name == stage


def test_the_evidence_names_the_misses_and_the_event(p: Patterns) -> None:
    history = [item("not-brought", 200), item("attended", 100), item("not-brought", 30)]
    finding = wnb_stage(history, KEY, AT, None, p)
    assert finding.evidence == (history[0].event_key, history[2].event_key, KEY)


@pytest.mark.parametrize(
    ("history", "stage"),
    [
        ([item("not-brought", 400, service="paeds")], "repeat"),
        ([item("not-brought", 400, service="paeds"), item("attended", 380, service="paeds")],
         "single"),
        ([item("not-brought", 400, service="paeds"),
          item("family-cancelled", 380, service="paeds")], "repeat"),
        ([item("not-brought", 400, service="dental")], "single"),
        ([item("not-brought", 400, service="paeds"), item("attended", 380, service="dental")],
         "repeat"),
        ([item("not-brought", 3 * 365, service="paeds"),
          item("not-brought", 2 * 365, service="dental")], "repeat"),
        ([item("not-brought", 800, service="paeds"), item("attended", 790, service="paeds"),
          item("not-brought", 400, service="paeds")], "repeat"),
    ],
    ids=["consecutive", "attended in between", "a cancellation is not an outcome",
         "other service", "attended elsewhere", "years apart, however far",
         "the last two at the service"],
)
def test_two_consecutive_misses_for_the_same_service_are_repeat(
    p: Patterns, history: list[HistoryItem], stage: str
) -> None:
    """rules.md 3: repeat = ... or 2 consecutive for the same service (beyond the 12 months)."""
    assert wnb_stage(history, KEY, AT, "paeds", p).name == stage


def test_any_miss_after_a_letter_was_asked_is_persistent(p: Patterns) -> None:
    """rules.md 3: persistent = any not-brought after a WNB letter was asked for."""
    history = [item("not-brought", 500, asked=frozenset({"send-wnb-letter", "review-impact"}))]
    assert letter_asked(history)
    assert wnb_stage(history, KEY, AT, None, p).name == "persistent"


def test_other_actions_are_not_a_letter(p: Patterns) -> None:
    history = [item("not-brought", 500, asked=frozenset({"review-impact", "inform-gp"}))]
    assert not letter_asked(history)
    assert wnb_stage(history, KEY, AT, None, p).name == "single"


# ---------------------------------------------------------------------------- intermittent

@pytest.mark.parametrize(
    ("history", "found"),
    [
        ([item("family-cancelled", 100), item("family-cancelled", 50)], True),
        ([item("family-cancelled", 183), item("family-cancelled", 10)], True),
        ([item("family-cancelled", 184), item("family-cancelled", 10)], False),
        ([item("family-cancelled", 50)], False),
        ([item("family-cancelled", 100), item("family-cancelled", 50, situation="intermittent")],
         False),
    ],
    ids=["3rd in 6 months", "183 days ago is inside", "184 days ago is outside", "only 2nd",
         "already raised in the window"],
)
def test_three_family_cancellations_in_six_months(
    p: Patterns, history: list[HistoryItem], found: bool
) -> None:
    """rules.md 3: intermittent = 3 or more family-cancelled in 6 months (once per window)."""
    finding = intermittent(history, KEY, AT, p)
    assert (finding is not None and finding.name == "intermittent") is found


@pytest.mark.parametrize(
    ("signals", "found"),
    [
        (["attended", "not-brought", "attended"], True),
        (["attended", "family-cancelled", "attended"], True),
        (["attended", "no-access-visit", "attended"], True),
        (["not-brought", "attended", "not-brought"], False),
        (["attended", "attended", "attended"], False),
        (["not-brought", "attended"], False),
    ],
    ids=["attended/missed", "attended/cancelled", "no-access counts as missed",
         "two misses in a row", "always attended", "too short"],
)
def test_alternating_attended_and_missed_is_intermittent(
    p: Patterns, signals: list[str], found: bool
) -> None:
    """rules.md 3: attended / not-brought / cancelled alternating (disguised compliance)."""
    history = [item(s, 90 - 20 * i, n=i) for i, s in enumerate(signals)]
    finding = intermittent(history, KEY, AT, p)
    assert (finding is not None) is found
    if finding is not None:
        assert finding.evidence == (*(h.event_key for h in history), KEY)


@pytest.mark.parametrize(
    ("signals", "now", "found"),
    [
        (["attended", "family-cancelled", "attended"], "not-brought", True),
        (["attended", "not-brought", "attended"], "family-cancelled", True),
        (["not-brought", "attended", "family-cancelled"], "attended", True),
        (["attended", "not-brought", "attended"], "no-access-visit", True),
        (["attended", "family-cancelled", "not-brought"], "attended", False),
        (["attended", "family-cancelled", "attended"], "attended", False),
        (["attended", "family-cancelled", "attended"], "unscheduled-attendance", False),
    ],
    ids=["A C A then not brought", "A N A then cancelled", "N A C then attended",
         "A N A then no access", "two misses in a row", "two attendances in a row",
         "not an appointment outcome"],
)
def test_alternation_is_found_whichever_signal_completes_it(
    p: Patterns, signals: list[str], now: str, found: bool
) -> None:
    """rules.md 3: attended/not-brought/cancelled alternating, in either order, on any outcome."""
    history = [item(s, 90 - 20 * i, n=i) for i, s in enumerate(signals)]
    finding = intermittent(history, KEY, AT, p, now)
    assert (finding is not None) is found
    if finding is not None:
        assert finding.evidence == (*(h.event_key for h in history), KEY)
        assert "alternate" in finding.reason


def test_the_cancellation_count_needs_this_event_to_be_a_cancellation(p: Patterns) -> None:
    history = [item("family-cancelled", 100), item("family-cancelled", 50)]
    assert intermittent(history, KEY, AT, p, "family-cancelled") is not None
    assert intermittent(history, KEY, AT, p, "not-brought") is None


@pytest.mark.parametrize("now", ["not-brought", "family-cancelled", "attended"])
def test_alternation_is_raised_once_per_window(p: Patterns, now: str) -> None:
    """Raised beside a WNB row, the history row holds both (repeat-wnb+intermittent)."""
    signals = ["attended", "not-brought", "attended", "family-cancelled", "attended",
               "not-brought", "attended"]
    if now == "attended":
        signals = [*signals[1:], "family-cancelled"]  # alternating, ending with a miss
    raised = [item(s, 170 - 20 * i, n=i, situation="repeat-wnb+intermittent" if i == 5 else "")
              for i, s in enumerate(signals)]
    assert intermittent(raised, KEY, AT, p, now) is None
    unraised = [item(s, 170 - 20 * i, n=i) for i, s in enumerate(signals)]
    assert intermittent(unraised, KEY, AT, p, now) is not None


# ---------------------------------------------------------------------------- over-engagement

@pytest.mark.parametrize(
    ("history", "provider", "found"),
    [
        ([item("unscheduled-attendance", d, provider="ed-a") for d in (80, 40, 10)], "ed-a",
         True),
        ([item("unscheduled-attendance", d, provider="ed-a") for d in (91, 40, 10)], "ed-a",
         False),
        ([item("unscheduled-attendance", d, provider="ed-a") for d in (40, 10)], "ed-a", False),
        ([item("unscheduled-attendance", 40, provider="ed-a"),
          item("unscheduled-attendance", 10, provider="ed-b")], "ed-c", True),
        ([item("unscheduled-attendance", 100, provider="ed-a"),
          item("unscheduled-attendance", 10, provider="ed-b")], "ed-c", False),
        ([item("unscheduled-attendance", 40, provider="ed-a"),
          item("unscheduled-attendance", 10, provider="ed-b")], None, False),
        ([item("unscheduled-attendance", d, provider="ed-a", situation=s)
          for d, s in ((80, ""), (40, "over-engagement"), (10, ""))], "ed-a", False),
    ],
    ids=["4th in 90 days", "91 days ago is outside", "only 3rd", "3 providers",
         "3rd provider outside the window", "2 providers", "already raised in the window"],
)
def test_over_engagement(
    p: Patterns, history: list[HistoryItem], provider: str | None, found: bool
) -> None:
    """rules.md 3: 4+ unscheduled-attendance in 90 days, or at 3+ providers in 90 days."""
    finding = over_engagement(history, KEY, AT, provider, p)
    assert (finding is not None and finding.name == "over-engagement") is found


def test_happened_before_looks_for_the_same_signal_in_the_window() -> None:
    history = [item("left-before-seen", 400), item("left-before-seen", 100),
               item("left-against-advice", 50)]
    assert happened_before(history, "left-before-seen", AT, 365) == (history[1].event_key,)
    assert happened_before(history, "refused-assessment", AT, 365) == ()
