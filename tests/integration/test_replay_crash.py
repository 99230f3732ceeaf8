"""kill -9 during a replay, then a rerun: the Bundles written hold every decision exactly once.

The store owes each ``--out`` run a Bundle: outputs are claimed for one in the commit that keeps
them and confirmed once the file is in place, so no crash point loses a decision or writes it twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay, write_bundle
from fhir_engagement.store.sqlite import SqliteStore
from tests.conftest import SCENARIOS, without_decision_times

RANDOM_KILLS = 4  # attempts killed after a random delay
CLAIM_KILLS = 2  # attempts killed as soon as their Bundle is claimed (committed, not yet written)


def _start(store: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fhir_engagement", "replay", str(SCENARIOS), "--store", str(store),
         "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("FHIR_ENGAGEMENT_")})


def _finish(process: subprocess.Popen[bytes]) -> int:
    _, err = process.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return process.returncode


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)


def _claimed(store: Path) -> bool:
    """Whether a Bundle claim is committed and not yet confirmed (the window after the commit)."""
    if not store.exists():
        return False
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0.05) as db:
            return bool(db.execute("SELECT COUNT(*) FROM bundles WHERE written = 0").fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy: look again
        return False


def _kill_when_claimed(store: Path, out: Path) -> None:
    process = _start(store, out)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and not _claimed(store):
        time.sleep(0.001)
    _kill(process)


def _entries(outs: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """Every entry written, less its decision time: the rerun decides later than the reference."""
    found = []
    for out in outs:
        if out.exists():
            found += [(e["fullUrl"], without_decision_times(e["resource"]))
                      for e in json.loads(out.read_text())["entry"]]
    return found


def _assert_exactly_once(outs: list[Path], reference: Path, note: str) -> None:
    expected = dict(_entries([reference]))
    written = _entries(outs)
    twice = [u for u, n in Counter(u for u, _ in written).items() if n > 1]
    assert not twice, f"{note}: written twice: {twice}"
    assert dict(written) == expected, f"{note}: missing {sorted(set(expected) - dict(written).keys())}"


def test_kill_9_at_random_points_then_a_rerun_writes_every_decision_once(tmp_path: Path) -> None:
    reference = tmp_path / "reference.json"
    assert _finish(_start(tmp_path / "reference.sqlite3", reference)) == 0
    assert len(_entries([reference])) > 100  # the scenarios decide plenty

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store, outs = tmp_path / "s.sqlite3", []
    for attempt in range(RANDOM_KILLS + CLAIM_KILLS):
        outs.append(tmp_path / f"out-{attempt}.json")
        if attempt < RANDOM_KILLS:
            process = _start(store, outs[-1])
            time.sleep(rng.uniform(0.2, 3.0))
            _kill(process)
        else:
            _kill_when_claimed(store, outs[-1])
    outs.append(tmp_path / "rerun.json")
    assert _finish(_start(store, outs[-1])) == 0
    _assert_exactly_once(outs, reference, f"seed {seed}")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers


# -- the crash points, one at a time and certain to be hit ----------------------------------------
class Killed(BaseException):
    """Stands in for kill -9: nothing after it runs, nothing uncommitted survives."""


def _crashed_run(engine: Engine, store_file: Path, out: Path, at: str,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay that dies at ``at``: after the commit, mid-write, or after the file is in place."""
    store = SqliteStore(str(store_file))
    result = replay([SCENARIOS], engine, store, out=out)
    with monkeypatch.context() as patch:
        if at == "mid-write":
            patch.setattr(os, "replace", _raise_killed)
        elif at == "file in place":
            patch.setattr(SqliteStore, "bundle_written", _raise_killed)
        if at != "after commit":
            with pytest.raises(Killed):
                write_bundle(result, out, store)
    store.rollback()  # what the killed process had not committed is gone (and its lock)
    store.close()


def _raise_killed(*_args: object) -> None:
    raise Killed


def _rerun(engine: Engine, store_file: Path, out: Path, inputs: Path = SCENARIOS) -> None:
    store = SqliteStore(str(store_file))
    try:
        write_bundle(replay([inputs], engine, store, out=out), out, store)
    finally:
        store.close()


@pytest.mark.parametrize("at", ["after commit", "mid-write", "file in place"])
def test_each_crash_point_then_a_rerun_writes_every_decision_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str,
) -> None:
    reference = tmp_path / "reference.json"
    _rerun(engine, tmp_path / "reference.sqlite3", reference)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    _crashed_run(engine, tmp_path / "s.sqlite3", first, at, monkeypatch)
    assert first.exists() == (at == "file in place")
    _rerun(engine, tmp_path / "s.sqlite3", second)
    _assert_exactly_once([first, second], reference, at)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_bundle_is_replaced_whole_with_mode_0600(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    out.write_text("an older Bundle")
    out.chmod(0o644)
    _rerun(engine, tmp_path / "s.sqlite3", out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["resourceType"] == "Bundle"


def test_a_store_from_before_bundles_were_tracked_is_migrated_and_owes_nothing_old(
    engine: Engine, tmp_path: Path,
) -> None:
    """An existing file: runs without the bundle column. Its old outputs were written by whatever
    ran then; the first replay after the upgrade must not put them all in its Bundle."""
    store_file = tmp_path / "old.sqlite3"
    ladder = SCENARIOS / "07-persistent-wnb-ladder"
    store = SqliteStore(str(store_file))
    assert replay([ladder], engine, store).bundle["entry"]  # no --out: owes no Bundle
    store.close()
    with sqlite3.connect(store_file) as db:
        db.execute("ALTER TABLE runs DROP COLUMN bundle")
        db.execute("DROP TABLE bundles")
    out = tmp_path / "o.json"
    _rerun(engine, store_file, out, ladder)
    with sqlite3.connect(store_file) as db:
        assert "bundle" in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert json.loads(out.read_text())["entry"] == []
