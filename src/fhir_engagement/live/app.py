"""The aiohttp application ``fhir-engagement serve`` runs: the factory and its long-lived work.

Long-lived work (the MLLP listener, the inbox workers, the outbox, SQLite's WAL checkpoints) runs
under ``cleanup_ctx`` so it starts with the app and is cancelled and awaited when it stops; the
workers run under one Supervisor (workers.py) that restarts any that stops. The deciding workers
(both inbox drains and the outbox) run a pass only while this replica holds the store's lease
(lease.py); on PostgreSQL a listener (wakeups.py) wakes them for items other replicas accepted.
State lives in typed ``AppKey``s (keys.py); there are no globals. Routes are in routes.py, the
error answers in middleware.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import aiohttp
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.mllp import MllpSettings, start_mllp_server
from fhir_engagement.live import recovery
from fhir_engagement.live.fhir_inbox import CHANNEL as FHIR_CHANNEL
from fhir_engagement.live.fhir_inbox import FhirInbox
from fhir_engagement.live.keys import (
    CLIENT,
    ENGINE,
    FHIR_INBOX,
    INBOX_WAKES,
    LEASE,
    MLLP_SERVER,
    OUTBOX_WAKE,
    PIPELINE,
    REPLICA,
    SETTINGS,
    STATUS_SOURCES,
    STORE,
    SUPERVISOR,
    WAKE,
)
from fhir_engagement.live.lease import Lease, replica_name
from fhir_engagement.live.middleware import errors
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.live.routes import add_routes
from fhir_engagement.live.status_sources import StatusSources
from fhir_engagement.live.tls import mllp_tls_context
from fhir_engagement.live.v2_inbox import V2Inbox
from fhir_engagement.live.warmup import warm
from fhir_engagement.live.workers import Supervisor, wake_on_decisions
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store import is_postgres, wal
from fhir_engagement.store.base import Store
from fhir_engagement.store.sqlite import SqliteStore

__all__ = ["MLLP_SERVER", "PIPELINE", "build_app", "open_exposure"]

_LOOPBACK = ("127.", "::1", "localhost")
_BATCH = 100  # items an inbox worker takes per pass (between passes, the listeners get in)


def build_app(settings: Settings, engine: Engine, store: Store) -> web.Application:
    """The application, with its routes; nothing runs until it is started."""
    app = web.Application(middlewares=[errors], client_max_size=settings.max_body)
    app[SETTINGS], app[ENGINE], app[STORE] = settings, engine, store
    app[PIPELINE] = Pipeline(engine, store, store.start_run("serve"))
    app[SUPERVISOR] = Supervisor(app[PIPELINE].stats)
    app[WAKE] = asyncio.Event()
    app[OUTBOX_WAKE] = asyncio.Event()
    app[LEASE] = Lease(store, app[PIPELINE].stats, settings.lease_retry)
    app[REPLICA] = replica_name(settings.replica_name)
    app[INBOX_WAKES] = {FHIR_CHANNEL: app[WAKE], recovery.CHANNEL: app[WAKE]}
    add_routes(app)
    app.cleanup_ctx.append(_replica)  # first in, last out: the lease is given up after the drains
    if isinstance(store, SqliteStore) and store.location != ":memory:":
        app.cleanup_ctx.append(_wal_checkpoints)  # stopped after the final drains' commits
    app.cleanup_ctx.append(_fhir)
    if settings.mllp_port is not None:
        app.cleanup_ctx.append(_mllp)
    return app


def open_exposure(settings: Settings) -> str:
    """Why these settings would expose the adapter without credentials ('' when they do not).

    On loopback only this machine can reach it (development, or a proxy that authenticates);
    on any other address both credentials are needed: pushes raise Flags and Tasks on children,
    and the read endpoints show counts and state of a safeguarding service.
    """
    missing = [name for name, value in (("notify", settings.notify_token),
                                         ("read", settings.read_token)) if not value]
    if missing and not settings.host.startswith(_LOOPBACK):
        return (f"HTTP would listen on {settings.host}, beyond this machine, with no "
                f"{' or '.join(missing)} credential")
    return ""


async def _replica(app: web.Application) -> AsyncIterator[None]:
    """This replica among its peers: the NOTIFY listener on PostgreSQL; the lease given up last.

    On SQLite there is nothing to listen to: one process holds the file, and the listeners' own
    wake events already reach its workers."""
    settings = app[SETTINGS]
    listener = None
    if is_postgres(settings.store):
        from fhir_engagement.live.wakeups import listen_for_items  # psycopg: PostgreSQL only

        listener = asyncio.create_task(listen_for_items(settings.store, app[INBOX_WAKES]),
                                       name="inbox-notifications")
    yield
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    app[LEASE].release()  # after the final drains (the other contexts stop first): a peer goes on


async def _wal_checkpoints(app: web.Application) -> AsyncIterator[None]:
    """SQLite's WAL checkpoints in a thread, not in a commit on the loop (store/wal.py): a
    checkpoint in the commit held every push behind it for up to ~180 ms, every ~160 commits."""
    store = app[STORE]
    assert isinstance(store, SqliteStore)  # build_app adds this context for SQLite files only
    store.defer_checkpoints(wal.BACKSTOP_PAGES)
    app[SUPERVISOR].start("wal-checkpoint", partial(_checkpoint_every, store.location, wal.PERIOD))
    yield
    await app[SUPERVISOR].stop("wal-checkpoint")


async def _checkpoint_every(location: str, period: float) -> None:
    """A worker (supervised: a failing checkpoint is counted, logged, /readyz says so, and it
    starts again); the writer's backstop checkpoint keeps the WAL bounded meanwhile."""
    while True:
        await asyncio.to_thread(wal.checkpoint, location)
        await asyncio.sleep(period)


async def _mllp(app: web.Application) -> AsyncIterator[None]:
    """The MLLP listener and the worker that drains its inbox, for the app's lifetime."""
    settings = app[SETTINGS]
    inbox = V2Inbox(app[PIPELINE], max_attempts=settings.inbox_max_attempts)
    inbox.committed = _decided(app)
    inbox.status = app.get(STATUS_SOURCES)  # made by _fhir, which runs first
    wake = app[INBOX_WAKES][inbox.channel] = asyncio.Event()
    lease = app[LEASE]

    async def handle(raw: bytes) -> bytes:
        ack, fresh = await inbox.accept(raw, f"mllp:{settings.mllp_port}")
        if fresh:
            wake.set()
        return ack

    limits = MllpSettings(settings.mllp_max_frame, settings.mllp_idle_timeout,
                          tls=mllp_tls_context(settings))  # None: plain TCP (loopback)
    server = await start_mllp_server(handle, inbox.refuse_oversize, settings.mllp_host,
                                     settings.mllp_port or 0, limits)
    app[MLLP_SERVER] = server
    app[SUPERVISOR].start("v2-inbox", lambda: _worker(partial(inbox.drain, _BATCH), wake, lease))
    yield
    await server.close()
    await app[SUPERVISOR].stop("v2-inbox")
    if _still_holds(lease):  # graceful: what was acknowledged is processed; a standby decides nothing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until_empty(inbox.drain), settings.shutdown_grace)


async def _worker(drain: Callable[[], Awaitable[int]], wake: asyncio.Event, lease: Lease,
                  idle: float = 5.0) -> None:
    """Drain whenever woken, and every ``idle`` seconds (an item an operator put back); at start
    too, so what was kept before a restart goes first. Each pass waits for the lease first: a
    standby stays there, asking every ``lease.retry`` seconds, and drains once it takes over."""
    wake.set()
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle):  # no task per wait: this loop turns per message
                await wake.wait()
        wake.clear()
        await lease.hold()
        if await drain() >= _BATCH:
            wake.set()  # a full batch: there may be more (a short one emptied the queue)


def _still_holds(lease: Lease) -> bool:
    """At stop: whether this replica held the lease and still does (never taken on the way out)."""
    return lease.held and lease.check()


async def _until_empty(drain: Callable[[], Awaitable[int]]) -> None:
    while await drain():
        pass


async def _fhir(app: web.Application) -> AsyncIterator[None]:
    """The FHIR side: one client session, the inbox worker, and the outbox when write-back is on."""
    settings, supervisor = app[SETTINGS], app[SUPERVISOR]
    async with aiohttp.ClientSession() as session:
        client = None
        if settings.fhir_base:
            client = FhirClient(settings.fhir_base, session, token_source(settings, session))
            app[CLIENT] = client
        inbox = app[FHIR_INBOX] = FhirInbox(app[PIPELINE], client, settings.inbox_max_attempts)
        if settings.status_sources:
            inbox.status = app[STATUS_SOURCES] = StatusSources(app[PIPELINE], session,
                                                               settings.status_sources)
            app[PIPELINE].consult_status_sources = True
        inbox.committed = _decided(app)
        warm(app[ENGINE])  # before serve listens: the first no-show is not the one that waits
        outbox = (Outbox(app[STORE], client, patient_ttl=settings.server_patient_ttl)
                  if client is not None else None)
        lease = app[LEASE]
        supervisor.start("fhir-inbox",
                         lambda: _worker(partial(inbox.drain, _BATCH), app[WAKE], lease))
        if outbox is not None:
            supervisor.start("outbox", lambda: outbox.run(app[OUTBOX_WAKE], lease=lease.hold))
        yield
        await supervisor.stop("fhir-inbox", "outbox")
        if _still_holds(lease):
            await _finish(inbox, outbox, settings.shutdown_grace)


def _decided(app: web.Application) -> Callable[[], None]:
    """The inboxes' commit hook: a committed decision wakes the outbox (issue 15: waiting for
    its 1 s idle poll made a no-show's Task take ~560 ms at the median)."""
    pipeline = app[PIPELINE]
    return wake_on_decisions(lambda: pipeline.queued, app[OUTBOX_WAKE])


async def _finish(inbox: FhirInbox, outbox: Outbox | None, grace: float) -> None:
    """Graceful stop: what was acknowledged is processed, and written if the server answers.

    Bounded by ``grace``: whatever is left stays in the store and goes out after the restart.
    """
    async def finish() -> None:
        await _until_empty(inbox.drain)
        if outbox is not None:
            await outbox.run_once()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finish(), grace)
