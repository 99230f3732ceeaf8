"""Decisions per second written end to end to a real FHIR server (sekmet-fhir, loopback).

Replays the synthetic export of bench/replay_bench.py (``--n`` events) into a fresh store, then
times the outbox delivering every decision (one transaction Bundle each: Flag, Tasks,
Provenance) to sekmet-fhir started here from the project's ``.sekmet`` venv (``.ci/run`` makes
it). Reported: decisions and resources written per second.

Run from the repository root:  .venv/bin/python bench/writeback_bench.py --n 5000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fhir_engagement.config import Settings
from fhir_engagement.live.outbox import deliver_pending
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import open_store
from replay_bench import Generator

SEKMET = Path(__file__).resolve().parents[1] / ".sekmet" / "bin" / "sekmet"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sekmet(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    if not SEKMET.exists():
        raise SystemExit(f"{SEKMET} is missing: run .ci/run once (it installs sekmet-fhir)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    (work / "sekmet.yaml").write_text(
        f"simulator: {{enabled: false}}\nhost: 127.0.0.1\nport: {port}\n"
        f"data_dir: {work / 'data'}\nbase_url: {base}\nlog_inbound: false\n")
    server = subprocess.Popen([str(SEKMET), "serve", "-c", str(work / "sekmet.yaml"), "--host",
                               "127.0.0.1", "--port", str(port)], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):  # bounded: 20 s
        try:
            with urllib.request.urlopen(f"{base}/metadata", timeout=1):
                return server, base
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("sekmet-fhir did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="synthetic events (default 5,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data-in").mkdir()
        Generator(7, datetime(2026, 11, 1, tzinfo=UTC)).write(work / "data-in", args.n,
                                                               max(args.n // 10, 1))
        server, base = _start_sekmet(work)
        try:
            settings = Settings(store=str(work / "s.sqlite3"), fhir_base=base,
                                deliver_timeout=600)
            store = open_store(settings.store)
            replay([work / "data-in"], load_engine(settings), store)
            decisions = store.delivery_counts().get("pending", 0)
            began = time.perf_counter()
            report = asyncio.run(deliver_pending(store, settings))
            elapsed = time.perf_counter() - began
            resources = store._db.execute(
                "SELECT COUNT(*) FROM delivery_items").fetchone()[0]
            store.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.n:,} events -> {decisions:,} decisions ({resources:,} resources): "
          f"{report.delivered:,} written in {elapsed:.2f} s = {report.delivered / elapsed:,.0f} "
          f"decisions/s, {resources / elapsed:,.0f} resources/s; refused {report.dead}")


if __name__ == "__main__":
    main()
