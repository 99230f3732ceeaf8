"""``report chronology --household``: a child's brothers and sisters, each read audited (s.8).

Scenario 28 (fixtures/scenarios/28-*/expected.toml, worked by hand): s28-a (9990028001) and s28-b
(9990028109) each have a RelatedPerson for the same mother; s28-c (9990028206) links to s28-a's
RelatedPerson by Patient.link; s28-d (9990028303) only has a contact of the same name, which never
joins children. So s28-a's household is s28-b and s28-c, and s28-d is in no one's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS, run_cli

CASE = next(SCENARIOS.glob("28-*"))




@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("household")
    path = folder / "state.sqlite3"
    run = run_cli("replay", str(CASE), "--out", str(folder / "bundle.json"), "--store", str(path),
               "--quiet", cwd=folder)
    assert run.returncode == 0, run.stderr
    return path


def _accesses(path: Path) -> list[tuple[str, str]]:
    db = SqliteStore(str(path), exclusive=False)
    try:
        return [(a.action, a.detail) for a in db.accesses()]
    finally:
        db.close()


def test_the_household_view_shows_each_brother_and_sister_and_audits_each(
    store: Path, tmp_path: Path
) -> None:
    run = run_cli("report", "chronology", "--patient", "9990028001", "--household", "--store",
               str(store), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Engagement chronology for NHS number 999 002 8001")
    assert run.stdout.count("--- A brother or sister") == 2
    assert "999 002 8109" in run.stdout
    assert "999 002 8206" in run.stdout
    assert "999 002 8303" not in run.stdout  # a same-name contact joins no one
    reads = [d for a, d in _accesses(store) if a == "chronology"]
    assert reads.count("text, household") == 1
    assert reads.count("text, household of another child") == 2


def test_without_household_only_the_named_child_is_shown(store: Path, tmp_path: Path) -> None:
    run = run_cli("report", "chronology", "--patient", "9990028001", "--store", str(store),
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "brother or sister" not in run.stdout
    assert "999 002 8109" not in run.stdout


def test_a_child_with_no_household_says_so(store: Path, tmp_path: Path) -> None:
    run = run_cli("report", "chronology", "--patient", "9990028303", "--household", "--store",
               str(store), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "No brother or sister is known to share a parent or carer." in run.stdout
