"""MLLP ACK latency while eight people keep reloading /dashboard (issue 10; goal: p99 < 50 ms).

The page runs every report query over the store (about a second on 100,000 appointments).
Built on the event loop, it held the acknowledgements for as long: eight dashboards raised the
ACK p99 from 0.04 s to 4.8 s. Now it is built on a thread of its own and kept for
``dashboard_cache_seconds``.

* a store filled by replaying ``--n`` synthetic appointments (report_bench.py's generator);
* ``fhir-engagement serve --mllp-port`` on it, in its own process;
* one MLLP sender (v2_bench.py's message mix) sending each message when the previous one is
  ACKed, first alone, then while ``--clients`` clients load /dashboard in a loop, once with the
  cache (the default 30 s) and once with ``dashboard_cache_seconds = 0`` (every request builds the
  page, off the loop: the worst case the thread alone must carry).

Run from the repository root:  .venv/bin/python bench/dashboard_bench.py --n 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import load_engine
from fhir_engagement.replay import replay
from fhir_engagement.store import open_store
from report_bench import write_export
from v2_bench import END, START, _connect, _free_port, _message, _read_ack


def _fill(folder: Path, n: int) -> Path:
    data = folder / "data"
    data.mkdir()
    write_export(data, n, n * 3 // 10, max(n // 10, 1), 7)
    path = folder / "serve.sqlite3"
    store = open_store(str(path))
    began = time.perf_counter()
    replay([data], load_engine(Settings(store=str(path))), store)
    store.close()
    print(f"  store: {n:,} appointments replayed in {time.perf_counter() - began:.1f} s")
    return path


class Dashboards:
    """``clients`` loops reloading /dashboard, on their own thread and event loop."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.clients = url, clients
        self.pages: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Dashboards:
        self._thread.start()
        time.sleep(0.5)  # every client has asked once: the first build is under way
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.clients)))

    async def _client(self, http: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            async with http.get(f"{self.url}/dashboard") as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"/dashboard: HTTP {resp.status}")
            self.pages.append(time.perf_counter() - began)


def _acks(port: int, messages: list[bytes]) -> list[float]:
    sock = _connect(port)
    latencies = []
    for raw in messages:
        sent = time.perf_counter()
        sock.sendall(START + raw + END)
        _read_ack(sock)
        latencies.append(time.perf_counter() - sent)
    sock.close()
    return latencies


def _report(label: str, latencies: list[float], pages: list[float] | None = None) -> None:
    q = statistics.quantiles(latencies, n=100)
    line = (f"  {label}: {len(latencies):,} ACKs, p50 {q[49] * 1000:.2f} ms, "
            f"p99 {q[98] * 1000:.2f} ms, max {max(latencies) * 1000:.1f} ms")
    if pages:
        line += f"; {len(pages):,} pages served, median {statistics.median(pages) * 1000:.0f} ms"
    print(line)


def _serve(store: Path, cache_seconds: float) -> tuple[subprocess.Popen[bytes], str, int]:
    http, mllp = _free_port(), _free_port()
    env = {**os.environ, "FHIR_ENGAGEMENT_DASHBOARD_CACHE_SECONDS": str(cache_seconds)}
    server = subprocess.Popen(
        [sys.executable, "-m", "fhir_engagement", "serve", "--port", str(http), "--mllp-port",
         str(mllp), "--store", str(store)], stderr=subprocess.DEVNULL, env=env)
    return server, f"http://127.0.0.1:{http}", mllp


def _run(store: Path, cache_seconds: float, clients: int, messages: list[bytes]) -> None:
    server, url, mllp = _serve(store, cache_seconds)
    try:
        _acks(mllp, messages[:200])  # warm up: the connection and the first writes
        _report("alone", _acks(mllp, messages))
        with Dashboards(url, clients) as loaders:
            latencies = _acks(mllp, messages)
        _report(f"{clients} dashboards, cache {cache_seconds:g} s", latencies, loaders.pages)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="appointments in the store")
    parser.add_argument("--messages", type=int, default=3000, help="MLLP messages per phase")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(11)
    messages = [_message(i, rng) for i in range(args.messages)]
    with tempfile.TemporaryDirectory() as tmp:
        store = _fill(Path(tmp), args.n)
        for cache_seconds in (30.0, 0.0):
            _run(store, cache_seconds, args.clients, messages)


if __name__ == "__main__":
    main()
