"""``fhir-engagement report ...`` as a person runs it: a real process on a real store file."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson

from fhir_engagement.store import SqliteStore
from tests.reports.dataset import CHILDREN, UNKNOWN_NHS

C1 = CHILDREN["c1"][0] or ""


def _cli(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error", **extra}
    return subprocess.run([sys.executable, "-m", "fhir_engagement", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_rate_prints_the_table_and_writes_csv_and_svg(report_store_file: Path,
                                                      tmp_path: Path) -> None:
    run = _cli("report", "rate", "--store", str(report_store_file), "--csv",
               str(tmp_path / "rate.csv"), "--svg", str(tmp_path / "out" / "rate.svg"),
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()]
    assert ["Organization/trust-a", "2025-Q1", "10", "2", "20.0%", "1"] in rows
    assert ["Organization/trust-b", "2025-Q2", "3", "1", "33.3%", "0"] in rows
    assert (tmp_path / "rate.csv").read_text().splitlines()[2] == \
        "Organization/trust-a,2025-Q1,10,2,0.2000,1"
    assert ET.parse(tmp_path / "out" / "rate.svg").getroot().get("id") == "rate-chart"
    assert f"wrote {tmp_path / 'rate.csv'}" in run.stderr


def test_rate_for_one_provider_and_a_period(report_store_file: Path, tmp_path: Path) -> None:
    run = _cli("report", "rate", "--store", str(report_store_file), "--provider",
               "Organization/trust-b", "--from", "2025-04-01", "--to", "2025-09-30", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("Organization")]
    assert rows == [["Organization/trust-b", "2025-Q2", "3", "1", "33.3%", "0"],
                    ["Organization/trust-b", "2025-Q3", "1", "0", "0.0%", "0"]]


def test_mix_prints_and_writes(report_store_file: Path, tmp_path: Path) -> None:
    run = _cli("report", "mix", "--store", str(report_store_file), "--csv",
               str(tmp_path / "mix.csv"), "--svg", str(tmp_path / "mix.svg"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "2025-Q1: 2 children with a pattern" in run.stdout
    assert "2025-Q2,tasks,review-impact,4" in (tmp_path / "mix.csv").read_text().splitlines()
    assert ET.parse(tmp_path / "mix.svg").getroot().get("id") == "mix-chart"


def test_chronology_prints_writes_the_bundle_and_is_audited(store_copy: Path,
                                                           tmp_path: Path) -> None:
    run = _cli("report", "chronology", "--patient", C1, "--store", str(store_copy),
               "--bundle", str(tmp_path / "c1.json"), cwd=tmp_path,
               FHIR_ENGAGEMENT_OPERATOR="Named Nurse")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Engagement chronology for NHS number")
    assert run.stdout.count("Was not brought") == 2
    bundle = orjson.loads((tmp_path / "c1.json").read_bytes())
    assert (bundle["type"], bundle["entry"][0]["resource"]["resourceType"]) == ("collection",
                                                                               "List")
    store = SqliteStore(str(store_copy))
    try:
        assert [(a.who, a.action, a.detail) for a in store.accesses()] == [
            (f"Named Nurse (OS user {getpass.getuser()})", "chronology", "text and bundle")]
    finally:
        store.close()


def test_unknown_patient_exits_2_with_a_message_and_no_number(store_copy: Path,
                                                             tmp_path: Path) -> None:
    run = _cli("report", "chronology", "--patient", UNKNOWN_NHS, "--store", str(store_copy),
               cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == ("fhir-engagement: report error: no child with this NHS number is "
                          "known to the store\n")
    assert run.stdout == ""


def test_an_invalid_nhs_number_exits_2(store_copy: Path, tmp_path: Path) -> None:
    run = _cli("report", "chronology", "--patient", "12345", "--store", str(store_copy),
               cwd=tmp_path)
    assert run.returncode == 2
    assert "not a valid NHS number" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_chronology_needs_a_patient(store_copy: Path, tmp_path: Path) -> None:
    run = _cli("report", "chronology", "--store", str(store_copy), cwd=tmp_path)
    assert run.returncode == 2
    assert "the following arguments are required: --patient" in run.stderr


def test_bad_dates_exit_2(report_store_file: Path, tmp_path: Path) -> None:
    bad = _cli("report", "rate", "--store", str(report_store_file), "--from", "2025-13-01",
               cwd=tmp_path)
    assert bad.returncode == 2
    assert "not a date (YYYY-MM-DD): '2025-13-01'" in bad.stderr
    backwards = _cli("report", "mix", "--store", str(report_store_file), "--from", "2025-06-01",
                     "--to", "2025-01-01", cwd=tmp_path)
    assert backwards.returncode == 2
    assert backwards.stderr == ("fhir-engagement: report error: --from 2025-06-01 is after "
                                "--to 2025-01-01\n")


def test_a_missing_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    run = _cli("report", "rate", "--store", str(missing), cwd=tmp_path)
    assert run.returncode == 2
    assert f"no store at {missing}" in run.stderr
    assert not missing.exists()


def test_an_unwritable_output_exits_2(report_store_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = _cli("report", "rate", "--store", str(report_store_file), "--csv",
               str(blocker / "rate.csv"), cwd=tmp_path)
    assert run.returncode == 2
    assert f"cannot write {blocker / 'rate.csv'}" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_requester_is_not_free_text(store_copy: Path, tmp_path: Path) -> None:
    """``--requested-by`` is gone: anyone could type any name there."""
    run = _cli("report", "chronology", "--patient", C1, "--store", str(store_copy),
               "--requested-by", "Someone Else", cwd=tmp_path)
    assert run.returncode == 2
    assert "unrecognized arguments: --requested-by" in run.stderr
    store = SqliteStore(str(store_copy))
    try:
        assert store.accesses() == []
    finally:
        store.close()
