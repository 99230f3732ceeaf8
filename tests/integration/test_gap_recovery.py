"""A gap in event numbers is recovered with ``$events`` where the server offers it.

sekmet-fhir does not offer ``$events`` (its CapabilityStatement says so; the listener then falls
back to a ``_lastUpdated`` search, tested in test_listener.py), so this test stands up a small
HTTP server that answers the two requests involved, on a real socket, and checks what it was
asked. The FHIR behaviour the adapter relies on otherwise is tested against sekmet-fhir.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.live.app import PIPELINE, build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, serve_app

SUB = "Subscription/sub-1"


def _appointment(n: int) -> dict[str, object]:
    return {"resourceType": "Appointment", "id": f"gap-{n}", "status": "noshow",
            "start": f"2026-03-0{n}T10:00:00Z",
            "participant": [{"actor": {"reference": f"Patient/gap-child-{n}"},
                             "status": "declined"}]}


def _notification(numbers: list[int], kind: str = "event-notification") -> dict[str, object]:
    events = [{"name": "notification-event", "part": [
        {"name": "event-number", "valueString": str(n)},
        {"name": "focus", "valueReference": {"reference": f"Appointment/gap-{n}"}}]}
        for n in numbers]
    entries = [{"fullUrl": f"http://x/fhir/Appointment/gap-{n}", "resource": _appointment(n)}
               for n in numbers]
    return {"resourceType": "Bundle", "type": "history", "entry": [
        {"fullUrl": "urn:uuid:8b7a1c00-0000-4000-8000-000000000001", "resource": {
            "resourceType": "Parameters", "parameter": [
                {"name": "subscription", "valueReference": {"reference": SUB}},
                {"name": "type", "valueCode": kind},
                {"name": "events-since-subscription-start", "valueString": str(max(numbers))},
                *events]}}, *entries]}


@pytest.fixture
async def events_server() -> AsyncIterator[tuple[str, list[str]]]:
    asked: list[str] = []

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response({"resourceType": "CapabilityStatement", "rest": [{
            "resource": [{"type": "Subscription", "operation": [
                {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                                 "OperationDefinition/backport-subscription-events"}]}]}]})

    async def events(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        since = int(request.query["eventsSinceNumber"])
        until = int(request.query["eventsUntilNumber"])
        return web.json_response(_notification(list(range(since, until + 1)), "query-event"))

    async def anything(request: web.Request) -> web.Response:  # searches and write-back
        if request.method == "POST":
            return web.json_response({"resourceType": "Bundle", "type": "transaction-response"})
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "entry": []})

    app = web.Application()
    app.router.add_get("/fhir/metadata", metadata)
    app.router.add_get("/fhir/Subscription/{id}/$events", events)
    app.router.add_route("*", "/fhir/{tail:.*}", anything)
    async with serve_app(app) as served:
        yield f"{served.url}/fhir", asked


async def test_lost_events_are_asked_for_with_events(
    events_server: tuple[str, list[str]], engine: Engine, tmp_path: Path
) -> None:
    base, asked = events_server
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"), fhir_base=base)
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    try:
        async with serve_app(app) as served, aiohttp.ClientSession() as http:
            for numbers in ([1], [4]):  # events 2 and 3 never arrive
                async with http.post(f"{served.url}/notify",
                                     data=json.dumps(_notification(numbers))) as resp:
                    assert resp.status == 200
            stats = app[PIPELINE].stats
            for _ in range(40):  # bounded: 10 s
                if stats["signal not-brought"] == 4:
                    break
                await asyncio.sleep(0.25)
    finally:
        store.close()
    assert stats["event gaps"] == 1
    assert asked == [f"/fhir/{SUB}/$events?eventsSinceNumber=2&eventsUntilNumber=3"
                     "&content=full-resource"]
    assert stats["signal not-brought"] == 4
