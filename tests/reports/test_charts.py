"""The SVG charts: well-formed, self-contained, one mark per figure, with the figures as tooltips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from fhir_engagement.reports.charts import mix_chart, rate_chart
from fhir_engagement.reports.mix import mix_report
from fhir_engagement.reports.period import Period
from fhir_engagement.reports.rates import rate_report
from fhir_engagement.store import SqliteStore
from tests.reports.conftest import LONDON

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _texts(root: ET.Element, tag: str) -> list[str]:
    return [el.findtext(f"{SVG}title") or "" for el in root.iter(f"{SVG}{tag}")]


def test_rate_chart_has_a_point_per_provider_quarter_and_a_line_per_run(
    report_store: SqliteStore,
) -> None:
    root = _parse(rate_chart(rate_report(report_store, LONDON)))
    assert root.get("id") == "rate-chart"
    assert root.findtext(f"{SVG}title") == "Not-brought rate per provider per quarter"
    assert sorted(_texts(root, "circle")) == sorted([
        "HealthcareService/clinic-c, 2024-Q4: 1 of 2 not brought (50.0%)",
        "Organization/trust-a, 2025-Q1: 2 of 10 not brought (20.0%)",
        "Organization/trust-b, 2025-Q1: 0 of 5 not brought (0.0%)",
        "Organization/trust-a, 2025-Q2: 1 of 4 not brought (25.0%)",
        "Organization/trust-b, 2025-Q2: 1 of 3 not brought (33.3%)",
        "Organization/trust-b, 2025-Q3: 0 of 1 not brought (0.0%)",
    ])
    # trust-a: Q1-Q2 (one line); trust-b: Q1-Q3 (one line); clinic-c: one quarter, a point only
    lines = [p.get("points", "").split() for p in root.iter(f"{SVG}polyline")]
    assert sorted(len(points) for points in lines) == [2, 3]
    labels = [t.text for t in root.iter(f"{SVG}text")]
    for quarter in ("2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3"):
        assert quarter in labels
    assert "1 in 10" in labels


def test_a_higher_rate_is_drawn_higher(report_store: SqliteStore) -> None:
    root = _parse(rate_chart(rate_report(report_store, LONDON)))
    y = {c.findtext(f"{SVG}title", "").split(":")[0]: float(c.get("cy", "0"))
         for c in root.iter(f"{SVG}circle")}
    # SVG y grows downwards: 50% above 33.3% above 20% above 0%
    assert (y["HealthcareService/clinic-c, 2024-Q4"] < y["Organization/trust-b, 2025-Q2"]
            < y["Organization/trust-a, 2025-Q1"] < y["Organization/trust-b, 2025-Q1"])


def test_mix_chart_has_a_bar_per_pattern_per_quarter(report_store: SqliteStore) -> None:
    root = _parse(mix_chart(mix_report(report_store, LONDON)))
    bars = [t for t in _texts(root, "rect") if t]  # the background rect has no title
    assert sorted(bars) == sorted([
        "2024-Q4, single WNB: 1 child",
        "2025-Q1, single WNB: 1 child", "2025-Q1, repeat WNB: 1 child",
        "2025-Q1, intermittent: 1 child",
        "2025-Q2, single WNB: 1 child", "2025-Q2, repeat WNB: 1 child",
    ])
    assert {"single WNB", "repeat WNB", "intermittent"} <= {t.text for t in root.iter(f"{SVG}text")}


def test_charts_load_nothing_and_run_nothing(report_store: SqliteStore) -> None:
    charts = [rate_chart(rate_report(report_store, LONDON)),
              mix_chart(mix_report(report_store, LONDON))]
    for svg in charts:
        root = _parse(svg)
        assert list(root.iter(f"{SVG}script")) == []
        assert list(root.iter(f"{SVG}image")) == []
        assert "href" not in svg
        assert svg.count("http") == 1  # the xmlns only


def test_an_empty_period_still_gives_a_chart(report_store: SqliteStore) -> None:
    period = Period(date(2030, 1, 1), None)
    rate = _parse(rate_chart(rate_report(report_store, LONDON, period)))
    mix = _parse(mix_chart(mix_report(report_store, LONDON, period)))
    assert "No appointments with a known outcome." in [t.text for t in rate.iter(f"{SVG}text")]
    assert "No child with a pattern in this period." in [t.text for t in mix.iter(f"{SVG}text")]
