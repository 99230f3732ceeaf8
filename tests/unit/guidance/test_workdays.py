"""Due dates: working days (Mon-Fri, less a UK nation's bank holidays and local closures), same day.

Expected dates are from GOV.UK's bank-holiday lists, worked by hand, not read from the package.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.errors import CalendarRangeError, RecordError
from fhir_engagement.guidance.rules import Rules
from fhir_engagement.guidance.workdays import (
    WorkingCalendar,
    add_working_days,
    due_at,
    uk_calendar,
)

LONDON = ZoneInfo("Europe/London")
ENGLAND = uk_calendar("england-and-wales")
SCOTLAND = uk_calendar("scotland")
NORTHERN_IRELAND = uk_calendar("northern-ireland")


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
        # Good Friday 26 Mar and Easter Monday 29 Mar 2027
        (date(2027, 3, 25), 1, date(2027, 3, 30)),
        # 27 and 28 Dec 2027 are substitute days for a weekend Christmas
        (date(2027, 12, 24), 1, date(2027, 12, 29)),
        # 31 Dec 2026 (Thu) + 1: New Year's Day 2027 is a Friday holiday
        (date(2026, 12, 31), 1, date(2027, 1, 4)),
        # beyond the old hand-kept list (it ended in 2027): Christmas Day (Wed) and Boxing Day
        # (Thu) 2030, and the substitute Monday for Christmas Day 2032 (a Saturday)
        (date(2030, 12, 24), 1, date(2030, 12, 27)),
        (date(2032, 12, 24), 1, date(2032, 12, 29)),
    ],
)
def test_add_working_days_in_england(rules: Rules, start: date, days: int, expected: date) -> None:
    assert add_working_days(start, days, rules.holidays) == expected


@pytest.mark.parametrize(
    ("calendar", "expected"),
    [
        (ENGLAND, date(2026, 1, 2)),  # only 1 January is a holiday
        (NORTHERN_IRELAND, date(2026, 1, 2)),
        (SCOTLAND, date(2026, 1, 5)),  # 2 January (a Friday in 2026) is a holiday too
    ],
)
def test_the_second_of_january_is_a_holiday_only_in_scotland(
    calendar: WorkingCalendar, expected: date
) -> None:
    assert add_working_days(date(2025, 12, 31), 1, calendar) == expected


def test_saint_patricks_day_is_a_holiday_only_in_northern_ireland() -> None:
    monday = date(2026, 3, 16)  # 17 March 2026 is a Tuesday
    assert add_working_days(monday, 1, NORTHERN_IRELAND) == date(2026, 3, 18)
    assert add_working_days(monday, 1, ENGLAND) == date(2026, 3, 17)


def test_easter_monday_is_a_working_day_in_scotland() -> None:
    assert add_working_days(date(2027, 3, 25), 1, SCOTLAND) == date(2027, 3, 29)


def test_a_local_closure_is_skipped() -> None:
    calendar = uk_calendar("england-and-wales", [date(2026, 12, 24)])
    # Wed 23 Dec 2026 + 1: the 24th is the trust's closure, then Christmas, a weekend, 28th
    assert add_working_days(date(2026, 12, 23), 1, calendar) == date(2026, 12, 29)
    assert add_working_days(date(2026, 12, 23), 1, ENGLAND) == date(2026, 12, 24)


def test_without_closed_days_only_weekends_are_skipped() -> None:
    calendar = WorkingCalendar("none", frozenset(), ENGLAND.first, ENGLAND.last)
    assert add_working_days(date(2026, 12, 24), 1, calendar) == date(2026, 12, 25)


@pytest.mark.parametrize(
    ("start", "days"),
    [
        (date(2100, 12, 31), 1),  # would end in 2101: the package gives no holidays there
        (date(2100, 12, 29), 5),
        (date(2101, 1, 5), 0),
        (date(1871, 12, 29), 1),  # starts before the Bank Holidays Act 1871 took effect
        (date(9999, 12, 31), 1),  # no overflow: refused before counting
    ],
)
def test_a_count_outside_the_known_years_is_refused(start: date, days: int) -> None:
    with pytest.raises(CalendarRangeError, match=r"outside the working-day calendar \(1872-2100") \
            as caught:
        add_working_days(start, days, ENGLAND)
    assert caught.value.where == f"due date {days} working days after {start.isoformat()}"
    assert isinstance(caught.value, RecordError)  # so the pipeline dead-letters the event


def test_the_last_known_days_still_count() -> None:
    assert add_working_days(date(2100, 12, 29), 2, ENGLAND) == date(2100, 12, 31)  # Wed + 2


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


def test_due_at_refuses_working_days_outside_the_calendar(rules: Rules) -> None:
    late = datetime(2101, 3, 4, 10, 0, tzinfo=UTC)
    with pytest.raises(CalendarRangeError):
        due_at(late, 2, rules.holidays, LONDON)
    # the same day needs no calendar: it is the event's own day wherever it falls
    assert due_at(late, None, rules.holidays, LONDON) == datetime(2101, 3, 4, 23, 59, 59, tzinfo=UTC)


def test_the_shipped_calendar_is_london_and_england_and_wales(rules: Rules) -> None:
    assert rules.timezone == "Europe/London"
    assert rules.holidays.nation == "england-and-wales"
    assert date(2026, 12, 25) in rules.holidays
    assert date(2026, 12, 28) in rules.holidays
    assert date(2026, 12, 26) not in rules.holidays  # a Saturday; its substitute is the 28th
    assert (rules.holidays.first, rules.holidays.last) == (date(1872, 1, 1), date(2100, 12, 31))
