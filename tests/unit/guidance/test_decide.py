"""decide(): one case per cell of the rules.md section 5 table, plus its cross-cutting rules.

The expected actions below were written from rules.md section 5, not copied from rules.toml,
with the two conventions rules.toml's header states: a missed-contact cell (single / repeat /
persistent WNB) that does not name `review-impact` gets it at urgent/2wd, and `inform-gp` /
`inform-health-visitor` without a timescale are routine/5wd. "as none + X" repeats the none cell.
Where the table says "Flag PH" without naming a stage, any engagement stage is accepted (ANY).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.guidance.decide import Situation, decide, decide_all, decide_retraction
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.model import CONCERN_CODES, ChildStatus, Decision, Event, HistoryItem

LONDON = ZoneInfo("Europe/London")
AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday with no bank holiday near it
DUE = {"same-day": date(2026, 3, 4), "1wd": date(2026, 3, 5), "2wd": date(2026, 3, 6),
       "5wd": date(2026, 3, 11)}
ANY = "any engagement stage"
ENGAGEMENT_STAGES = CONCERN_CODES - {"over-engagement"}

STATUSES = {"none": set(), "cin": {"cin"}, "cpp-lac": {"cpp"}, "vulnerable": {"vulnerable"}}


def event(key: str = "Appointment/now", at: datetime = AT) -> Event:
    return Event(key=key, resource_type=key.split("/")[0], occurred=at, patient="Patient/p1",
                 subject={"reference": "Patient/p1"}, slots={}, origin="test",
                 service="paeds", provider="Organization/trust-a")


def earlier(signal: str, days: int, n: int = 0, **fields: object) -> HistoryItem:
    return HistoryItem(f"Appointment/{signal}-{days}-{n}", signal, AT - timedelta(days=days),
                       **fields)  # type: ignore[arg-type]


# situation -> (signal, history that makes it)
MAKES = {
    "single-wnb": ("not-brought", []),
    "repeat-wnb": ("not-brought", [earlier("not-brought", 30, service="dental")]),
    "persistent-wnb": ("not-brought", [earlier("not-brought", 90, service="dental"),
                                       earlier("not-brought", 30, service="dental")]),
    "intermittent": ("family-cancelled", [earlier("family-cancelled", 90),
                                          earlier("family-cancelled", 30)]),
    "refused-assessment": ("refused-assessment", []),
    "left-against-advice": ("left-against-advice", []),
    "left-before-seen": ("left-before-seen", []),
    "over-engagement": ("unscheduled-attendance", [
        earlier("unscheduled-attendance", d, provider="Organization/trust-a")
        for d in (60, 30, 10)]),
}

Actions = set[tuple[str, str, str]]
Flag = tuple[str, str] | None


def _letter_gp_hv() -> Actions:
    return {("send-wnb-letter", "routine", "5wd"), ("inform-gp", "routine", "5wd"),
            ("inform-health-visitor", "routine", "5wd")}


REVIEW_URGENT = ("review-impact", "urgent", "2wd")

# (situation, column) -> (actions as (code, priority, due), flag as (code, priority) or None)
TABLE: dict[tuple[str, str], tuple[Actions, Flag]] = {
    # single WNB
    ("single-wnb", "none"): ({("review-impact", "routine", "2wd")}, None),
    ("single-wnb", "cin"): (
        {("review-impact", "routine", "2wd"), ("inform-social-worker", "urgent", "1wd")},
        ("disengagement-single", "PL")),
    ("single-wnb", "cpp-lac"): (
        {("inform-social-worker", "asap", "same-day"), ("review-impact", "urgent", "1wd"),
         ("inform-gp", "routine", "5wd")},
        ("disengagement-single", "PH")),
    ("single-wnb", "vulnerable"): (
        {("review-impact", "urgent", "1wd"), ("inform-health-visitor", "urgent", "2wd")},
        ("disengagement-single", "PL")),
    # repeat WNB
    ("repeat-wnb", "none"): (_letter_gp_hv() | {REVIEW_URGENT}, ("disengagement-repeat", "PL")),
    ("repeat-wnb", "cin"): (
        _letter_gp_hv() | {REVIEW_URGENT, ("inform-social-worker", "urgent", "1wd")},
        ("disengagement-repeat", "PM")),
    ("repeat-wnb", "cpp-lac"): (
        {("inform-social-worker", "asap", "same-day"),
         ("safeguarding-lead-review", "urgent", "2wd"), REVIEW_URGENT},
        ("disengagement-repeat", "PH")),
    ("repeat-wnb", "vulnerable"): (
        _letter_gp_hv() | {("contact-childrens-services", "urgent", "2wd"), REVIEW_URGENT},
        ("disengagement-repeat", "PM")),
    # persistent WNB (no letter asked yet: neglect-referral only where the cell is unconditional)
    ("persistent-wnb", "none"): (
        {("contact-childrens-services", "urgent", "2wd"), REVIEW_URGENT},
        ("disengagement-persistent", "PM")),
    ("persistent-wnb", "cin"): (
        {("contact-childrens-services", "urgent", "2wd"), REVIEW_URGENT,
         ("inform-social-worker", "asap", "same-day")},
        ("disengagement-persistent", "PM")),
    ("persistent-wnb", "cpp-lac"): (
        {("inform-social-worker", "asap", "same-day"), ("neglect-referral", "urgent", "1wd"),
         REVIEW_URGENT},
        ("disengagement-persistent", "PH")),
    ("persistent-wnb", "vulnerable"): (
        {("neglect-referral", "urgent", "1wd"), REVIEW_URGENT},
        ("disengagement-persistent", "PH")),
    # intermittent (cancellations)
    ("intermittent", "none"): (
        {("curiosity-review", "routine", "5wd")}, ("disengagement-intermittent", "PL")),
    ("intermittent", "cin"): (
        {("curiosity-review", "routine", "5wd"), ("inform-social-worker", "routine", "5wd")},
        ("disengagement-intermittent", "PL")),
    ("intermittent", "cpp-lac"): (
        {("curiosity-review", "routine", "5wd"), ("inform-social-worker", "urgent", "1wd")},
        ("disengagement-intermittent", "PL")),
    # the cell names only the faster review; a vulnerable child is never flagged lower than none
    ("intermittent", "vulnerable"): (
        {("curiosity-review", "urgent", "2wd")}, ("disengagement-intermittent", "PL")),
    # refused assessment
    ("refused-assessment", "none"): ({("senior-review-refusal", "asap", "same-day")}, None),
    ("refused-assessment", "cin"): (
        {("senior-review-refusal", "asap", "same-day"),
         ("inform-social-worker", "asap", "same-day")}, None),
    ("refused-assessment", "cpp-lac"): (
        {("senior-review-refusal", "asap", "same-day"),
         ("inform-social-worker", "asap", "same-day")}, (ANY, "PH")),
    ("refused-assessment", "vulnerable"): ({("senior-review-refusal", "asap", "same-day")}, None),
    # left against advice
    ("left-against-advice", "none"): (
        {("same-day-follow-up", "stat", "same-day"), ("inform-gp", "routine", "5wd")},
        ("left-against-advice", "PM")),
    ("left-against-advice", "cin"): (
        {("same-day-follow-up", "stat", "same-day"), ("inform-gp", "routine", "5wd"),
         ("inform-social-worker", "asap", "same-day")},
        ("left-against-advice", "PM")),
    ("left-against-advice", "cpp-lac"): (
        {("same-day-follow-up", "stat", "same-day"), ("inform-gp", "routine", "5wd"),
         ("inform-social-worker", "stat", "same-day")},
        ("left-against-advice", "PH")),
    ("left-against-advice", "vulnerable"): (
        {("same-day-follow-up", "stat", "same-day"), ("inform-gp", "routine", "5wd")},
        ("left-against-advice", "PM")),
    # left before seen, the first time (the Flag needs an earlier one in 12 months)
    ("left-before-seen", "none"): (
        {("same-day-follow-up", "urgent", "same-day"), ("inform-gp", "routine", "5wd")}, None),
    ("left-before-seen", "cin"): (
        {("same-day-follow-up", "urgent", "same-day"), ("inform-gp", "routine", "5wd"),
         ("inform-social-worker", "urgent", "1wd")}, None),
    ("left-before-seen", "cpp-lac"): (
        {("same-day-follow-up", "urgent", "same-day"), ("inform-gp", "routine", "5wd"),
         ("inform-social-worker", "asap", "same-day")}, (ANY, "PH")),
    # a child with complex needs (not an infant): as none
    ("left-before-seen", "vulnerable"): (
        {("same-day-follow-up", "urgent", "same-day"), ("inform-gp", "routine", "5wd")}, None),
    # over-engagement: never a letter
    ("over-engagement", "none"): (
        {("named-doctor-review", "routine", "5wd")}, ("over-engagement", "PM")),
    ("over-engagement", "cin"): (
        {("named-doctor-review", "routine", "5wd")}, ("over-engagement", "PM")),
    ("over-engagement", "cpp-lac"): (
        {("named-doctor-review", "urgent", "2wd")}, ("over-engagement", "PM")),
    ("over-engagement", "vulnerable"): (
        {("named-doctor-review", "urgent", "2wd")}, ("over-engagement", "PM")),
}


def run(
    rules: Rules, signal: str, history: list[HistoryItem], statuses: set[str], band: str = "child",
    ev: Event | None = None,
) -> Decision | None:
    s = Situation(ev or event(), signal, history, ChildStatus(frozenset(statuses)), band)
    return decide(s, rules)


def actions_of(decision: Decision) -> Actions:
    """(code, priority, due) with the due written as in rules.md, for an event on AT."""
    names = {day: name for name, day in DUE.items()}
    return {(a.code, a.priority, names.get(a.due.astimezone(LONDON).date(), str(a.due)))
            for a in decision.actions}


def assert_flag(decision: Decision, expected: Flag, category: str = "safety") -> None:
    if expected is None:
        assert decision.flag is None
        return
    assert decision.flag is not None
    code, priority = expected
    if code == ANY:
        assert decision.flag.code in ENGAGEMENT_STAGES
    else:
        assert decision.flag.code == code
    assert decision.flag.priority == priority
    assert decision.flag.category == category


@pytest.mark.parametrize(("situation", "column"), TABLE.keys(),
                         ids=[f"{s}/{c}" for s, c in TABLE])
def test_each_cell_of_the_rules_table(rules: Rules, situation: str, column: str) -> None:
    """rules.md section 5: the row is the pattern, the column the child's highest status."""
    signal, history = MAKES[situation]
    decision = run(rules, signal, history, STATUSES[column])
    assert decision is not None
    assert (decision.situation, decision.column) == (situation, column)
    expected_actions, expected_flag = TABLE[(situation, column)]
    assert actions_of(decision) == expected_actions
    assert len(decision.actions) == len(expected_actions)  # no action asked twice
    category = "clinical" if situation == "over-engagement" else "safety"
    assert_flag(decision, expected_flag, category)


def test_the_table_covers_every_rules_toml_cell(rules: Rules) -> None:
    from tests.unit.guidance.test_section8 import SECTION8  # rules.md s.8's cells
    assert set(TABLE) | set(SECTION8) | {("retracted", "any")} == set(rules.cells)


@pytest.mark.parametrize("situation", ["single-wnb", "repeat-wnb", "persistent-wnb"])
def test_lac_is_the_same_column_as_cpp(rules: Rules, situation: str) -> None:
    """rules.md 2: CPP = LAC."""
    signal, history = MAKES[situation]
    decision = run(rules, signal, history, {"lac"})
    assert decision is not None
    assert actions_of(decision) == TABLE[(situation, "cpp-lac")][0]


# ---------------------------------------------------------------------------- cross-cutting

@pytest.mark.parametrize("situation", ["single-wnb", "repeat-wnb", "persistent-wnb"])
@pytest.mark.parametrize("column", STATUSES)
def test_a_young_person_is_asked_about_not_written_to(
    rules: Rules, situation: str, column: str
) -> None:
    """rules.md 5: 16-17 get classify-attendance instead of send-wnb-letter."""
    signal, history = MAKES[situation]
    decision = run(rules, signal, history, STATUSES[column], band="young-person")
    assert decision is not None
    codes = [a.code for a in decision.actions]
    assert "classify-attendance" in codes
    assert "send-wnb-letter" not in codes
    expected = {a[0] for a in TABLE[(situation, column)][0]} - {"send-wnb-letter"}
    assert set(codes) == expected | {"classify-attendance"}


def test_a_child_under_16_gets_the_letter_and_no_classification(rules: Rules) -> None:
    signal, history = MAKES["repeat-wnb"]
    decision = run(rules, signal, history, set(), band="child")
    assert decision is not None
    codes = {a.code for a in decision.actions}
    assert "send-wnb-letter" in codes
    assert "classify-attendance" not in codes


@pytest.mark.parametrize("column", STATUSES)
@pytest.mark.parametrize("band", ["infant", "child", "young-person", "unknown"])
def test_over_engagement_never_sends_a_letter(rules: Rules, column: str, band: str) -> None:
    """rules.md 5: over-engagement: never send-wnb-letter (and the Flag is clinical)."""
    signal, history = MAKES["over-engagement"]
    decision = run(rules, signal, history, STATUSES[column], band=band)
    assert decision is not None
    assert decision.situation == "over-engagement"
    assert "send-wnb-letter" not in {a.code for a in decision.actions}
    assert decision.flag is not None
    assert decision.flag.category == "clinical"


def test_an_infants_first_no_access_visit_counts_as_repeat(rules: Rules) -> None:
    """rules.md 5, no-access visit row: an infant's first no-access visit counts as repeat."""
    decision = run(rules, "no-access-visit", [], {"vulnerable"}, band="infant")
    assert decision is not None
    assert (decision.situation, decision.column) == ("repeat-wnb", "vulnerable")
    assert actions_of(decision) == TABLE[("repeat-wnb", "vulnerable")][0]


@pytest.mark.parametrize(
    ("signal", "band", "statuses"),
    [("not-brought", "infant", {"vulnerable"}), ("no-access-visit", "child", set())],
    ids=["infant not brought", "older child no access"],
)
def test_other_first_misses_are_single(
    rules: Rules, signal: str, band: str, statuses: set[str]
) -> None:
    decision = run(rules, signal, [], statuses, band=band)
    assert decision is not None
    assert decision.situation == "single-wnb"


@pytest.mark.parametrize("column", ["none", "cin"])
def test_persistent_adds_a_neglect_referral_only_after_a_letter(rules: Rules, column: str) -> None:
    """rules.md 5, persistent/none: neglect-referral urgent 1wd when a letter was asked for."""
    letter = [earlier("not-brought", 60, asked=frozenset({"send-wnb-letter"}))]
    asked = run(rules, "not-brought", letter, STATUSES[column])
    assert asked is not None
    assert asked.situation == "persistent-wnb"
    assert ("neglect-referral", "urgent", "1wd") in actions_of(asked)

    signal, three = MAKES["persistent-wnb"]
    not_asked = run(rules, signal, three, STATUSES[column])
    assert not_asked is not None
    assert not_asked.situation == "persistent-wnb"
    assert "neglect-referral" not in {a.code for a in not_asked.actions}


def test_a_letter_asked_for_other_actions_does_not_count(rules: Rules) -> None:
    history = [earlier("not-brought", 60, asked=frozenset({"review-impact"})),
               earlier("not-brought", 30, asked=frozenset({"review-impact"}))]
    decision = run(rules, "not-brought", history, set())
    assert decision is not None
    assert "neglect-referral" not in {a.code for a in decision.actions}


@pytest.mark.parametrize("column", ["none", "cin", "vulnerable"])
def test_left_before_seen_twice_in_12_months_raises_a_low_flag(rules: Rules, column: str) -> None:
    """rules.md 5, left before seen: Flag PL if it happened before in 12 months."""
    twice = run(rules, "left-before-seen", [earlier("left-before-seen", 200)], STATUSES[column])
    assert twice is not None
    assert_flag(twice, (ANY, "PL"))
    long_ago = run(rules, "left-before-seen", [earlier("left-before-seen", 400)], STATUSES[column])
    assert long_ago is not None
    assert long_ago.flag is None


def test_an_infant_who_left_before_being_seen_gets_a_stat_follow_up(rules: Rules) -> None:
    """rules.md 5, left before seen / vulnerable: infant: same-day-follow-up stat."""
    decision = run(rules, "left-before-seen", [], {"vulnerable"}, band="infant")
    assert decision is not None
    assert actions_of(decision) == {("same-day-follow-up", "stat", "same-day"),
                                    ("inform-gp", "routine", "5wd")}


@pytest.mark.parametrize(
    ("signal", "history"),
    [
        ("attended", []),
        ("family-cancelled", [earlier("family-cancelled", 30)]),
        ("unscheduled-attendance", [earlier("unscheduled-attendance", 30)]),
    ],
    ids=["attended alone", "2nd cancellation", "2nd unscheduled attendance"],
)
def test_no_decision_below_a_pattern(rules: Rules, signal: str, history: list[HistoryItem]) -> None:
    """rules.md 1: attended is never acted on alone; patterns need their thresholds."""
    assert run(rules, signal, history, set()) is None


def _outcomes(*signals: str, situation_at: int = -1) -> list[HistoryItem]:
    """Earlier appointment outcomes, oldest first, 20 days apart, all inside the 6 months."""
    return [earlier(sig, 20 * (len(signals) - i), n=i,
                    situation="single-wnb+intermittent" if i == situation_at else "")
            for i, sig in enumerate(signals)]


def _all(rules: Rules, signal: str, history: list[HistoryItem],
         statuses: frozenset[str] = frozenset()) -> tuple[Decision, ...]:
    s = Situation(event(), signal, history, ChildStatus(statuses), "child")
    return decide_all(s, rules)


@pytest.mark.parametrize(
    ("signal", "history", "rows"),
    [
        ("not-brought", _outcomes("attended", "family-cancelled", "attended"),
         ["single-wnb", "intermittent"]),
        ("family-cancelled", _outcomes("attended", "not-brought", "attended"),
         ["intermittent"]),
        ("attended", _outcomes("not-brought", "attended", "family-cancelled"), ["intermittent"]),
        ("no-access-visit", _outcomes("attended", "family-cancelled", "attended"),
         ["single-wnb", "intermittent"]),
        ("not-brought", _outcomes("attended", "not-brought", "attended"),
         ["repeat-wnb", "intermittent"]),
        ("not-brought", _outcomes("family-cancelled", "attended", "attended"), ["single-wnb"]),
        ("attended", _outcomes("not-brought", "attended", "attended"), []),
        ("not-brought", _outcomes("attended", "not-brought", "attended", situation_at=1),
         ["repeat-wnb"]),
    ],
    ids=["A C A then not brought", "A N A then cancelled", "N A C then attended",
         "A C A then no access", "A N A then not brought (2nd in 12 months)",
         "no alternation", "attended with no alternation: nothing",
         "already raised in the window"],
)
def test_alternation_is_found_on_any_outcome_and_accompanies_the_wnb_ladder(
    rules: Rules, signal: str, history: list[HistoryItem], rows: list[str]
) -> None:
    """rules.md 3 (attended/not-brought/cancelled alternating) in either order. On a missed
    appointment the intermittent row comes beside the WNB row, never instead of it (every missed
    contact asks the impact question); an attendance alone never asks for anything."""
    assert [d.situation for d in _all(rules, signal, history)] == rows


def test_alternation_on_a_miss_asks_for_both_rows(rules: Rules) -> None:
    """single WNB / none: review-impact routine 2 wd; intermittent / none: Flag intermittent PL,
    curiosity-review routine 5 wd."""
    wnb, alternation = _all(rules, "not-brought", _outcomes("attended", "family-cancelled",
                                                            "attended"))
    assert actions_of(wnb) == {("review-impact", "routine", "2wd")}
    assert wnb.flag is None
    assert actions_of(alternation) == {("curiosity-review", "routine", "5wd")}
    assert_flag(alternation, ("disengagement-intermittent", "PL"))
    assert "alternate" in alternation.why
    assert decide(Situation(event(), "not-brought", _outcomes(
        "attended", "family-cancelled", "attended"), ChildStatus(), "child"), rules) == wnb


def test_an_attendance_completing_an_alternation_asks_for_the_intermittent_row(
    rules: Rules,
) -> None:
    (decision,) = _all(rules, "attended", _outcomes("not-brought", "attended", "family-cancelled"),
                       frozenset({"cin"}))
    assert (decision.situation, decision.column) == ("intermittent", "cin")
    assert actions_of(decision) == {("curiosity-review", "routine", "5wd"),
                                    ("inform-social-worker", "routine", "5wd")}


def test_due_dates_skip_the_christmas_bank_holidays(rules: Rules) -> None:
    """Thu 24 Dec 2026 + 1 wd = Tue 29 Dec (25th and 28th are bank holidays)."""
    christmas_eve = datetime(2026, 12, 24, 11, 0, tzinfo=UTC)
    decision = run(rules, "not-brought", [], {"cin"}, ev=event(at=christmas_eve))
    assert decision is not None
    due = {a.code: a.due.astimezone(LONDON).date() for a in decision.actions}
    assert due == {"inform-social-worker": date(2026, 12, 29),
                   "review-impact": date(2026, 12, 30)}


def test_an_unknown_age_is_treated_as_a_child_and_said(rules: Rules) -> None:
    """rules.md 1: no birth date: a child, and the Task says the age is unknown."""
    decision = run(rules, "not-brought", [], set(), band="unknown")
    assert decision is not None
    assert decision.situation == "single-wnb"
    assert "unknown" in decision.age_note
    known = run(rules, "not-brought", [], set(), band="child")
    assert known is not None
    assert known.age_note == ""


def test_the_decision_says_which_rule_fired_and_why(rules: Rules) -> None:
    decision = run(rules, "not-brought", [], {"cpp"})
    assert decision is not None
    assert decision.rules_version == rules.version
    assert decision.rule_id in decision.why
    assert rules.version in decision.why
    assert decision.event_date == date(2026, 3, 4)
    assert decision.evidence[0] == "Appointment/now"


def test_a_retraction_asks_for_a_review_and_sets_no_flag(rules: Rules) -> None:
    """rules.md 5, cross-cutting: a corrected event deletes nothing; review-impact is raised."""
    decision = decide_retraction(event(), "not-brought", rules)
    assert decision.situation == "retracted"
    assert decision.flag is None
    assert actions_of(decision) == {("review-impact", "routine", "2wd")}
    assert "retracted" in decision.why
