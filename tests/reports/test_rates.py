"""The not-brought rate on the hand-counted data set (dataset.py's docstring has the working)."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_engagement.errors import ReportError
from fhir_engagement.reports.period import Period
from fhir_engagement.reports.rates import RateRow, rate_csv, rate_report, rate_text
from fhir_engagement.store import SqliteStore
from tests.reports.conftest import LONDON
from tests.reports.dataset import A, B, C

# (provider, quarter, appointments, not brought, adults excluded), as counted in dataset.py
BY_HAND = [
    (C, "2024-Q4", 2, 1, 0),
    (A, "2025-Q1", 10, 2, 1),
    (B, "2025-Q1", 5, 0, 0),
    (A, "2025-Q2", 4, 1, 0),
    (B, "2025-Q2", 3, 1, 0),
    (B, "2025-Q3", 1, 0, 0),
]


def _numbers(rows: list[RateRow] | tuple[RateRow, ...]) -> list[tuple[str, str, int, int, int]]:
    return [(r.provider, r.quarter, r.appointments, r.not_brought, r.adults_excluded)
            for r in rows]


def test_rate_per_provider_per_quarter_is_the_hand_count(report_store: SqliteStore) -> None:
    report = rate_report(report_store, LONDON)
    assert _numbers(report.rows) == BY_HAND
    assert [r.rate for r in report.rows] == [0.5, 0.2, 0.0, 0.25, 1 / 3, 0.0]


def test_all_providers_per_quarter(report_store: SqliteStore) -> None:
    totals = rate_report(report_store, LONDON).totals()
    assert _numbers(totals) == [
        ("all providers", "2024-Q4", 2, 1, 0),
        ("all providers", "2025-Q1", 15, 2, 1),
        ("all providers", "2025-Q2", 7, 2, 0),
        ("all providers", "2025-Q3", 1, 0, 0),
    ]


def test_from_and_to_are_local_days(report_store: SqliteStore) -> None:
    # 2025-03-31 23:30Z is 1 April in London (in), 2025-06-30 23:30Z is 1 July (out).
    report = rate_report(report_store, LONDON, Period(date(2025, 4, 1), date(2025, 6, 30)))
    assert _numbers(report.rows) == [(A, "2025-Q2", 4, 1, 0), (B, "2025-Q2", 3, 1, 0)]
    first_of_april = rate_report(report_store, LONDON, Period(date(2025, 4, 1), date(2025, 4, 1)))
    assert _numbers(first_of_april.rows) == [(A, "2025-Q2", 1, 0, 0)]


def test_one_provider(report_store: SqliteStore) -> None:
    report = rate_report(report_store, LONDON, provider=B)
    assert _numbers(report.rows) == [r for r in BY_HAND if r[0] == B]
    assert _numbers(rate_report(report_store, LONDON, provider="Organization/nobody").rows) == []


def test_from_after_to_is_refused() -> None:
    with pytest.raises(ReportError, match="after"):
        Period(date(2025, 2, 1), date(2025, 1, 1))


def test_a_quarter_with_only_adults_has_no_rate() -> None:
    assert RateRow("Organization/x", "2025-Q1", 0, 0, 3).rate is None


def test_csv_is_exact(report_store: SqliteStore) -> None:
    assert rate_csv(rate_report(report_store, LONDON)) == (
        "provider,quarter,appointments,not_brought,rate,adults_excluded\n"
        "HealthcareService/clinic-c,2024-Q4,2,1,0.5000,0\n"
        "Organization/trust-a,2025-Q1,10,2,0.2000,1\n"
        "Organization/trust-b,2025-Q1,5,0,0.0000,0\n"
        "Organization/trust-a,2025-Q2,4,1,0.2500,0\n"
        "Organization/trust-b,2025-Q2,3,1,0.3333,0\n"
        "Organization/trust-b,2025-Q3,1,0,0.0000,0\n"
    )


def test_text_names_every_column_and_the_totals(report_store: SqliteStore) -> None:
    text = rate_text(rate_report(report_store, LONDON))
    lines = text.splitlines()
    assert lines[2].split() == ["provider", "quarter", "appointments", "not", "brought", "rate",
                                "adults", "excluded"]
    assert lines[4].split() == ["Organization/trust-a", "2025-Q1", "10", "2", "20.0%", "1"]
    assert ["all", "providers", "2025-Q2", "7", "2", "28.6%", "0"] in [ln.split() for ln in lines]


def test_an_empty_period_says_so(report_store: SqliteStore) -> None:
    report = rate_report(report_store, LONDON, Period(date(2030, 1, 1), None))
    assert report.rows == ()
    assert "no appointments with a known outcome" in rate_text(report)
