"""SQLite's WAL checkpoints made off the writer's connection (store/wal.py), on a real file.

What is in the database file itself is read from a copy of that file alone (no ``-wal``): the
rows a checkpoint has copied there, and only those.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from fhir_engagement.store import SqliteStore, wal

RAW = b"x" * 8192  # two pages a row: 300 commits pass SQLite's default 1,000-page checkpoint


def _rows_in_file_alone(location: str, tmp_path: Path) -> int:
    alone = tmp_path / "alone" / "copy.sqlite3"
    alone.parent.mkdir(exist_ok=True)
    shutil.copyfile(location, alone)
    with sqlite3.connect(alone) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbox'").fetchone() is None:
            return 0  # not even the schema is in the file yet
        return int(db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])


def _keep(store: SqliteStore, count: int) -> None:
    for i in range(count):
        assert store.inbox_put("fhir", "push", f"k{i}", "test", RAW)
        store.commit()


def test_by_default_the_writers_own_commits_checkpoint(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    _keep(store, 300)
    assert _rows_in_file_alone(store.location, tmp_path) > 0  # some commit checkpointed
    store.close()


def test_deferred_commits_leave_the_wal_to_the_checkpoint_which_copies_every_row(
    tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    store.defer_checkpoints(wal.BACKSTOP_PAGES)
    _keep(store, 300)
    assert _rows_in_file_alone(store.location, tmp_path) == 0  # kept in the WAL only
    assert wal.checkpoint(store.location) > 600  # frames copied into the file
    assert _rows_in_file_alone(store.location, tmp_path) == 300
    _keep(store, 0)
    assert store.inbox_depth()[0] == 300  # the writer goes on reading and writing
    store.close()


def test_the_backstop_still_checkpoints_when_no_thread_does(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    store.defer_checkpoints(200)  # pages: passed within the 300 commits
    _keep(store, 300)
    assert _rows_in_file_alone(store.location, tmp_path) > 0
    store.close()


def test_a_memory_store_has_no_wal_to_defer() -> None:
    store = SqliteStore(":memory:")
    store.defer_checkpoints(wal.BACKSTOP_PAGES)  # nothing to do, and no error
    _keep(store, 3)
    assert store.inbox_depth()[0] == 3
    store.close()
