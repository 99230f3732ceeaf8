"""Aggregate reports name no child: no NHS number, no patient id, in any form they are written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.reports.charts import mix_chart, rate_chart
from fhir_engagement.reports.dashboard import dashboard_html
from fhir_engagement.reports.mix import mix_csv, mix_report, mix_text
from fhir_engagement.reports.rates import rate_csv, rate_report, rate_text
from fhir_engagement.store import SqliteStore
from tests.reports.conftest import LONDON
from tests.reports.dataset import CHILDREN

NUMBERS = [n for n, _ in CHILDREN.values() if n]
# Every way a child is named in the input or the store: NHS numbers (plain and spaced), the
# Patient ids and the store's own child keys.
NEEDLES = [*NUMBERS, *(f"{n[:3]} {n[3:6]} {n[6:]}" for n in NUMBERS),
           *(f"rp-{name}" for name in CHILDREN), "nhs:", "Patient/"]


def _outputs(store: SqliteStore, engine: Engine) -> dict[str, str]:
    rates, mix = rate_report(store, LONDON), mix_report(store, LONDON)
    return {"rate text": rate_text(rates), "rate csv": rate_csv(rates),
            "rate svg": rate_chart(rates), "mix text": mix_text(mix, engine.systems),
            "mix csv": mix_csv(mix), "mix svg": mix_chart(mix),
            "dashboard": dashboard_html(store, LONDON, engine.systems)}


def test_the_store_does_hold_the_identifiers(report_store: SqliteStore) -> None:
    """So the checks below search for something that is there to leak."""
    for number in NUMBERS:
        assert report_store.child_of(f"nhs:{number}") is not None
    assert report_store.child_of("Patient/rp-c7") is not None


@pytest.mark.parametrize("needle", NEEDLES)
def test_no_aggregate_output_names_a_child(report_store: SqliteStore, engine: Engine,
                                           needle: str) -> None:
    leaks = [name for name, text in _outputs(report_store, engine).items() if needle in text]
    assert leaks == []


def test_the_command_line_reports_name_no_child(report_store_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    for kind in ("rate", "mix"):
        run = subprocess.run([sys.executable, "-m", "fhir_engagement", "report", kind, "--store",
                              str(report_store_file)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip()
        assert [n for n in NEEDLES if n in run.stdout + run.stderr] == []
