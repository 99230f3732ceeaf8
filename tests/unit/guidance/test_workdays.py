"""Due dates: working days (Mon-Fri, England bank holidays from calendar.toml) and same day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.guidance.rules import Rules
from fhir_engagement.guidance.workdays import add_working_days, due_at

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2026, 3, 4), 1, date(2026, 3, 5)),  # Wed + 1 = Thu
        (date(2026, 3, 4), 2, date(2026, 3, 6)),  # Wed + 2 = Fri
        (date(2026, 3, 4), 5, date(2026, 3, 11)),  # Wed + 5 = next Wed
        (date(2026, 3, 6), 1, date(2026, 3, 9)),  # Fri + 1 = Mon
        (date(2026, 3, 7), 1, date(2026, 3, 9)),  # Sat + 1 = Mon
        (date(2026, 3, 4), 0, date(2026, 3, 4)),
        # 25 Dec (Fri) and 28 Dec (Mon, substitute Boxing Day) 2026 are bank holidays
        (date(2026, 12, 24), 1, date(2026, 12, 29)),
        (date(2026, 12, 24), 2, date(2026, 12, 30)),
        # Good Friday 3 Apr and Easter Monday 6 Apr 2026
        (date(2026, 4, 2), 1, date(2026, 4, 7)),
        # 27 and 28 Dec 2027 are substitute days for a weekend Christmas
        (date(2027, 12, 24), 1, date(2027, 12, 29)),
        # 31 Dec 2026 (Thu) + 1: New Year's Day 2027 is a Friday holiday
        (date(2026, 12, 31), 1, date(2027, 1, 4)),
    ],
)
def test_add_working_days(rules: Rules, start: date, days: int, expected: date) -> None:
    assert add_working_days(start, days, rules.holidays) == expected


def test_without_holidays_only_weekends_are_skipped() -> None:
    assert add_working_days(date(2026, 12, 24), 1, frozenset()) == date(2026, 12, 25)


@pytest.mark.parametrize(
    ("event", "days", "expected"),
    [
        # same day (asap): the end of the event's local day, in GMT ...
        (datetime(2026, 3, 4, 10, 0, tzinfo=UTC), None, datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC)),
        # ... and in BST (one hour ahead of UTC)
        (datetime(2026, 7, 1, 10, 0, tzinfo=UTC), None, datetime(2026, 7, 1, 22, 59, 59, tzinfo=UTC)),
        # 23:30 UTC on 1 July is already 2 July in London
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), None,
         datetime(2026, 7, 2, 22, 59, 59, tzinfo=UTC)),
        # working days count from the local day
        (datetime(2026, 12, 24, 9, 0, tzinfo=UTC), 1,
         datetime(2026, 12, 29, 23, 59, 59, tzinfo=UTC)),
        (datetime(2026, 3, 6, 16, 0, tzinfo=UTC), 1, datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_due_at_is_the_end_of_the_local_due_day(
    rules: Rules, event: datetime, days: int | None, expected: datetime
) -> None:
    due = due_at(event, days, rules.holidays, LONDON)
    assert due == expected
    assert due.astimezone(LONDON).time().isoformat() == "23:59:59"


def test_the_calendar_is_london_with_the_2026_christmas_holidays(rules: Rules) -> None:
    assert rules.timezone == "Europe/London"
    assert {date(2026, 12, 25), date(2026, 12, 28)} <= rules.holidays
    assert date(2026, 12, 26) not in rules.holidays  # a Saturday; its substitute is the 28th
