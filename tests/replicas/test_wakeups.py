"""The NOTIFY listener on a real PostgreSQL: a committed item wakes its channel's worker at once,
and after the database was unreachable the listener is back, waking everyone once."""

from __future__ import annotations

import asyncio

import psycopg

from fhir_engagement.live.wakeups import NOTIFY_CHANNEL, listen_for_items
from tests.replicas.conftest import Database
from tests.replicas.tcpproxy import TcpProxy


def _notify(db: Database, channel: str) -> None:
    """What ``inbox_put`` on another replica sends, in a transaction of its own (direct, no proxy)."""
    with psycopg.connect(db.dsn()) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, channel))


async def _set(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 10)


async def test_each_channel_wakes_its_worker_unknown_ones_wake_all_and_an_outage_is_survived(
    database: Database, pg_proxy: TcpProxy,
) -> None:
    wakes = {"fhir": asyncio.Event(), "mllp": asyncio.Event()}
    listener = asyncio.create_task(listen_for_items(database.dsn(pg_proxy.port), wakes, retry=0.2))
    try:
        await asyncio.gather(*(_set(w) for w in wakes.values()))  # listening: woken once
        for wake in wakes.values():
            wake.clear()

        _notify(database, "mllp")
        await _set(wakes["mllp"])
        await asyncio.sleep(0.2)
        assert not wakes["fhir"].is_set()
        wakes["mllp"].clear()

        _notify(database, "a-channel-of-a-later-version")
        await asyncio.gather(*(_set(w) for w in wakes.values()))
        for wake in wakes.values():
            wake.clear()

        async with pg_proxy.outage():
            await asyncio.sleep(1.0)  # reconnects refused meanwhile
            _notify(database, "fhir")  # nobody hears this one...
        assert pg_proxy.refused >= 1
        # ...so the listener, back, wakes every worker once for what it may have missed
        await asyncio.gather(*(_set(w) for w in wakes.values()))
        for wake in wakes.values():
            wake.clear()
        _notify(database, "fhir")
        await _set(wakes["fhir"])
        assert not listener.done()
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
