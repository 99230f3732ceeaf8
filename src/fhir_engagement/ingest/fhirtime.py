"""FHIR date/dateTime/instant strings -> aware datetimes, tolerating what real files hold.

Real data has 7-digit fractions (cut to 6 here: ``datetime.fromisoformat`` on 3.11 takes at most
6), ``Z``, partial dates (``2012``, ``2012-05``) and local times with no offset.

Only years MIN_YEAR..MAX_YEAR are read. PAS exports hold ``0001-01-01`` (.NET DateTime.MinValue)
and ``9999-12-31`` placeholders; read as given, they overflow later stages (year 1 minus a
window). Such a date is no date: the parsers here answer None and ``date_problem`` says why, so
the caller can reject the record naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

__all__ = ["LONDON", "MAX_YEAR", "MIN_YEAR", "date_problem", "earliest_date", "latest_date",
           "parse_datetime"]

LONDON = ZoneInfo("Europe/London")
MIN_YEAR, MAX_YEAR = 1900, 2200
_LONGEST = 64  # longer than any FHIR dateTime: not worth a regular expression's time
_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")
_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-[0-9]{2})?)?$")
_YEAR = re.compile(r"^\s*([0-9]{4})")


def parse_datetime(value: str, tz: ZoneInfo = LONDON) -> datetime | None:
    """An aware UTC datetime, or None when the text is not a FHIR date/dateTime.

    A date without a time is taken as local midnight: an appointment's day is what matters.
    """
    text = value.strip()
    if not 4 <= len(text) <= _LONGEST or not text.isascii():
        return None
    if len(text) <= 10:
        day = earliest_date(text)
        return datetime.combine(day, time(), tz).astimezone(UTC) if day else None
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:  # most times have no fraction: no regular expression for them
        text = _FRACTION.sub(r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return None  # checked before the UTC shift, which overflows at year 1 and 9999
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def date_problem(value: str) -> str | None:
    """The reason to refuse a date whose year is out of range; None when the year is not the
    problem (the text may still be no date at all)."""
    year = _YEAR.match(value)
    if year and not MIN_YEAR <= int(year.group(1)) <= MAX_YEAR:
        return (f"year {year.group(1)} is outside {MIN_YEAR}-{MAX_YEAR}: a placeholder, not a "
                "date to act on")
    return None


def earliest_date(value: str) -> date | None:
    """The first day a partial FHIR date can mean (``2012`` -> 2012-01-01)."""
    return _partial(value, latest=False)


def latest_date(value: str) -> date | None:
    """The last day a partial FHIR date can mean (``2012-02`` -> 2012-02-29)."""
    return _partial(value, latest=True)


def _partial(value: str, latest: bool) -> date | None:
    text = value.strip()[:10]
    if not _DATE.match(text):
        return None
    parts = text.split("-")
    try:
        year = int(parts[0])
        if not MIN_YEAR <= year <= MAX_YEAR:
            return None
        month = int(parts[1]) if len(parts) > 1 else (12 if latest else 1)
        if len(parts) > 2:
            return date(year, month, int(parts[2]))
        if not latest:
            return date(year, month, 1)
        first_of_next = date(year + (month == 12), month % 12 + 1, 1)
        return date.fromordinal(first_of_next.toordinal() - 1)
    except (ValueError, IndexError):
        return None
