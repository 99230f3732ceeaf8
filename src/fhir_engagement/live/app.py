"""The aiohttp application ``fhir-engagement serve`` runs: routes, and long-lived tasks.

Long-lived work (the MLLP listener, the inbox workers, the outbox) runs under ``cleanup_ctx`` so it
starts with the app and is cancelled and awaited when it stops. State lives in typed ``AppKey``s;
there are no globals. One error middleware turns every failure of a request into an
OperationOutcome with the right status: 400 bad input, 401 no credential, 413 too large, 503 the
store cannot keep it (with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus

import aiohttp
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.errors import NotificationError, StoreError
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.mllp import MllpListener, MllpSettings, start_mllp_server
from fhir_engagement.live.inbox import FhirInbox, V2Inbox
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.reports.dashboard import dashboard_handler
from fhir_engagement.store.base import Store

__all__ = ["ENGINE", "FHIR_INBOX", "MLLP_SERVER", "PIPELINE", "SETTINGS", "STORE", "build_app"]

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)
PIPELINE = web.AppKey("pipeline", Pipeline)
MLLP_SERVER = web.AppKey("mllp_server", MllpListener)
FHIR_INBOX = web.AppKey("fhir_inbox", FhirInbox)
CLIENT = web.AppKey("client", FhirClient)
WAKE = web.AppKey("wake", asyncio.Event)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(settings: Settings, engine: Engine, store: Store) -> web.Application:
    """The application, with its routes; nothing runs until it is started."""
    app = web.Application(middlewares=[_errors], client_max_size=settings.max_body)
    app[SETTINGS], app[ENGINE], app[STORE] = settings, engine, store
    app[PIPELINE] = Pipeline(engine, store, store.start_run("serve"))
    app[WAKE] = asyncio.Event()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/notify", _notify)
    app.router.add_put("/notify/{type}/{id}", _notify)
    app.router.add_delete("/notify/{type}/{id}", _deleted)
    app.cleanup_ctx.append(_fhir)
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


async def _readyz(request: web.Request) -> web.Response:
    """Ready: the store answers, and the FHIR server does when one is configured."""
    problems = []
    try:
        request.app[STORE].inbox_depth()
    except StoreError as error:
        problems.append(f"store: {error}")
    client = request.app.get(CLIENT)
    if client is not None:
        try:
            await client.metadata()
        except Exception as error:  # any failure means "not ready", said in the body
            problems.append(f"FHIR server: {error}")
    status = HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text: counters, queue depths and each subscription's last event."""
    store, stats = request.app[STORE], request.app[PIPELINE].stats
    depth, oldest = store.inbox_depth()
    lines = [f'fhir_engagement_events_total{{kind="{k}"}} {v}' for k, v in sorted(stats.items())]
    lines += [f'fhir_engagement_deliveries{{state="{k}"}} {v}'
              for k, v in sorted(store.delivery_counts().items())]
    lines.append(f"fhir_engagement_inbox_depth {depth}")
    age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    lines.append(f"fhir_engagement_inbox_oldest_age_seconds {age:.3f}")
    overdue_after = request.app[SETTINGS].heartbeat_timeout
    for sub, last, seen, kind in store.subscriptions():
        label = sub.replace('"', "")
        lines.append(f'fhir_engagement_subscription_last_event{{subscription="{label}"}} {last}')
        moment = datetime.fromisoformat(seen.replace("Z", "+00:00"))
        lines.append(f'fhir_engagement_subscription_last_seen{{subscription="{label}",'
                     f'type="{kind}"}} {moment.timestamp():.0f}')
        # The watchdog: a subscription silent for longer than its heartbeat allows is an alarm.
        silent = (datetime.now(UTC) - moment).total_seconds() > overdue_after
        lines.append(f'fhir_engagement_subscription_heartbeat_overdue{{subscription="{label}"}} '
                     f"{int(silent)}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def _notify(request: web.Request) -> web.Response:
    """A push: checked, kept, then 200. Processing happens after, in the FHIR inbox worker."""
    _check_credential(request)
    body = await request.read()
    inbox = request.app[FHIR_INBOX]
    notice = inbox.accept(body, f"http {request.method} {request.path}",
                          request.match_info.get("type"), request.match_info.get("id"))
    request.app[WAKE].set()
    return web.json_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational",
         "diagnostics": f"kept: {notice.kind}"}]}, content_type="application/fhir+json")


async def _deleted(request: web.Request) -> web.Response:
    """A deletion: the adapter never deletes its own outputs; it is counted, nothing more."""
    _check_credential(request)
    request.app[PIPELINE].stats["deletions seen"] += 1
    return web.Response(status=HTTPStatus.NO_CONTENT)


def _check_credential(request: web.Request) -> None:
    """A bearer token or shared-secret header, compared in constant time."""
    secret = request.app[SETTINGS].notify_token
    if not secret:
        return
    given = request.headers.get("X-Engagement-Secret") or request.headers.get(
        "Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise web.HTTPUnauthorized(reason="a valid bearer token or X-Engagement-Secret is needed")


def _outcome(status: int, code: str, text: str, where: str = "") -> web.Response:
    issue: dict[str, object] = {"severity": "error", "code": code, "diagnostics": text}
    if where:
        issue["expression"] = [where]
    return web.json_response({"resourceType": "OperationOutcome", "issue": [issue]},
                             status=status, content_type="application/fhir+json")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place a failed request becomes an answer."""
    try:
        return await handler(request)
    except NotificationError as error:
        return _outcome(HTTPStatus.BAD_REQUEST, "invalid", error.reason, error.where)
    except StoreError:
        response = _outcome(HTTPStatus.SERVICE_UNAVAILABLE, "transient",
                            "the adapter cannot keep input now: send again")
        response.headers["Retry-After"] = "5"
        return response
    except web.HTTPException as error:
        if error.status < HTTPStatus.BAD_REQUEST:
            raise
        code = {HTTPStatus.UNAUTHORIZED: "login", HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "too-costly",
                HTTPStatus.NOT_FOUND: "not-found"}.get(HTTPStatus(error.status), "invalid")
        text = (error.text or "").removeprefix(f"{error.status}: ")
        default = HTTPStatus(error.status).phrase
        return _outcome(error.status, code, error.reason if text == default else text)


async def _fhir(app: web.Application) -> AsyncIterator[None]:
    """The FHIR side: one client session, the inbox worker, and the outbox when write-back is on."""
    settings = app[SETTINGS]
    async with aiohttp.ClientSession() as session:
        client = None
        if settings.fhir_base:
            client = FhirClient(settings.fhir_base, session, token_source(settings, session))
            app[CLIENT] = client
        inbox = app[FHIR_INBOX] = FhirInbox(app[PIPELINE], client)
        outbox = Outbox(app[STORE], client) if client is not None else None
        tasks = [asyncio.create_task(_drain_fhir(inbox, app[WAKE]))]
        if outbox is not None:
            tasks.append(asyncio.create_task(outbox.run(asyncio.Event())))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _finish(inbox, outbox, settings.shutdown_grace)


async def _finish(inbox: FhirInbox, outbox: Outbox | None, grace: float) -> None:
    """Graceful stop: what was acknowledged is processed, and written if the server answers.

    Bounded by ``grace``: whatever is left stays in the store and goes out after the restart.
    """
    async def finish() -> None:
        while await inbox.drain():
            pass
        if outbox is not None:
            await outbox.run_once()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finish(), grace)


async def _drain_fhir(inbox: FhirInbox, wake: asyncio.Event) -> None:
    wake.set()  # pushes kept before a restart are processed first
    while True:
        await wake.wait()
        wake.clear()
        if await inbox.drain():
            wake.set()
