"""decide(): the further behaviours of rules.md section 8, one case per rule.

Expected values are written from rules.md s.8 (and s.5 for the cells it refers to), not copied
from rules.toml. Events are on AT, a Wednesday (see test_decide.DUE).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fhir_engagement.guidance.decide import (
    HIGH_RISK,
    URGENT,
    Situation,
    decide,
    decide_household,
)
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import ChildStatus
from tests.unit.guidance.test_decide import (
    MAKES,
    STATUSES,
    TABLE,
    Actions,
    actions_of,
    earlier,
    event,
    run,
)

# rules.md s.8: review-discharge urgent 2 wd; CPP/LAC asap same day + inform-social-worker.
# household-review routine 5 wd; urgent 2 wd when the index child is CPP/LAC. Neither a Flag.
SECTION8: dict[tuple[str, str], Actions] = {
    ("discharged-after-wnb", "none"): {("review-discharge", "urgent", "2wd")},
    ("discharged-after-wnb", "cin"): {("review-discharge", "urgent", "2wd")},
    ("discharged-after-wnb", "vulnerable"): {("review-discharge", "urgent", "2wd")},
    ("discharged-after-wnb", "cpp-lac"): {("review-discharge", "asap", "same-day"),
                                          ("inform-social-worker", "asap", "same-day")},
    ("household", "none"): {("household-review", "routine", "5wd")},
    ("household", "cin"): {("household-review", "routine", "5wd")},
    ("household", "vulnerable"): {("household-review", "routine", "5wd")},
    ("household", "cpp-lac"): {("household-review", "urgent", "2wd")},
}


@pytest.mark.parametrize("column", STATUSES)
def test_a_discharge_after_a_miss_at_that_service_is_never_quiet(rules: Rules, column: str) -> None:
    history = [earlier("not-brought", 200, service="paeds")]  # event() is at service "paeds"
    decision = run(rules, "discharged", history, STATUSES[column], ev=event("Encounter/d"))
    assert decision is not None
    assert decision.situation == "discharged-after-wnb"
    assert actions_of(decision) == SECTION8[("discharged-after-wnb", column)]
    assert decision.flag is None


@pytest.mark.parametrize("history", [
    [],  # never missed
    [earlier("not-brought", 30, service="dental")],  # missed another service
    [earlier("not-brought", 400, service="paeds")],  # more than 12 months before
], ids=["no miss", "other service", "13 months"])
def test_a_discharge_with_no_recent_miss_there_asks_nothing(rules: Rules, history: list) -> None:
    assert run(rules, "discharged", history, set(), ev=event("Encounter/d")) is None


@pytest.mark.parametrize(("situation", "column", "reaches"), [
    ("single-wnb", "none", False), ("repeat-wnb", "none", True), ("persistent-wnb", "cin", True),
    ("intermittent", "none", False), ("single-wnb", "cpp-lac", True),
    ("intermittent", "cpp-lac", True), ("left-before-seen", "cpp-lac", False),
])
def test_brothers_and_sisters_from_repeat_or_any_pattern_for_cpp_lac(
    rules: Rules, situation: str, column: str, reaches: bool
) -> None:
    signal, history = MAKES[situation]
    s = Situation(event(), signal, history, ChildStatus(frozenset(STATUSES[column])), "child")
    index = decide(s, rules)
    assert index is not None
    assert index.situation == situation
    sibling = decide_household(s, index, rules)
    if not reaches:
        assert sibling is None
        return
    assert sibling is not None
    assert actions_of(sibling) == SECTION8[("household", column)]
    assert sibling.flag is None


def test_a_single_miss_at_a_high_risk_service_takes_the_vulnerable_timings(rules: Rules) -> None:
    """rules.md s.8: vulnerable single WNB (review-impact urgent 1 wd, inform-health-visitor
    urgent 2 wd, Flag single PL) + inform-gp (routine 5 wd: no timescale in the table)."""
    s = Situation(event(), "not-brought", [], ChildStatus(), "child", frozenset({HIGH_RISK}))
    decision = decide(s, rules)
    assert decision is not None
    assert actions_of(decision) == {("review-impact", "urgent", "1wd"),
                                    ("inform-health-visitor", "urgent", "2wd"),
                                    ("inform-gp", "routine", "5wd")}
    assert decision.flag is not None
    assert (decision.flag.code, decision.flag.priority) == (
        "disengagement-single", "PL")
    assert "high-risk service" in decision.why


def test_an_urgent_referral_for_a_child_in_need_keeps_the_faster_of_both(rules: Rules) -> None:
    """CIN single: review-impact routine 2 wd + inform-social-worker urgent 1 wd, Flag PL; the
    vulnerable timings make review-impact urgent 1 wd; + inform-HV urgent 2 wd and inform-gp."""
    s = Situation(event(), "not-brought", [], ChildStatus(frozenset({"cin"})), "child",
                  frozenset({URGENT}))
    decision = decide(s, rules)
    assert decision is not None
    assert actions_of(decision) == {("review-impact", "urgent", "1wd"),
                                    ("inform-social-worker", "urgent", "1wd"),
                                    ("inform-health-visitor", "urgent", "2wd"),
                                    ("inform-gp", "routine", "5wd")}


def test_clinical_risk_changes_only_a_single_miss(rules: Rules) -> None:
    signal, history = MAKES["repeat-wnb"]
    s = Situation(event(), signal, history, ChildStatus(), "child", frozenset({HIGH_RISK}))
    decision = decide(s, rules)
    assert decision is not None
    assert actions_of(decision) == TABLE[("repeat-wnb", "none")][0]


def test_complex_needs_codes_make_a_child_vulnerable(rules: Rules) -> None:
    """rules.md s.8: default SNOMED codes for learning disability make the status vulnerable."""
    from fhir_engagement.config import Settings
    from fhir_engagement.guidance.status import child_status
    from fhir_engagement.model import StatusFact
    from fhir_engagement.signals.mappings import load_mappings

    mappings = load_mappings(Settings().mappings_dir)
    fact = StatusFact("Condition/ld", "Patient/p1", frozenset({"http://snomed.info/sct|110359009"}),
                      None, None, True)
    status = child_status([fact], event().occurred, mappings.statuses, "child")  # type: ignore[arg-type]
    assert status.statuses == {"vulnerable"}


@pytest.mark.parametrize(("answer", "expected"), [
    # "was not brought": the child's ladder, letter included, no classify-attendance again
    ("reliant-on-adult", TABLE[("repeat-wnb", "none")][0]),
    # "did not attend": review-impact only, never a letter to the parents
    ("own-choice", {("review-impact", "urgent", "2wd")}),
])
def test_the_16_17_decision_changes_later_misses(rules: Rules, answer: str, expected: Actions) -> None:
    signal, history = MAKES["repeat-wnb"]
    decision = run(rules, signal, history, {answer}, band="young-person")
    assert decision is not None
    assert actions_of(decision) == expected


def test_an_unborn_childs_miss_is_in_the_cpp_column_with_a_note(rules: Rules) -> None:
    s = Situation(replace(event(), patient="Patient/mother"), "not-brought", [],
                  ChildStatus(frozenset({"cpp", "unborn-cpp"})), "unborn")
    decision = decide(s, rules)
    assert decision is not None
    assert decision.column == "cpp-lac"
    assert actions_of(decision) == TABLE[("single-wnb", "cpp-lac")][0]
    assert any("unborn child" in n for n in decision.notes)
