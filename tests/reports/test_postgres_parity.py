"""The reports on PostgreSQL give exactly SQLite's answers (issue 14): one data set (dataset.py)
replayed into a SQLite file and into a PostgreSQL schema, every report compared.

The hand-counted figures themselves are checked on SQLite by test_rates.py and test_mix.py; here
the figures of one backend are the other's oracle, and the rate is also checked against the hand
count (dataset.py), so two equally wrong stores would not pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.reports.audit import Auditor
from fhir_engagement.reports.chronology import Chronology, Entry, open_chronology
from fhir_engagement.reports.mix import mix_csv, mix_report, mix_text
from fhir_engagement.reports.rates import rate_csv, rate_report, rate_text
from fhir_engagement.store import Store, open_store
from fhir_engagement.store.postgres import PostgresStore
from tests.conftest import without_decision_times
from tests.reports import dataset
from tests.reports.conftest import LONDON
from tests.reports.dataset import CHILDREN

KEY = bytes(range(32))


@pytest.fixture
def stores(tmp_path: Path, engine: Engine, pg_dsn: str) -> Iterator[tuple[Store, Store]]:
    """The data set replayed into SQLite and into PostgreSQL."""
    files = dataset.write(tmp_path / "input")
    sqlite, postgres = open_store(str(tmp_path / "state.sqlite3")), open_store(pg_dsn)
    try:
        assert isinstance(postgres, PostgresStore)
        for store in (sqlite, postgres):
            result = replay(files, engine, store)
            assert result.rejected == [], [f"{e.where}: {e.reason}" for e in result.rejected]
        yield sqlite, postgres
    finally:
        sqlite.close()
        postgres.close()


def test_the_rate_report_is_the_same_and_is_the_hand_count(stores: tuple[Store, Store]) -> None:
    sqlite, postgres = (rate_report(s, LONDON) for s in stores)
    assert postgres.rows == sqlite.rows
    assert postgres.totals() == sqlite.totals()
    assert rate_csv(postgres) == rate_csv(sqlite)
    assert rate_text(postgres) == rate_text(sqlite)
    # dataset.py's hand count, all providers: 2024-Q4 2/1; 2025-Q1 15/2; 2025-Q2 7/2; 2025-Q3 1/0
    assert [(r.quarter, r.appointments, r.not_brought) for r in postgres.totals()] == [
        ("2024-Q4", 2, 1), ("2025-Q1", 15, 2), ("2025-Q2", 7, 2), ("2025-Q3", 1, 0)]


def test_the_rate_report_of_one_provider_is_the_same(stores: tuple[Store, Store]) -> None:
    sqlite, postgres = (rate_report(s, LONDON, provider=dataset.B) for s in stores)
    assert postgres.rows == sqlite.rows
    assert [r.appointments for r in postgres.rows] == [5, 3, 1]  # B: Q1 5, Q2 3, Q3 1


def test_the_mix_report_is_the_same(stores: tuple[Store, Store], engine: Engine) -> None:
    sqlite, postgres = (mix_report(s, LONDON) for s in stores)
    assert postgres == sqlite
    assert mix_csv(postgres) == mix_csv(sqlite)
    assert mix_text(postgres, engine.systems) == mix_text(sqlite, engine.systems)
    assert postgres.quarters  # not two empty reports


def _without_clock(chron: Chronology) -> tuple[tuple[Entry, ...], tuple[object, ...]]:
    """Entries and Flags less what the clock decided (a Task's time is its authoredOn)."""
    entries = tuple(replace(e, at=e.at if e.kind != "task" else e.at.min) for e in chron.entries)
    flags = tuple(orjson.dumps(without_decision_times(f), option=orjson.OPT_SORT_KEYS)
                  for f in chron.flags)
    return entries, flags


def test_every_childs_chronology_is_the_same(stores: tuple[Store, Store], engine: Engine) -> None:
    shown = 0
    for number, _ in CHILDREN.values():
        if number is None:
            continue
        sqlite, postgres = (open_chronology(s, number, engine.systems, Auditor(KEY, "Dr Parity"))
                            for s in stores)
        assert (postgres.nhs_number, postgres.birth_date) == (sqlite.nhs_number, sqlite.birth_date)
        assert _without_clock(postgres) == _without_clock(sqlite)
        shown += len(postgres.entries)
    assert shown > 0
    sqlite_reads, postgres_reads = ([(a.who, a.action, a.subject) for a in s.accesses()]
                                    for s in stores)
    assert postgres_reads == sqlite_reads  # each read audited alike, under the same keyed hash


def test_the_outputs_are_the_same_resources(stores: tuple[Store, Store]) -> None:
    def outputs(store: Store) -> dict[str, bytes]:
        return {row.id: orjson.dumps(without_decision_times(orjson.loads(row.resource)),
                                     option=orjson.OPT_SORT_KEYS)
                for kind in ("Flag", "Task", "Provenance") for row in store.outputs_of_kind(kind)}

    sqlite, postgres = (outputs(s) for s in stores)
    assert postgres == sqlite
    assert any(key.startswith("fe-task") for key in postgres)
    sqlite_store, postgres_store = stores
    assert postgres_store.delivery_counts() == sqlite_store.delivery_counts()
