"""10k events into a store that already holds a million, against the same into a fresh store.

The store keeps its indexes on disk (store/sqlite.py), so opening it and looking things up should
cost about the same at any size; the goal (issue 15) is at most 1.5x. A million events replayed
to fill the store would take longer than the measurement, so the earlier history is written
straight into the store's tables (``--held`` events: their signals, event aliases, outputs, a
child a tenth of them with two aliases each), as a year of replays would have left them, in one
transaction; then both stores get the same 10k-event export (replay_bench's generator,
``--events``) through ``replay`` in this process, timed from opening the store to its commit.

    .venv/bin/python bench/big_store.py                # 1,000,000 held, 10,000 new
    .venv/bin/python bench/big_store.py --held 100000  # quicker
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import open_store
from fhir_engagement.store.rows import to_text
from replay_bench import Generator  # the FHIR shapes, reused

SEED = 20_261_204


def fill(path: Path, held: int) -> None:
    """``held`` earlier events' rows, shaped as replay writes them (keys never met again)."""
    open_store(str(path)).close()  # the schema
    start = datetime(2024, 11, 1, tzinfo=UTC)
    db = sqlite3.connect(path)
    children = max(held // 10, 1)
    db.executemany("INSERT INTO children (child, birth_date) VALUES (?, ?)",
                   ((f"nhs:9{c:09d}", "2015-06-01") for c in range(children)))
    db.executemany("INSERT INTO aliases (alias, child) VALUES (?, ?)",
                   ((alias, f"nhs:9{c:09d}") for c in range(children)
                    for alias in (f"nhs:9{c:09d}", f"Patient/old-{c}")))
    db.executemany(
        "INSERT INTO signals (event_key, signal, child, occurred, service, provider, band, "
        "situation, asked, retracted, version, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        ((f"Appointment/old-{n}", "not-brought" if n % 10 == 0 else "attended",
          f"nhs:9{n % children:09d}", to_text(start + timedelta(minutes=n % 500_000)),
          "310025004", "Organization/RJ1", "school-age", "", "", "1", "old.ndjson")
         for n in range(held)))
    db.executemany("INSERT INTO event_aliases (alias, event_key) VALUES (?, ?)",
                   ((f"Appointment|OLD{n}|2025-01-01T10:00", f"Appointment/old-{n}")
                    for n in range(held)))
    db.execute("INSERT INTO runs (started, description) VALUES ('2025-01-01', 'old')")
    db.executemany("INSERT INTO outputs (id, kind, child, resource, run, seq) "
                   "VALUES (?, 'Task', ?, ?, 1, ?)",
                   ((f"old-task-{n}", f"nhs:9{n % children:09d}", b'{"resourceType":"Task"}', n)
                    for n in range(held // 4)))
    db.commit()
    db.close()


def timed_replay(data: Path, store_path: Path) -> float:
    engine = load_engine(Settings(store=str(store_path)))
    began = time.perf_counter()
    store = open_store(str(store_path))
    try:
        replay([data], engine, store, keep_bundle=False)
    finally:
        store.close()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=1_000_000, help="events already held")
    parser.add_argument("--events", type=int, default=10_000, help="new events replayed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="big-store-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        Generator(SEED, datetime(2026, 11, 1, tzinfo=UTC)).write(data, args.events,
                                                                 max(args.events // 10, 1))
        began = time.perf_counter()
        fill(work / "big.sqlite3", args.held)
        print(f"filled a store with {args.held:,} events in {time.perf_counter() - began:.0f}s "
              f"({(work / 'big.sqlite3').stat().st_size / 1e6:,.0f} MB)", file=sys.stderr)
        began = time.perf_counter()
        open_store(str(work / "big.sqlite3")).close()
        opened = time.perf_counter() - began
        timed_replay(data, work / "warm.sqlite3")  # first use fills caches: not for either side
        fresh = timed_replay(data, work / "fresh.sqlite3")
        big = timed_replay(data, work / "big.sqlite3")
        print(f"open the store holding {args.held:,}: {opened:.3f} s")
        print(f"{args.events:,} events into a fresh store: {fresh:.2f} s")
        print(f"{args.events:,} events into the store holding {args.held:,}: {big:.2f} s "
              f"({big / fresh:.2f}x; goal <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
