"""Due dates: N working days (Mon-Fri, holidays from calendar.toml) or the same calendar day."""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["add_working_days", "due_at"]

_END_OF_DAY = time(23, 59, 59)


def add_working_days(start: date, days: int, holidays: Container[date]) -> date:
    """The date ``days`` working days after ``start`` (a Friday + 1 is the Monday)."""
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in holidays:  # Mon..Fri
            remaining -= 1
    return current


def due_at(event: datetime, days: int | None, holidays: Container[date], tz: ZoneInfo) -> datetime:
    """End of the due day in local time, as UTC; ``days=None`` means the event's own day."""
    local_day = event.astimezone(tz).date()
    day = local_day if days is None else add_working_days(local_day, days, holidays)
    return datetime.combine(day, _END_OF_DAY, tz).astimezone(UTC)
