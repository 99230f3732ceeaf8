"""Shared test fixtures: paths, the loaded engine, a store on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import Engine, load_engine
from fhir_engagement.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCENARIOS = FIXTURES / "scenarios"
MAPPINGS = ROOT / "mappings"
REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def engine() -> Engine:
    return load_engine(Settings(mappings_dir=MAPPINGS))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.sqlite3"))
    yield s
    s.close()
