"""The report data set (dataset.py), replayed once into a real SQLite file store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.reports import dataset

LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="session")
def report_store_file(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Path:
    """The replayed store, read-only for the tests that share it."""
    folder = tmp_path_factory.mktemp("report-data")
    files = dataset.write(folder / "input")
    path = folder / "state.sqlite3"
    store = SqliteStore(str(path))
    try:
        result = replay(files, engine, store)
    finally:
        store.close()
    assert result.rejected == [], [f"{e.where}: {e.reason}" for e in result.rejected]
    return path


@pytest.fixture
def report_store(report_store_file: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(report_store_file))
    yield s
    s.close()


@pytest.fixture
def store_copy(report_store_file: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that write (the audit of a chronology read)."""
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(report_store_file, copy)
    return copy
