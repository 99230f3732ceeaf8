"""A no-show created on the FHIR server -> its Task on the FHIR server: p50/p99 latency.

Live mode as it really runs: sekmet-fhir (from the project's ``.sekmet`` venv) and
``fhir-engagement serve`` each in a process of their own; ``fhir-engagement subscribe`` makes the
server's Subscriptions (rest-hook to the adapter's /notify). This process puts ``--n`` children
on the server, then creates one no-show Appointment for each, ``--interval`` seconds apart (a
clinic's pace, not a flood: the figure is the path's latency, not a queue's). The path: sekmet
notifies, the adapter keeps the push, reads the child on first sight, decides, commits, and the
outbox (woken by the decision) writes the transaction back.

Latency is measured on the server's own clock: the Task's ``meta.lastUpdated`` minus the
Appointment's, so looking for the Task adds nothing to it. Goal (issue 15): p50 < 100 ms,
p99 < 250 ms on this 2-core machine.

Run from the repository root:  .venv/bin/python bench/e2e_latency.py --n 200
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).parent))

from listener_bench import cpu_seconds, wait_ready
from writeback_bench import _free_port, _start_sekmet

HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


async def _put(http: aiohttp.ClientSession, url: str, resource: dict[str, object]) -> str:
    """PUT one resource; its ``meta.lastUpdated`` as the server recorded it."""
    async with http.put(url, json=resource, headers=HEADERS) as resp:
        body = await resp.json(content_type=None)
        if resp.status not in (200, 201):
            raise SystemExit(f"the server refused a PUT: HTTP {resp.status}")
    return str(body["meta"]["lastUpdated"])


async def _task_time(http: aiohttp.ClientSession, base: str, appt: str, wait: float) -> str | None:
    """The first Task's ``meta.lastUpdated`` for ``appt``, looked for up to ``wait`` seconds."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        async with http.get(f"{base}/Task?focus=Appointment/{appt}", headers=HEADERS) as resp:
            body = await resp.json(content_type=None)
        times = [e["resource"]["meta"]["lastUpdated"] for e in body.get("entry", [])]
        if times:
            return min(times)
        await asyncio.sleep(0.2)
    return None


async def _run(base: str, n: int, interval: float, run: str
               ) -> tuple[list[float], dict[str, tuple[str, str]]]:
    async with aiohttp.ClientSession() as http:
        for i in range(n):  # the children are on the server before their no-shows
            await _put(http, f"{base}/Patient/{run}-c{i}", {
                "resourceType": "Patient", "id": f"{run}-c{i}", "birthDate": "2016-05-05"})
        created: dict[str, str] = {}
        for i in range(n):
            appt = f"{run}-a{i}"
            created[appt] = await _put(http, f"{base}/Appointment/{appt}", {
                "resourceType": "Appointment", "id": appt, "status": "noshow",
                "start": "2026-03-02T10:00:00Z",
                "participant": [{"actor": {"reference": f"Patient/{run}-c{i}"},
                                 "status": "declined"}]})
            await asyncio.sleep(interval)
        latencies, missing, times = [], 0, {}
        for appt, made in created.items():
            task = await _task_time(http, base, appt, 10.0)
            if task is None:
                missing += 1
                continue
            times[appt] = (made, task)
            latencies.append(_seconds(made, task))
        if missing:
            print(f"{missing} no-show(s) had no Task after 10 s")
        return latencies, times


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _phases(store: Path, times: dict[str, tuple[str, str]]) -> str:
    """Where the time went: the server notifying (until the push is kept in the adapter's
    inbox) and the adapter (kept -> Task written), p50/p99 of each."""
    notify, adapter = [], []
    with sqlite3.connect(store) as db:
        for received, raw in db.execute("SELECT received, raw FROM inbox"):
            appt = orjson.loads(raw).get("id")
            if appt in times:
                made, task = times[appt]
                notify.append(_seconds(made, received))
                adapter.append(_seconds(received, task))
    if len(notify) < 2:
        return "phases: too few pushes matched"
    qn, qa = statistics.quantiles(notify, n=100), statistics.quantiles(adapter, n=100)
    return (f"phases: server -> push kept p50 {qn[49] * 1000:.0f} ms, p99 {qn[98] * 1000:.0f} ms; "
            f"kept -> Task on the server p50 {qa[49] * 1000:.0f} ms, p99 {qa[98] * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="no-shows (default 200)")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between no-shows (default 0.05)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sekmet, base = _start_sekmet(work)
        port, store = _free_port(), work / "serve.sqlite3"
        adapter = subprocess.Popen([sys.executable, "-m", "fhir_engagement", "serve", "--port",
                                    str(port), "--store", str(store), "--fhir-base", base],
                                   stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, 20)
            subprocess.run([sys.executable, "-m", "fhir_engagement", "subscribe", "--fhir-base",
                            base, "--endpoint", f"{url}/notify"], check=True,
                           stdout=subprocess.DEVNULL)
            cpu = cpu_seconds(adapter.pid)
            latencies, times = asyncio.run(_run(base, args.n, args.interval, f"e2e{port}"))
            cpu = cpu_seconds(adapter.pid) - cpu
        finally:
            adapter.terminate()
            adapter.wait(timeout=30)
            sekmet.terminate()
            sekmet.wait(timeout=30)
        phases = _phases(store, times) if latencies else ""
    if len(latencies) < 2:
        raise SystemExit("too few Tasks to measure")
    q = statistics.quantiles(latencies, n=100)
    print(f"{len(latencies)} no-shows -> Tasks on the server: p50 {q[49] * 1000:.0f} ms, "
          f"p99 {q[98] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
          f"{sum(t > 0.25 for t in latencies)} over 250 ms (goal p50 < 100 ms, p99 < 250 ms)")
    print(f"{phases}; adapter CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
