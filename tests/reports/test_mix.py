"""The pattern mix on the hand-counted data set (dataset.py's docstring has the working)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fhir_engagement.model import HistoryItem
from fhir_engagement.pipeline import Engine
from fhir_engagement.reports.mix import MixQuarter, mix_csv, mix_report, mix_text
from fhir_engagement.reports.period import Period
from fhir_engagement.store import SqliteStore
from tests.reports.conftest import LONDON

BY_HAND = (
    MixQuarter("2024-Q4", {"single-wnb": 1}, 1, {}, {"review-impact": 1}),
    MixQuarter(
        "2025-Q1", {"single-wnb": 1, "repeat-wnb": 1, "intermittent": 1}, 2,
        {"disengagement-repeat": 1, "disengagement-intermittent": 1},
        {"review-impact": 2, "send-wnb-letter": 1, "inform-gp": 1, "inform-health-visitor": 1,
         "curiosity-review": 1}),
    MixQuarter(
        "2025-Q2", {"single-wnb": 1, "repeat-wnb": 1}, 2, {"disengagement-repeat": 1},
        {"review-impact": 4, "send-wnb-letter": 1, "inform-gp": 1, "inform-health-visitor": 1,
         "contact-childrens-services": 1}),
)


def test_mix_per_quarter_is_the_hand_count(report_store: SqliteStore) -> None:
    assert mix_report(report_store, LONDON).quarters == BY_HAND


def test_patterns_in_the_table_order(report_store: SqliteStore) -> None:
    assert mix_report(report_store, LONDON).patterns() == ["single-wnb", "repeat-wnb",
                                                           "intermittent"]


def test_a_period_keeps_only_its_quarters(report_store: SqliteStore) -> None:
    report = mix_report(report_store, LONDON, Period(date(2025, 4, 1), date(2025, 6, 30)))
    assert report.quarters == BY_HAND[2:]


def test_csv_is_long_and_exact(report_store: SqliteStore) -> None:
    lines = mix_csv(mix_report(report_store, LONDON)).splitlines()
    assert lines[:4] == ["quarter,measure,code,count", "2024-Q4,children,any,1",
                         "2024-Q4,children,single-wnb,1", "2024-Q4,tasks,review-impact,1"]
    assert "2025-Q2,tasks,review-impact,4" in lines
    assert "2025-Q1,flags,disengagement-intermittent,1" in lines
    # header; 2024-Q4: any + 1 pattern + 1 task code; 2025-Q1: any + 3 + 2 Flags + 5 Tasks;
    # 2025-Q2: any + 2 + 1 Flag + 5 Tasks
    assert len(lines) == 1 + 3 + 11 + 9


def test_text_uses_the_table_words_and_the_code_displays(
    report_store: SqliteStore, engine: Engine
) -> None:
    text = mix_text(mix_report(report_store, LONDON), engine.systems)
    assert "2025-Q1: 2 children with a pattern" in text
    assert "2024-Q4: 1 child with a pattern" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["children", "repeat", "WNB", "1"] in rows
    assert ["Tasks", "curiosity-review", "(Review", "the", "cancellation", "pattern)", "1"] in rows


def test_a_signal_that_raised_two_rows_counts_the_child_under_both(store: SqliteStore) -> None:
    """A miss that completed an alternation raised its WNB row and the intermittent row."""
    at = datetime(2026, 2, 4, 10, tzinfo=UTC)
    store.add_signal("child-1", HistoryItem("Appointment/a4", "not-brought", at, None, None,
                                            "single-wnb+intermittent"), "child", "test", "")
    store.commit()
    (quarter,) = mix_report(store, LONDON).quarters
    assert quarter.children == {"single-wnb": 1, "intermittent": 1}
    assert quarter.children_any == 1
