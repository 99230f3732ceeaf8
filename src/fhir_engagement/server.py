"""The aiohttp application ``fhir-engagement serve`` runs: routes, and long-lived tasks.

Long-lived work (the MLLP listener, the inbox worker) runs under ``cleanup_ctx`` so it starts with
the app and is cancelled and awaited when it stops. State lives in typed ``AppKey``s; there are no
globals.
"""

from __future__ import annotations

from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.pipeline import Engine
from fhir_engagement.store.base import Store

__all__ = ["ENGINE", "SETTINGS", "STORE", "build_app"]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)


def build_app(settings: Settings, engine: Engine, store: Store) -> web.Application:
    """The application, with its routes; nothing runs until it is started."""
    app = web.Application()
    app[SETTINGS], app[ENGINE], app[STORE] = settings, engine, store
    app.router.add_get("/healthz", _healthz)
    return app


async def _healthz(_: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})
