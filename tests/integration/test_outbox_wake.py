"""A committed decision wakes the outbox: its Task reaches the server well before the idle poll.

``serve`` on a real socket, its store a real SQLite file, its FHIR server sekmet-fhir over HTTP.
The outbox polls every second when nothing wakes it (issue 15: that poll made a no-show's Task
take ~560 ms at the median, up to ~1 s). Five no-shows are pushed one after another, each for its
own child, and each Task must be on the server within 0.6 s of the push's 200. With only the
1 s poll, each has a chance of about one in two of landing in time and all five about one in
thirty; run so (the wake taken out of live/app.py), the five took 0.63-0.71 s and it failed. With
the wake the path takes a few HTTP round trips to sekmet (the child's first sight, the Flag
guard, the transaction): about 0.1 s on this loaded machine, far inside the bound.
"""

from __future__ import annotations

import asyncio
import time
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
from tests.integration.conftest import FhirServer

SECRET = "s3cret-for-wake-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}
BOUND = 0.6  # seconds: far above the 100 ms goal, below the outbox's 1 s idle poll
PUSHES = 5
POLL = 0.02  # seconds between looks at the server


@pytest.fixture
async def served(fhir_server: FhirServer, engine: Engine, tmp_path: Path
                 ) -> AsyncIterator[tuple[str, web.Application]]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "wake.sqlite3"),
                        fhir_base=fhir_server.base_url, notify_token=SECRET)
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app) as server:
        yield server.url, app
    store.close()


async def _task_after(http: aiohttp.ClientSession, url: str, limit: float) -> float | None:
    """Seconds until a Task is found at ``url``, or None if none is there within ``limit``."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        async with http.get(url) as resp:
            body = await resp.json(content_type=None)
        if body.get("entry"):
            return time.monotonic() - start
        await asyncio.sleep(POLL)
    return None


async def test_each_decision_reaches_the_server_well_before_the_idle_poll(
    served: tuple[str, web.Application], fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    url, app = served
    base = fhir_server.base_url
    took: list[float | None] = []
    for i in range(PUSHES):
        child, appt = f"wake-child-{i}", f"wake-appt-{i}"
        # A 9-year-old with no status on the server: one missed appointment is a single WNB,
        # which rules.md gives the review-impact Task: a decision, so a delivery, for each push.
        patient = {"resourceType": "Patient", "id": child, "birthDate": "2017-03-01"}
        async with http.put(f"{base}/Patient/{child}", json=patient) as resp:
            assert resp.status in (200, 201)
        appointment = {"resourceType": "Appointment", "id": appt, "status": "noshow",
                       "start": "2026-04-07T09:30:00Z",
                       "participant": [{"actor": {"reference": f"Patient/{child}"},
                                        "status": "declined"}]}
        await asyncio.sleep(0.3)  # the worker idle again, as between real pushes
        async with http.put(f"{url}/notify/Appointment/{appt}", json=appointment,
                            headers=AUTH) as resp:
            assert resp.status == 200
        took.append(await _task_after(http, f"{base}/Task?focus=Appointment/{appt}", 5.0))
    assert app[PIPELINE].stats["signal not-brought"] == PUSHES
    assert None not in took, f"a Task never reached the server: {took}"
    assert max(t for t in took if t is not None) < BOUND, f"seconds to the Task: {took}"
