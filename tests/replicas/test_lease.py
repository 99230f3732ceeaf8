"""The lease in the serve app, in process on a real PostgreSQL: a standby takes input but decides
nothing; the holder is woken by NOTIFY for what the standby took; a graceful stop hands over at
once; /readyz and /metrics say which replica is which. (The database unreachable is tested on
``serve`` processes, test_replicas.py: in process, the store's synchronous connect would hold the
very loop the outage proxy runs on.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack

import aiohttp
import orjson
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.live.app import build_app
from fhir_engagement.live.keys import LEASE, PIPELINE
from fhir_engagement.live.lease import Lease
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore, open_store
from tests.conftest import MAPPINGS, Served, serve_app
from tests.replicas.conftest import Database

IDLE_POLL = 5.0  # the inbox workers' idle poll (app._worker): a wake-up must beat it


def _appointment(n: int) -> bytes:
    return orjson.dumps({"resourceType": "Appointment", "id": f"lease-{n}", "status": "noshow",
                         "start": "2026-03-02T10:00:00Z",
                         "participant": [{"actor": {"reference": f"Patient/lease-child-{n}"},
                                          "status": "accepted"}]})


async def _replica(stack: AsyncExitStack, engine: Engine, dsn: str,
                   name: str) -> tuple[web.Application, Served]:
    store = open_store(dsn)
    stack.callback(store.close)
    app = build_app(Settings(mappings_dir=MAPPINGS, store=dsn, replica_name=name), engine, store)
    return app, await stack.enter_async_context(serve_app(app))


async def _until(condition: Callable[[], bool], within: float = 10.0) -> float:
    """Seconds until ``condition()`` is true (fails after ``within``)."""
    began = time.monotonic()
    for _ in range(int(within / 0.02)):
        if condition():
            return time.monotonic() - began
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within:.0f} s")


async def _push(http: aiohttp.ClientSession, served: Served, n: int) -> None:
    async with http.put(f"{served.url}/notify/Appointment/lease-{n}", data=_appointment(n)) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_standby_takes_input_the_holder_decides_it_and_a_graceful_stop_hands_over(
    database: Database, engine: Engine,
) -> None:
    async with AsyncExitStack() as stack_a, AsyncExitStack() as stack_b, \
            aiohttp.ClientSession() as http:
        app_a, _ = await _replica(stack_a, engine, database.dsn(), "a")
        await _until(lambda: app_a[LEASE].held)
        app_b, served_b = await _replica(stack_b, engine, database.dsn(), "b")
        async with http.get(f"{served_b.url}/readyz") as resp:
            assert resp.status == 200  # a standby is ready: it takes traffic
            body = await resp.json()
        assert (body["replica"], body["lease"], body["store"]) == ("b", "standby", "postgresql")
        async with http.get(f"{served_b.url}/metrics") as resp:
            text = await resp.text()
        assert "fhir_engagement_lease_held 0.0" in text
        assert 'fhir_engagement_replica{backend="postgresql",replica="b"} 1.0' in text

        await _push(http, served_b, 1)
        woken = await _until(lambda: app_a[PIPELINE].stats["events"] == 1)
        assert woken < IDLE_POLL / 2  # NOTIFY, not the idle poll
        assert app_b[PIPELINE].stats["events"] == 0  # the standby decided nothing

        await stack_a.aclose()  # graceful stop: drains, then gives the lease up
        handed = await _until(lambda: app_b[LEASE].held)
        assert handed < 2.0  # the standby's next try, not a timeout
        await _push(http, served_b, 2)
        await _until(lambda: app_b[PIPELINE].stats["events"] == 1)
        assert app_a[PIPELINE].stats["events"] == 1
        assert app_b[PIPELINE].stats["lease taken"] == 1


def test_sqlite_always_holds_the_lease_and_a_release_is_counted(store: SqliteStore) -> None:
    stats: Counter[str] = Counter()
    lease = Lease(store, stats)
    assert lease.check()
    assert lease.check()
    assert stats["lease taken"] == 1  # a change of hands is counted, not each question
    lease.release()
    assert not lease.held
    assert stats["lease released"] == 1
