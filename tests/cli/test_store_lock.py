"""One writer per store: a second process is refused with a clear message and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fhir_engagement.errors import StoreLockedError
from fhir_engagement.store import SqliteStore, open_store
from tests.conftest import ROOT


def test_a_second_writer_is_refused_a_reader_is_not_and_the_lock_ends_with_the_store(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "one.sqlite3")
    first = SqliteStore(path)
    with pytest.raises(StoreLockedError, match="in use by pid"):
        SqliteStore(path)
    reader = open_store(path, exclusive=False)  # reports read beside the writer
    reader.close()
    first.close()
    SqliteStore(path).close()  # free again once the writer closed


def test_replay_on_a_store_serve_holds_exits_2_with_a_message(tmp_path: Path) -> None:
    path = str(tmp_path / "held.sqlite3")
    holder = SqliteStore(path)  # stands for a running serve
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fhir_engagement", "replay", str(ROOT / "fixtures" / "scenarios"
                                                                    / "01-single-wnb-no-status"),
             "--store", path, "--out", str(tmp_path / "b.json"), "--quiet"],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        holder.close()
    assert done.returncode == 2
    assert "is in use by pid" in done.stderr
    assert "one process writes a store at a time" in done.stderr
    assert "Traceback" not in done.stderr
