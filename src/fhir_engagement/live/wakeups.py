"""Wake-ups across replicas: PostgreSQL NOTIFY from ``inbox_put``, LISTENed to on a connection of its own.

An item one replica accepts is decided by another (the lease holder, live/lease.py); without a
wake-up it would wait for that worker's idle poll (5 s). ``inbox_put`` on PostgreSQL sends
``pg_notify('fhir_engagement_inbox', channel)`` in the item's transaction, so the notification is
delivered on commit, and only then. Here each replica LISTENs on a psycopg ``AsyncConnection``
(autocommit: LISTEN takes effect at once, and no transaction stays open) and sets the wake event
of the inbox worker for that channel.

Every replica listens, not only the lease holder: a standby's wake-up is harmless (its worker is
waiting for the lease), and a replica that takes over is already listening. After an outage the
listener reconnects and wakes every worker once, for what was committed while it was deaf; the
idle poll stays the fallback. psycopg rather than a second pool connection of the store: the
store's connections are synchronous, and a LISTEN needs to wait on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import psycopg

from fhir_engagement.store.postgres import INBOX_CHANNEL as NOTIFY_CHANNEL

__all__ = ["NOTIFY_CHANNEL", "listen_for_items"]

_LOG = logging.getLogger(__name__)
_IDLE = 30.0  # seconds without a notification before the connection is checked (a silent drop)
_CONNECT_TIMEOUT = 5  # seconds; psycopg's own default waits for the OS (minutes on a blackhole)


async def listen_for_items(dsn: str, wakes: Mapping[str, asyncio.Event],
                           retry: float = 1.0) -> None:
    """Set ``wakes[channel]`` whenever another replica commits an item to that inbox channel.

    Runs until cancelled; an outage costs a reconnect every ``retry`` seconds, never the task.
    """
    while True:
        try:
            await _listen(dsn, wakes)
        except (psycopg.Error, OSError) as exc:
            _LOG.warning("inbox notifications: connection lost (%s); reconnecting",
                         type(exc).__name__)
        await asyncio.sleep(retry)


async def _listen(dsn: str, wakes: Mapping[str, asyncio.Event]) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                 connect_timeout=_CONNECT_TIMEOUT)
    async with conn:
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        _wake_all(wakes)  # what was committed while nobody listened
        while True:
            async for notice in conn.notifies(timeout=_IDLE):
                _wake(wakes, notice.payload)
            await conn.execute("SELECT 1")  # a quiet spell: is the connection still there?


def _wake(wakes: Mapping[str, asyncio.Event], channel: str) -> None:
    wake = wakes.get(channel)
    if wake is None:  # a channel this version does not know: wake everyone rather than no one
        _wake_all(wakes)
    else:
        wake.set()


def _wake_all(wakes: Mapping[str, asyncio.Event]) -> None:
    for wake in wakes.values():
        wake.set()
