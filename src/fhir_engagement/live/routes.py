"""The serve app's HTTP routes: /notify (pushes), /healthz, /readyz, /metrics, /dashboard."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from http import HTTPStatus

from aiohttp import web

from fhir_engagement.errors import DeliveryError, StoreError
from fhir_engagement.live.keys import (
    CLIENT,
    ENGINE,
    FHIR_INBOX,
    LEASE,
    PIPELINE,
    REPLICA,
    SETTINGS,
    STORE,
    SUPERVISOR,
    WAKE,
)
from fhir_engagement.live.metrics import metrics_handler
from fhir_engagement.live.middleware import Handler, check_credential, check_read, may_read, outcome
from fhir_engagement.reports.dashboard import Dashboard

__all__ = ["add_routes"]

# A driver's reason may quote the connection string (and a password in it): never shown.
_SECRETS = re.compile(r"\S+://\S+|password\s*=\s*\S+", re.IGNORECASE)


def add_routes(app: web.Application) -> None:
    """Every route of the serve app."""
    engine = app[ENGINE]
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", _reader(metrics_handler(app)))
    app.router.add_post("/notify", notify)
    app.router.add_put("/notify/{type}/{id}", notify)
    app.router.add_delete("/notify/{type}/{id}", deleted)
    store = app[STORE]
    dashboard = Dashboard(store, getattr(store, "location", ":memory:"), engine.rules.timezone,
                          engine.systems, app[SETTINGS].dashboard_cache_seconds)
    app.router.add_get("/dashboard", _reader(dashboard.handler))
    app.on_cleanup.append(dashboard.close)


def _reader(handler: Handler) -> Handler:
    """A route that shows the service's state: the read credential first."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        check_read(request)
        return await handler(request)

    return guarded


async def healthz(_: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: every worker runs, the inbox moves, the store and the FHIR server (if any) answer.

    Anyone may ask whether (a load balancer must); what is wrong, this replica's name, whether it
    holds the lease (a standby is ready: it takes input) and the store's lag are for holders of
    the read credential only, and never name a secret, a URL or a path.
    """
    problems = [f"worker {name} is down ({why}), restarting"
                for name, why in sorted(request.app[SUPERVISOR].down().items())]
    health = request.app[STORE].health()
    if not health.reachable:
        problems.append(f"store: not reachable ({_SECRETS.sub('…', health.reason.splitlines()[0])})"
                        if health.reason else "store: not reachable")
    else:
        problems += _inbox_problems(request.app)
    client = request.app.get(CLIENT)
    if client is not None:
        try:
            await client.metadata()
        except DeliveryError as error:
            problems.append(f"FHIR server: not answering (HTTP {error.status or 'no answer'})")
    status = HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK
    body: dict[str, object] = {"ready": not problems}
    if may_read(request):
        body |= {"problems": problems, "replica": request.app[REPLICA],
                 "lease": "held" if request.app[LEASE].held else "standby",
                 "store": health.backend, "lag_seconds": health.lag_seconds}
    return web.json_response(body, status=status)


def _inbox_problems(app: web.Application) -> list[str]:
    try:
        _, oldest = app[STORE].inbox_depth()
    except StoreError:
        return ["store: not answering"]
    limit = app[SETTINGS].inbox_max_age
    if oldest is not None and (datetime.now(UTC) - oldest).total_seconds() > limit:
        return [f"inbox: the oldest item has waited over {limit:.0f} s"]
    return []


async def notify(request: web.Request) -> web.Response:
    """A push: checked, kept, then 200. Processing happens after, in the FHIR inbox worker."""
    check_credential(request)
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout):
            body = await request.read()
    except TimeoutError as exc:  # a slow sender must not hold a connection for ever
        raise web.HTTPRequestTimeout(reason="the body did not arrive in time") from exc
    notice = await request.app[FHIR_INBOX].accept(body, f"http {request.method} {request.path}",
                                            request.match_info.get("type"),
                                            request.match_info.get("id"))
    request.app[WAKE].set()
    return outcome(HTTPStatus.OK, "informational", f"kept: {notice.kind}", severity="information")


async def deleted(request: web.Request) -> web.Response:
    """A deletion: the adapter never deletes its own outputs; it is counted, nothing more."""
    check_credential(request)
    request.app[PIPELINE].stats["deletions seen"] += 1
    return web.Response(status=HTTPStatus.NO_CONTENT)
