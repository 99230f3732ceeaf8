"""Notifications per second the listener keeps durably, and the acknowledgement latency.

``fhir-engagement serve`` runs in its own process (the server's core); this process sends
rest-hook notifications (``PUT /notify/Appointment/{id}`` with the resource, 10% no-shows) on
``--concurrency`` connections. Each 200 means the body was committed to the inbox. Reported:
accepted notifications/s, p50/p99 latency, and the time until the worker has processed them all.
Goal (issue 3): >= 2,000/s with p99 < 50 ms on this 2-core machine.

Run from the repository root:  .venv/bin/python bench/listener_bench.py --n 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson


def _appointment(i: int, rng: random.Random) -> bytes:
    status = "noshow" if rng.random() < 0.1 else rng.choice(["booked", "fulfilled"])
    return orjson.dumps({
        "resourceType": "Appointment", "id": f"bench-{i}", "meta": {"versionId": "1"},
        "status": status, "start": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
        "serviceType": [{"coding": [{"system": "https://trust.example/service",
                                     "code": rng.choice(["paeds", "ent", "dental"])}]}],
        "participant": [
            {"actor": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                      "value": f"999{rng.randint(0, 999999):06d}0"}},
             "status": "accepted"},
            {"actor": {"reference": f"Practitioner/p{rng.randint(1, 50)}"}, "status": "accepted"}]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _send_all(url: str, bodies: list[bytes], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)

    async def sender(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i, body = queue.get_nowait()
            began = time.perf_counter()
            async with http.put(f"{url}/notify/Appointment/bench-{i}", data=body,
                                headers={"Content-Type": "application/fhir+json"}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"refused: HTTP {resp.status}")
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(sender(http) for _ in range(concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` has used so far: a figure the machine's other
    load disturbs far less than wall time (the 2 cores are shared)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, seconds: float = 10) -> None:
    """Until ``url``/healthz answers (bounded); e2e_latency.py waits the same way."""
    for _ in range(int(seconds * 10)):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def _wait_processed(store: Path, began: float) -> float:
    for _ in range(1200):  # bounded: two minutes
        with sqlite3.connect(store) as db:
            pending = db.execute("SELECT COUNT(*) FROM inbox WHERE state = 'pending'").fetchone()[0]
        if pending == 0:
            return time.perf_counter() - began
        time.sleep(0.1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(3)
    bodies = [_appointment(i, rng) for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        store, port = Path(tmp) / "serve.sqlite3", _free_port()
        server = subprocess.Popen([sys.executable, "-m", "fhir_engagement", "serve", "--port",
                                   str(port), "--store", str(store)], stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            cpu, began = cpu_seconds(server.pid), time.perf_counter()
            latencies = asyncio.run(_send_all(url, bodies, args.concurrency))
            elapsed = time.perf_counter() - began
            processed = _wait_processed(store, began)
            cpu = cpu_seconds(server.pid) - cpu
        finally:
            server.terminate()
            server.wait(timeout=30)
    q = statistics.quantiles(latencies, n=100)
    print(f"{args.n:,} notifications on {args.concurrency} connections: {args.n / elapsed:,.0f}/s "
          f"kept; latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms; all processed "
          f"{processed:.1f} s after the first; server CPU {cpu:.2f} s "
          f"({cpu / args.n * 1e6:.0f} us a push, kept and processed)")


if __name__ == "__main__":
    main()
