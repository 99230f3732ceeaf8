"""Due dates: N working days (Mon-Fri, less one UK nation's bank holidays and local closures).

Bank holidays come from the ``holidays`` package for the nation named in calendar.toml, built once
into a ``WorkingCalendar`` when the rules load: replay computes a due date per action on its hot
path, so a call here is a set lookup per day, never a holiday computation.

The calendar knows a bounded range of years and refuses to count outside it. ``holidays`` computes
UK bank holidays only for ``UnitedKingdom.start_year`` to ``end_year`` (1872-2100 today); for any
other year it silently returns *no* holidays, so a due date there would skip Christmas without a
word. We take the package's own range (so an upgrade that widens it widens ours) and raise
``CalendarRangeError`` for a count that starts or ends outside it. Within the range, future years
are computed from the statutory rules; a one-off bank holiday proclaimed later (a coronation, say)
is known only once the package is upgraded, so a trust lists it as a local closure until then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

from fhir_engagement.errors import CalendarRangeError

__all__ = ["NATIONS", "WorkingCalendar", "add_working_days", "due_at", "uk_calendar"]

_END_OF_DAY = time(23, 59, 59)
_SATURDAY = 5

# calendar.toml's nation -> the package's UK subdivision. The names are GOV.UK's bank-holiday
# divisions. England and Wales share one list (the package's "ENG" and "WLS" are the same days).
NATIONS = MappingProxyType({
    "england-and-wales": "ENG",
    "scotland": "SCT",
    "northern-ireland": "NIR",
})


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """One nation's weekdays that are not working days, and the first and last day it knows."""

    nation: str
    closed: frozenset[date] = field(repr=False)  # ~1,500 dates: too many for a repr
    first: date
    last: date

    def __contains__(self, day: object) -> bool:
        """``day in calendar``: a closed weekday (the check command and tests ask this way)."""
        return day in self.closed

    def __len__(self) -> int:
        """How many closed weekdays it knows, for the check command's summary."""
        return len(self.closed)

    def knows(self, day: date) -> bool:
        """True when ``day`` is within the years whose bank holidays are known."""
        return self.first <= day <= self.last


def uk_calendar(nation: str, closures: Iterable[date] = ()) -> WorkingCalendar:
    """Every weekday bank holiday of ``nation`` (a key of NATIONS) over the package's years, plus
    the trust's own ``closures``. Weekend holidays are left out: their substitute days are in."""
    first, last = holidays.UnitedKingdom.start_year, holidays.UnitedKingdom.end_year
    bank = holidays.UnitedKingdom(subdiv=NATIONS[nation], years=range(first, last + 1))
    closed = frozenset(d for d in (*bank, *closures) if d.weekday() < _SATURDAY)
    return WorkingCalendar(nation, closed, date(first, 1, 1), date(last, 12, 31))


def add_working_days(start: date, days: int, calendar: WorkingCalendar) -> date:
    """The date ``days`` working days after ``start`` (a Friday + 1 is the Monday).

    Raises:
        CalendarRangeError: ``start`` or the result is outside the years the calendar knows; a
            date counted there would ignore bank holidays, so none is given.
    """
    if not calendar.knows(start):
        raise _outside(start, days, calendar)
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < _SATURDAY and current not in calendar.closed:
            remaining -= 1
    if not calendar.knows(current):  # both ends inside: every day counted was inside
        raise _outside(start, days, calendar)
    return current


def _outside(start: date, days: int, calendar: WorkingCalendar) -> CalendarRangeError:
    return CalendarRangeError(
        f"due date {days} working days after {start.isoformat()}",
        f"outside the working-day calendar ({calendar.first.year}-{calendar.last.year}, the years "
        "the holidays package knows UK bank holidays for); no due date is guessed",
    )


def due_at(event: datetime, days: int | None, calendar: WorkingCalendar, tz: ZoneInfo) -> datetime:
    """End of the due day in local time, as UTC; ``days=None`` means the event's own day.

    Raises:
        CalendarRangeError: a working-day count outside the calendar's years (see add_working_days).
    """
    local_day = event.astimezone(tz).date()
    day = local_day if days is None else add_working_days(local_day, days, calendar)
    return datetime.combine(day, _END_OF_DAY, tz).astimezone(UTC)
