"""Several ``serve`` replicas on one PostgreSQL store: pushes kept per second, time to decide and
deliver, time to take over after kill -9, and an outage of the database.

Each run: a fresh schema in the machine's PostgreSQL (database ``test``), a fresh sekmet-fhir,
1, 2 and 3 ``serve`` processes started through the CLI, and the feed of tests/replicas/harness.py
(no-shows for ``--children`` children, ``--per-child`` each, half the children over HTTP and half
over MLLP; each child's events in order, the next after the previous ACK; event j to replica
j mod n). Reported per replica count: no-shows kept per second (HTTP and MLLP together, every
child's stream side by side), and the seconds from the first send until the inbox and the outbox
are empty (all decided and written to the FHIR server). ``--failover``: 3 replicas, the lease
holder killed (-9) halfway; the seconds until another holds the lease. ``--outage S``: 2 replicas
behind a TCP proxy that cuts PostgreSQL off for S seconds halfway; what the senders were answered
meanwhile and the seconds from its end until everything was delivered.

The harness lives with the tests (tests/replicas/, hence PYTHONPATH): run from the repository
root, with the machine's PostgreSQL and .sekmet/ (as the tests need):
  PYTHONPATH=. .venv/bin/python bench/replicas.py --failover --outage 30
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from tests.postgres import drop_schema, fresh_schema
from tests.replicas.conftest import Database, temp_fhir
from tests.replicas.harness import (
    NoShow,
    Replica,
    Sent,
    feed,
    lease_holder,
    next_holder,
    put_patients,
    send_all,
    wait_ready,
    wait_settled,
)
from tests.replicas.tcpproxy import TcpProxy


async def _case(n: int, no_shows: list[NoShow], tmp: Path, *, proxied: bool = False,
                meanwhile: Callable[[Sent, list[Replica], TcpProxy | None], Awaitable[Any]]
                | None = None) -> dict[str, float]:
    db = Database(fresh_schema())
    proxy = None
    try:
        if proxied:
            proxy = TcpProxy(*db.server)
            await proxy.start()
        with temp_fhir(tmp / f"sekmet-{n}-{time.monotonic_ns()}") as fhir:
            store = db.dsn(proxy.port if proxy else None)
            group = [Replica(f"r{i}", store, fhir.base_url, tmp / f"r{i}-{n}.log") for i in range(n)]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                await put_patients(http, fhir.base_url, no_shows)
                for replica in group:
                    replica.start()
                try:
                    await wait_ready(http, group)
                    sent, began = Sent(), time.perf_counter()
                    extra: dict[str, float] = {}

                    async def sending() -> float:
                        await send_all(http, group, no_shows, sent)
                        return time.perf_counter() - began

                    tasks: list[Awaitable[Any]] = [sending()]
                    if meanwhile is not None:
                        tasks.append(meanwhile(sent, group, proxy))
                    results = await asyncio.gather(*tasks)
                    if len(results) > 1:
                        extra = results[1]
                    await wait_settled(http, group, within=600)
                    settled_at = time.perf_counter()
                finally:
                    await asyncio.gather(*(asyncio.to_thread(r.stop) for r in group))
        return {"kept_per_s": len(no_shows) / results[0], "sent_s": results[0],
                "settled_s": settled_at - began, "refused": float(len(sent.refusals)), **extra,
                "settled_at": settled_at}
    finally:
        if proxy is not None:
            await proxy.close()
        drop_schema(db.schema)


async def _kill_holder(sent: Sent, group: list[Replica], _: TcpProxy | None) -> dict[str, float]:
    await sent.halfway.wait()
    async with aiohttp.ClientSession() as http:
        holder = await lease_holder(http, group)
        assert holder is not None
        holder.kill()
        return {"takeover_s": await next_holder(http, group)}


def _outage(seconds: float) -> Callable[[Sent, list[Replica], TcpProxy | None],
                                        Awaitable[dict[str, float]]]:
    async def cut(sent: Sent, _: list[Replica], proxy: TcpProxy | None) -> dict[str, float]:
        assert proxy is not None
        await sent.halfway.wait()
        before = len(sent.refusals)
        async with proxy.outage():
            await asyncio.sleep(seconds)
        back = time.monotonic()
        while not [at for at in sent.accepted_at if at > back]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        first = min(at for at in sent.accepted_at if at > back)
        return {"refused_during": float(len(sent.refusals) - before),
                "outage_end": time.perf_counter() - (time.monotonic() - back),
                "first_kept_s": first - back}

    return cut


async def main(args: argparse.Namespace) -> None:
    no_shows = feed(args.children, args.per_child)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{len(no_shows):,} no-shows, {args.children} children side by side, half HTTP "
              "half MLLP; shared 2-core machine (other work running): figures vary")
        for n in () if args.no_scaling else (1, 2, 3):
            r = await _case(n, no_shows, Path(tmp))
            print(f"{n} replica(s): {r['kept_per_s']:,.0f} no-shows/s kept "
                  f"({r['sent_s']:.1f} s to send); all decided and delivered "
                  f"{r['settled_s']:.1f} s after the first")
        if args.failover:
            r = await _case(3, no_shows, Path(tmp), meanwhile=_kill_holder)
            print(f"kill -9 of the lease holder halfway (3 replicas): lease taken over in "
                  f"{r['takeover_s']:.2f} s; {r['refused']:.0f} sends refused or unanswered "
                  f"(sent again elsewhere); all delivered {r['settled_s']:.1f} s after the first")
        if args.outage:
            r = await _case(2, no_shows, Path(tmp), proxied=True, meanwhile=_outage(args.outage))
            print(f"PostgreSQL cut off {args.outage:.0f} s halfway (2 replicas): "
                  f"{r['refused_during']:.0f} sends refused meanwhile (503 / AR, sent again); the "
                  f"first kept {r['first_kept_s']:.2f} s after it came back, all delivered "
                  f"{r['settled_at'] - r['outage_end']:.1f} s after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=40)
    parser.add_argument("--per-child", type=int, default=25)
    parser.add_argument("--failover", action="store_true", help="also: kill -9 of the lease holder")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1, 2, 3 replica runs")
    parser.add_argument("--outage", type=float, default=0.0,
                        help="also: PostgreSQL cut off this many seconds")
    asyncio.run(main(parser.parse_args()))
