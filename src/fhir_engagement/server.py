"""The aiohttp application ``fhir-engagement serve`` runs: routes, and long-lived tasks.

Long-lived work (the MLLP listener, the inbox worker) runs under ``cleanup_ctx`` so it starts with
the app and is cancelled and awaited when it stops. State lives in typed ``AppKey``s; there are no
globals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.inbox import V2Inbox
from fhir_engagement.ingest.mllp import MllpListener, MllpSettings, start_mllp_server
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.reports.dashboard import dashboard_handler
from fhir_engagement.store.base import Store

__all__ = ["ENGINE", "MLLP_SERVER", "PIPELINE", "SETTINGS", "STORE", "build_app"]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
MLLP_SERVER = web.AppKey("mllp_server", MllpListener)


def build_app(settings: Settings, engine: Engine, store: Store) -> web.Application:
    """The application, with its routes; nothing runs until it is started."""
    app = web.Application()
    app[SETTINGS], app[ENGINE], app[STORE] = settings, engine, store
    app[PIPELINE] = Pipeline(engine, store, store.start_run("serve"))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/dashboard", dashboard_handler(store, engine.rules.timezone,
                                                         engine.systems))
    if settings.mllp_port is not None:
        app.cleanup_ctx.append(_mllp)
    return app


async def _mllp(app: web.Application) -> AsyncIterator[None]:
    """The MLLP listener and the worker that drains its inbox, for the app's lifetime."""
    settings, inbox = app[SETTINGS], V2Inbox(app[PIPELINE])
    wake = asyncio.Event()
    wake.set()  # messages kept before a restart are processed first

    async def handle(raw: bytes) -> bytes:
        ack, fresh = inbox.accept(raw, f"mllp:{settings.mllp_port}")
        if fresh:
            wake.set()
        return ack

    limits = MllpSettings(settings.mllp_max_frame, settings.mllp_idle_timeout)
    server = await start_mllp_server(handle, inbox.refuse_oversize, settings.mllp_host,
                                     settings.mllp_port or 0, limits)
    app[MLLP_SERVER] = server
    worker = asyncio.create_task(_drain(inbox, wake))
    yield
    await server.close()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    while inbox.drain():  # graceful: what was acknowledged is processed before exit
        pass


async def _drain(inbox: V2Inbox, wake: asyncio.Event) -> None:
    while True:
        await wake.wait()
        wake.clear()
        if inbox.drain():
            wake.set()  # there may be more: look again, after letting the listener in
            await asyncio.sleep(0)


async def _healthz(_: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})
