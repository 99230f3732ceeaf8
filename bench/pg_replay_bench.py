"""Replay into PostgreSQL vs SQLite: events/s of one synthetic export (replay_bench.py's
generator, fixed seed) replayed into a fresh SQLite file and into a fresh PostgreSQL schema.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, database test, or --dsn):

    .venv/bin/python bench/pg_replay_bench.py --n 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_bench import SEED, Generator  # a sibling script, not a package


def _timed(location: str, data: Path) -> tuple[float, dict[str, int]]:
    engine = load_engine(Settings(store=location))
    store = open_store(location)
    try:
        began = time.perf_counter()
        replay([data], engine, store)
        seconds = time.perf_counter() - began
        counts = {kind: len(store.outputs_of_kind(kind)) for kind in ("Flag", "Task")}
    finally:
        store.close()
    return seconds, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="events (Appointments, Encounters)")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    schema = f"fe_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        export = Generator(SEED, datetime(2025, 11, 1, tzinfo=UTC)).write(data, args.n,
                                                                         max(args.n // 10, 1))
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        try:
            sqlite_s, sqlite_out = _timed(str(Path(tmp) / "state.sqlite3"), data)
            pg_s, pg_out = _timed(f"{args.dsn}?options=-csearch_path%3D{schema}", data)
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
    events = export.events
    print(f"{events:,} events; outputs SQLite {sqlite_out}, PostgreSQL {pg_out}"
          f"{'' if sqlite_out == pg_out else '  (DIFFER)'}")
    print(f"SQLite      {sqlite_s:7.1f} s  {events / sqlite_s:9,.0f} events/s")
    print(f"PostgreSQL  {pg_s:7.1f} s  {events / pg_s:9,.0f} events/s  "
          f"({pg_s / sqlite_s:.1f}x SQLite's time)")
    return 0 if sqlite_out == pg_out else 1


if __name__ == "__main__":
    raise SystemExit(main())
