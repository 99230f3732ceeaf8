"""Report periods: local calendar days in, UTC instants out, and the quarter an instant falls in.

Quarters are the partnership's calendar quarters in the rules' time zone (Europe/London): an
appointment at 23:30 UTC on 31 March is on 1 April in London, so it counts in Q2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fhir_engagement.errors import ReportError

__all__ = ["Period", "quarter_of"]


@dataclass(frozen=True, slots=True)
class Period:
    """Local calendar days, both ends included; ``None`` leaves that end open."""

    first: date | None = None
    last: date | None = None

    def __post_init__(self) -> None:
        if self.first and self.last and self.first > self.last:
            raise ReportError(f"--from {self.first} is after --to {self.last}")

    def bounds(self, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """``[start, end)`` in UTC: from local midnight of the first day to that after the last."""
        start = _midnight(self.first, tz) if self.first else None
        end = _midnight(self.last + timedelta(days=1), tz) if self.last else None
        return start, end

    def contains(self, moment: datetime, tz: ZoneInfo) -> bool:
        day = moment.astimezone(tz).date()
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)

    def describe(self) -> str:
        if not self.first and not self.last:
            return "all dates"
        return f"from {self.first or 'the start'} to {self.last or 'the end'}"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


def quarter_of(moment: datetime, tz: ZoneInfo) -> str:
    """``2025-Q2``: the local calendar quarter; the label sorts in time order."""
    local = moment.astimezone(tz)
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"
