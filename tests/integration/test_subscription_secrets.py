"""Per-subscription secrets on a real FHIR server (sekmet-fhir): never the notify token there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.subscribe import subscribe
from fhir_engagement.live.app import build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, serve_app
from tests.integration.conftest import FhirServer

TOKEN = "notify-token-never-on-the-server"
APPOINTMENT = json.dumps({"resourceType": "Appointment", "id": "sec-x", "status": "booked"})


@dataclass
class Listener:
    url: str
    store: SqliteStore
    settings: Settings


@pytest.fixture
async def listener(fhir_server: FhirServer, engine: Engine, tmp_path: Path
                   ) -> AsyncIterator[Listener]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"),
                        fhir_base=fhir_server.base_url, notify_token=TOKEN)
    store = SqliteStore(settings.store)
    app: web.Application = build_app(settings, engine, store)
    async with serve_app(app) as served:
        yield Listener(served.url, store, settings)
    store.close()


async def _ours(http: aiohttp.ClientSession, base: str, endpoint: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/Subscription", params={"_count": "200"}) as resp:
        body = await resp.json(content_type=None)
    return [e["resource"] for e in body.get("entry", [])
            if e["resource"]["channel"]["endpoint"] == endpoint]


def _secret(subscription: dict[str, Any]) -> str:
    (header,) = subscription["channel"]["header"]
    return str(header).removeprefix("Authorization: Bearer ")


async def _push(http: aiohttp.ClientSession, url: str, secret: str) -> int:
    async with http.post(f"{url}/notify", data=APPOINTMENT,
                         headers={"Authorization": f"Bearer {secret}"}) as resp:
        return resp.status


async def test_each_subscription_has_its_own_secret_and_never_the_notify_token(
    listener: Listener, fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    endpoint = f"{listener.url}/notify"
    report = await subscribe(listener.settings, endpoint, listener.store)
    assert report.created == 2  # one per resource type that can retract
    subs = await _ours(http, fhir_server.base_url, endpoint)
    assert len(subs) == 2
    secrets = [_secret(s) for s in subs]
    assert len(set(secrets)) == 2
    assert all(TOKEN not in json.dumps(s) for s in subs)
    for sub, secret in zip(subs, secrets, strict=True):
        assert secret.startswith(f"fes.{sub['id']}.1.")
        assert await _push(http, listener.url, secret) == 200
    forged = secrets[0][:-4] + ("0000" if not secrets[0].endswith("0000") else "1111")
    assert await _push(http, listener.url, forged) == 401
    unknown = secrets[0].replace(subs[0]["id"], "someone-elses", 1)
    assert await _push(http, listener.url, unknown) == 401
    again = await subscribe(listener.settings, endpoint, listener.store)
    assert (again.created, again.unchanged) == (0, 2)  # stable: same secret, nothing rewritten


async def test_rotate_replaces_the_secret_and_the_old_one_lasts_only_the_grace(
    listener: Listener, fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    endpoint = f"{listener.url}/notify"
    await subscribe(listener.settings, endpoint, listener.store)
    old = {s["id"]: _secret(s) for s in await _ours(http, fhir_server.base_url, endpoint)}
    report = await subscribe(listener.settings, endpoint, listener.store, rotate=True)
    assert report.rotated == 2
    new = {s["id"]: _secret(s) for s in await _ours(http, fhir_server.base_url, endpoint)}
    assert new.keys() == old.keys()
    for sub_id, secret in new.items():
        assert secret != old[sub_id]
        assert secret.startswith(f"fes.{sub_id}.2.")
        assert await _push(http, listener.url, secret) == 200
        assert await _push(http, listener.url, old[sub_id]) == 200  # within the grace (1 h)
    no_grace = listener.settings.model_copy(update={"subscription_secret_grace": 0.0})
    await subscribe(no_grace, endpoint, listener.store, rotate=True)
    for sub_id, secret in new.items():
        assert await _push(http, listener.url, secret) == 401  # generation 2: grace over
        assert await _push(http, listener.url, old[sub_id]) == 401  # generation 1: long gone


async def test_after_rotation_the_server_notifies_with_the_new_secret(
    listener: Listener, fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    """No grace, so only the secret now on the server is accepted: the Task proves it was."""
    endpoint = f"{listener.url}/notify"
    no_grace = listener.settings.model_copy(update={"subscription_secret_grace": 0.0})
    await subscribe(no_grace, endpoint, listener.store)
    await subscribe(no_grace, endpoint, listener.store, rotate=True)
    base = fhir_server.base_url
    appointment = {"resourceType": "Appointment", "id": "sec-appt", "status": "noshow",
                   "start": "2026-03-05T10:00:00Z",
                   "participant": [{"actor": {"reference": "Patient/sec-child"},
                                    "status": "declined"}]}
    async with http.put(f"{base}/Appointment/sec-appt", json=appointment) as resp:
        assert resp.status in (200, 201)
    for _ in range(80):  # bounded: 20 s
        async with http.get(f"{base}/Task", params={"focus": "Appointment/sec-appt"}) as resp:
            body = await resp.json(content_type=None)
        if body.get("entry"):
            break
        await asyncio.sleep(0.25)
    assert [e["resource"]["code"]["coding"][0]["code"] for e in body.get("entry", [])] == [
        "review-impact"]
