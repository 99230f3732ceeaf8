"""FHIR date/dateTime parsing: the shapes real files hold, and garbage."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from fhir_engagement.ingest.fhirtime import earliest_date, latest_date, parse_datetime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-04T10:15:30.1234567+00:00", datetime(2026, 3, 4, 10, 15, 30, 123456, UTC)),
        ("2026-03-04T10:15:30.1234567Z", datetime(2026, 3, 4, 10, 15, 30, 123456, UTC)),
        ("2026-03-04T10:15:30Z", datetime(2026, 3, 4, 10, 15, 30, tzinfo=UTC)),
        ("2026-03-04T10:15:30+01:00", datetime(2026, 3, 4, 9, 15, 30, tzinfo=UTC)),
        # no offset: local (Europe/London) time; BST in July, GMT in March
        ("2026-07-01T10:00:00", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
        ("2026-03-04T10:00:00", datetime(2026, 3, 4, 10, 0, tzinfo=UTC)),
        # a date only is local midnight
        ("2026-07-01", datetime(2026, 6, 30, 23, 0, tzinfo=UTC)),
        ("2026-03-04", datetime(2026, 3, 4, 0, 0, tzinfo=UTC)),
        # partial dates are their first day
        ("2012", datetime(2012, 1, 1, tzinfo=UTC)),
        ("2012-02", datetime(2012, 2, 1, tzinfo=UTC)),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    "text", ["garbage", "", "20", "2026-13-01T00:00:00Z", "2026-02-30", "not-a-date-at-all"]
)
def test_garbage_is_none(text: str) -> None:
    assert parse_datetime(text) is None


@pytest.mark.parametrize(
    ("text", "earliest", "latest"),
    [
        ("2012", date(2012, 1, 1), date(2012, 12, 31)),
        ("2012-02", date(2012, 2, 1), date(2012, 2, 29)),
        ("2013-02", date(2013, 2, 1), date(2013, 2, 28)),
        ("2012-12", date(2012, 12, 1), date(2012, 12, 31)),
        ("2012-02-10", date(2012, 2, 10), date(2012, 2, 10)),
        ("2012-02-10T08:00:00Z", date(2012, 2, 10), date(2012, 2, 10)),
    ],
)
def test_partial_dates_earliest_and_latest(text: str, earliest: date, latest: date) -> None:
    """Patient.birthDate may be partial (codes.md): '2012' or '2012-05'."""
    assert earliest_date(text) == earliest
    assert latest_date(text) == latest


@pytest.mark.parametrize(
    "text",
    ["garbage", "12/02/2012", "2012-02-30", "2012-13", "2012-00"],
)
def test_partial_date_garbage_is_none(text: str) -> None:
    assert earliest_date(text) is None
    assert latest_date(text) is None


@pytest.mark.parametrize("text", ["20", "7", "201"])
def test_a_year_without_four_digits_is_not_a_date(text: str) -> None:
    """FHIR date needs a 4-digit year; anything shorter is unknown, not year 20."""
    assert latest_date(text) is None
