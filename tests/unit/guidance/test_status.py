"""The child's age band (rules.md 1) and known status and column (rules.md 2)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from fhir_engagement.guidance.rules import Rules
from fhir_engagement.guidance.status import age_band, age_in_years, child_status, column_of
from fhir_engagement.model import ChildStatus, StatusFact
from fhir_engagement.signals.mappings import Mappings

AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
SCT = "http://snomed.info/sct"
CPP = f"{SCT}|342191000000101"
CPP_ENDED = f"{SCT}|342891000000105"
LAC = f"{SCT}|764841000000100"
LAC_ENDED = f"{SCT}|764951000000107"
CIN = "http://read.info/readv2|13IS"


@pytest.mark.parametrize(
    ("years", "band"),
    [(None, "unknown"), (0, "infant"), (1, "child"), (15, "child"), (16, "young-person"),
     (17, "young-person"), (18, "adult"), (40, "adult")],
)
def test_age_band(rules: Rules, years: int | None, band: str) -> None:
    """rules.md 1: infant under 1; child 1-15; young-person 16-17; adults out of scope."""
    assert age_band(years, rules.patterns) == band


@pytest.mark.parametrize(
    ("birth", "on", "years"),
    [
        (date(2010, 3, 4), date(2026, 3, 4), 16),  # the 16th birthday itself
        (date(2010, 3, 5), date(2026, 3, 4), 15),  # the day before
        (date(2025, 6, 1), date(2026, 3, 4), 0),
        (date(2012, 2, 29), date(2026, 2, 28), 13),
        (None, date(2026, 3, 4), None),
    ],
)
def test_age_in_years(birth: date | None, on: date, years: int | None) -> None:
    assert age_in_years(birth, on) == years


def fact(
    code: str, start: datetime | None = None, end: datetime | None = None, *, active: bool = True,
    key: str = "Condition/c1",
) -> StatusFact:
    return StatusFact(key, "Patient/p1", frozenset({code}), start, end, active)


@pytest.mark.parametrize(
    ("facts", "band", "expected"),
    [
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC))], "child", {"cpp"}),
        ([fact(CPP)], "child", {"cpp"}),
        ([fact(LAC, datetime(2025, 1, 1, tzinfo=UTC))], "child", {"lac"}),
        ([fact(CIN, datetime(2025, 1, 1, tzinfo=UTC))], "child", {"cin"}),
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC), active=False)], "child", set()),
        # a period that has ended, or not yet begun, does not cover the event
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))],
         "child", set()),
        ([fact(CPP, datetime(2026, 3, 5, tzinfo=UTC))], "child", set()),
        # a 'no longer' code dated before the event ends the plan ...
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC)),
          fact(CPP_ENDED, datetime(2026, 1, 1, tzinfo=UTC), key="Condition/c2")], "child", set()),
        ([fact(LAC, datetime(2025, 1, 1, tzinfo=UTC)),
          fact(LAC_ENDED, datetime(2026, 1, 1, tzinfo=UTC), key="Condition/c2")], "child", set()),
        # ... but not one dated after it, nor one that ends a different status
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC)),
          fact(CPP_ENDED, datetime(2026, 6, 1, tzinfo=UTC), key="Condition/c2")], "child",
         {"cpp"}),
        ([fact(CPP, datetime(2025, 1, 1, tzinfo=UTC)),
          fact(LAC_ENDED, datetime(2026, 1, 1, tzinfo=UTC), key="Condition/c2")], "child",
         {"cpp"}),
        # a new plan after an ended one applies again
        ([fact(CPP, datetime(2024, 1, 1, tzinfo=UTC)),
          fact(CPP_ENDED, datetime(2025, 1, 1, tzinfo=UTC), key="Condition/c2"),
          fact(CPP, datetime(2026, 1, 1, tzinfo=UTC), key="Condition/c3")], "child", {"cpp"}),
        # under 1 is vulnerable (rules.md 2)
        ([], "infant", {"vulnerable"}),
        ([fact(CIN, datetime(2025, 1, 1, tzinfo=UTC))], "infant", {"cin", "vulnerable"}),
        ([], "child", set()),
    ],
    ids=["CPP active", "CPP without dates", "LAC", "CIN", "inactive", "expired period",
         "starts after the event", "CPP ended", "LAC ended", "ended after the event",
         "other status ended", "new plan after an ended one", "infant", "infant CIN", "none"],
)
def test_child_status(
    mappings: Mappings, facts: list[StatusFact], band: str, expected: set[str]
) -> None:
    """rules.md 2: active status Flags/Conditions whose period covers the event."""
    status = child_status(facts, AT, mappings.statuses, band)
    assert status.statuses == expected


def test_the_status_names_its_evidence(mappings: Mappings) -> None:
    status = child_status([fact(CPP, key="Flag/cpp-1"), fact(CIN, key="Condition/cin-1")], AT,
                          mappings.statuses, "child")
    assert set(status.evidence) == {"Flag/cpp-1", "Condition/cin-1"}


@pytest.mark.parametrize(
    ("statuses", "column"),
    [
        ({"cpp"}, "cpp-lac"),
        ({"lac"}, "cpp-lac"),
        ({"cpp", "lac", "cin", "vulnerable"}, "cpp-lac"),
        ({"lac", "vulnerable"}, "cpp-lac"),
        ({"cin"}, "cin"),
        ({"cin", "vulnerable"}, "cin"),
        ({"vulnerable"}, "vulnerable"),
        (set(), "none"),
    ],
)
def test_column_of_ranks_cpp_and_lac_over_cin_over_vulnerable(
    statuses: set[str], column: str
) -> None:
    """rules.md 2: rank CPP = LAC > CIN > vulnerable > none."""
    assert column_of(ChildStatus(frozenset(statuses))) == column
