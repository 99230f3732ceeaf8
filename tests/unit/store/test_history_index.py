"""SQLite: a child's history is read from one covering index, on new and on older store files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fhir_engagement.model import HistoryItem
from fhir_engagement.store import SqliteStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HISTORY = ("SELECT event_key, signal, occurred, service, provider, situation, asked FROM signals "
           "WHERE child = ? AND retracted = 0 AND band != 'adult' ORDER BY occurred, event_key")


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                         "AND tbl_name = 'signals' AND sql IS NOT NULL")}


def _fill(store: SqliteStore) -> list[HistoryItem]:
    items = [HistoryItem(f"Appointment/a{n}", "not-brought" if n % 2 else "attended",
                         T0 + timedelta(days=(7 * n) % 30), "paeds", "RJ1", "", frozenset())
             for n in range(12)]
    for item in items:
        store.add_signal("c1", item, "child", "test")
    store.add_signal("c2", HistoryItem("Appointment/b", "attended", T0, None, None), "child", "t")
    store.commit()
    return sorted(items, key=lambda h: (h.occurred, h.event_key))


def test_the_history_read_uses_only_the_covering_index(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        plan = store._db.execute(f"EXPLAIN QUERY PLAN {HISTORY}", ("c1",)).fetchall()
    finally:
        store.close()
    assert [row[3] for row in plan] == [
        "SEARCH signals USING COVERING INDEX signals_history (child=?)"]


def test_an_older_store_gets_the_index_at_open_and_reads_the_same_history(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(str(path))
    expected = _fill(store)
    store.close()
    with sqlite3.connect(path) as db:  # the file as the version before made it
        db.execute("DROP INDEX signals_history")
        db.execute("CREATE INDEX signals_child ON signals (child, occurred)")
    assert _indexes(path) == {"signals_child"}
    store = SqliteStore(str(path))
    try:
        assert list(store.history_before("c1", T0 + timedelta(days=60))) == expected
    finally:
        store.close()
    assert _indexes(path) == {"signals_history"}
