"""CP-IS as a status source: a plan known only nationally changes the decision (issue 12).

Two real sekmet-fhir servers: the trust's (the session one), which holds the child with no
status at all, and a second standing in for NHS England's CP-IS FHIR R4 API, loaded with a
CareTeam in CP-IS's shape (category from the England-ChildProtectionPlan value set, the plan's
period, the responsible local authority and its contact). The adapter is asked the way CP-IS is
asked: ``CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|N`` with a ``TraceID``.

Expected by hand from rules.md s.5 for one missed appointment of a 9-year-old:
- with the plan known: the CPP column: inform-social-worker (asap), review-impact (urgent),
  inform-gp, and a Flag; the social worker Task names the local authority CP-IS gave;
- with CP-IS not answering: the "no known status" column (review-impact only, no
  inform-social-worker), and the Task says CP-IS was not reachable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fhir_engagement.config import Settings, StatusSourceConfig
from fhir_engagement.ingest.mllp import END, START
from fhir_engagement.ingest.references import nhs_number_is_valid
from fhir_engagement.live.app import MLLP_SERVER, PIPELINE, build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, free_port, serve_app
from tests.hl7v2.messages import nhs_number, siu
from tests.integration.conftest import SEKMET, FhirServer

SECRET = "s3cret-for-cpis-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
ACTION = "https://fhir-engagement.org/fhir/CodeSystem/engagement-action"


def _nhs_number(seed: int) -> str:
    """A valid (modulus 11) NHS number in the 999 test range."""
    for n in range(seed * 1000, seed * 1000 + 1000):
        candidate = f"999{n:07d}"[:10]
        if nhs_number_is_valid(candidate):
            return candidate
    raise AssertionError("no valid number")


@pytest.fixture(scope="module")
def cpis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A second sekmet-fhir, standing in for CP-IS."""
    server = FhirServer(SEKMET, tmp_path_factory.mktemp("cpis"), free_port())
    server.start()
    yield server
    server.stop()


async def _served(settings: Settings, engine: Engine) -> AsyncIterator[tuple[str, web.Application]]:
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app) as server:
        yield server.url, app
    store.close()


def _settings(tmp_path: Path, fhir_base: str, cpis_base: str) -> Settings:
    source = StatusSourceConfig(name="cp-is", base=cpis_base, timeout=1.0,
                                headers={"TraceID": "fhir-engagement-test"})
    return Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "cpis.sqlite3"),
                    fhir_base=fhir_base, notify_token=SECRET, status_sources=(source,))


async def _put(http: aiohttp.ClientSession, url: str, resource: dict[str, Any]) -> None:
    async with http.put(url, json=resource) as resp:
        assert resp.status in (200, 201), await resp.text()


async def _push_noshow(http: aiohttp.ClientSession, base: str, url: str, child: str,
                       nhs: str, appt: str) -> None:
    patient = {"resourceType": "Patient", "id": child, "birthDate": "2017-03-01",
               "identifier": [{"system": NHS, "value": nhs}]}
    await _put(http, f"{base}/Patient/{child}", patient)
    appointment = {"resourceType": "Appointment", "id": appt, "status": "noshow",
                   "start": "2026-04-07T09:30:00Z",
                   "participant": [{"actor": {"reference": f"Patient/{child}"},
                                    "status": "declined"}]}
    async with http.put(f"{url}/notify/Appointment/{appt}", json=appointment,
                        headers=AUTH) as resp:
        assert resp.status == 200


async def _tasks(http: aiohttp.ClientSession, base: str, appt: str,
                 want: int) -> list[dict[str, Any]]:
    """The Tasks about ``appt`` once ``want`` of them are on the server (10 s at most)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with http.get(f"{base}/Task", params={"focus": f"Appointment/{appt}"}) as resp:
            body = await resp.json(content_type=None)
        found = [e["resource"] for e in body.get("entry", [])]
        if len(found) >= want:
            break
        await asyncio.sleep(0.1)
    return found


def _codes(tasks: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for t in tasks for c in t["code"]["coding"] if c["system"] == ACTION}


async def test_a_plan_known_only_to_cpis_gets_the_cpp_actions(
    fhir_server: FhirServer, cpis_server: FhirServer, engine: Engine,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    nhs = _nhs_number(1)
    plan = {"resourceType": "CareTeam", "id": "cpis-plan-1", "status": "active",
            "category": [{"coding": [{"system": SNOMED, "code": "342191000000101",
                                      "display": "Subject to child protection plan"}]}],
            "subject": {"identifier": {"system": NHS, "value": nhs}},
            "period": {"start": "2025-11-01"},
            "managingOrganization": [{"display": "Example County Council Children's Services"}],
            "telecom": [{"system": "phone", "value": "0300 555 0100"}]}
    await _put(http, f"{cpis_server.base_url}/CareTeam/cpis-plan-1", plan)
    settings = _settings(tmp_path, fhir_server.base_url, cpis_server.base_url)
    async for url, app in _served(settings, engine):
        await _push_noshow(http, fhir_server.base_url, url, "cpis-child-1", nhs, "cpis-appt-1")
        tasks = await _tasks(http, fhir_server.base_url, "cpis-appt-1", 3)
        assert app[PIPELINE].stats["status from cp-is"] == 1
    assert _codes(tasks) == {"inform-social-worker", "review-impact", "inform-gp"}
    social = next(t for t in tasks if "inform-social-worker" in _codes([t]))
    assert social["priority"] == "asap"
    notes = " ".join(n["text"] for n in social["note"])
    assert "Example County Council Children's Services (0300 555 0100)" in notes
    assert "not reachable" not in notes


async def test_cpis_down_the_decision_goes_ahead_and_says_so(
    fhir_server: FhirServer, engine: Engine, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    nhs = _nhs_number(2)
    nowhere = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
    settings = _settings(tmp_path, fhir_server.base_url, nowhere)
    async for url, _app in _served(settings, engine):
        await _push_noshow(http, fhir_server.base_url, url, "cpis-child-2", nhs, "cpis-appt-2")
        tasks = await _tasks(http, fhir_server.base_url, "cpis-appt-2", 1)
    assert _codes(tasks) == {"review-impact"}  # no known status: the slowest ladder
    notes = " ".join(n["text"] for t in tasks for n in t["note"])
    assert "cp-is was not reachable when this was decided" in notes


async def test_an_hl7v2_no_show_asks_cpis_by_the_pid3_nhs_number(
    cpis_server: FhirServer, engine: Engine, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    """The MLLP path asks too: the SIU^S26's PID-3 NHS number, before the message is decided.
    A 10-year-old (PID-7 2015-06-01) not brought on 2026-03-02, a plan known only to CP-IS: the
    CPP column again (inform-social-worker; rules.md s.5), with no FHIR server at all."""
    nhs = nhs_number(3300)
    plan = {"resourceType": "CareTeam", "id": "cpis-plan-v2", "status": "active",
            "category": [{"coding": [{"system": SNOMED, "code": "764841000000100"}]}],
            "subject": {"identifier": {"system": NHS, "value": nhs}},
            "managingOrganization": [{"display": "Another Borough Council"}]}
    await _put(http, f"{cpis_server.base_url}/CareTeam/cpis-plan-v2", plan)
    source = StatusSourceConfig(name="cp-is", base=cpis_server.base_url, timeout=1.0)
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "v2.sqlite3"), mllp_port=0,
                        status_sources=(source,))
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", app[MLLP_SERVER].port)
        writer.write(START + siu("S26", "cpis1", "CP1", "20260302100000", nhs) + END)
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(END), 5)
        assert b"MSA|AA|cpis1" in ack
        writer.close()
        stats = app[PIPELINE].stats
        for _ in range(100):  # bounded: 10 s
            if stats["task inform-social-worker"]:
                break
            await asyncio.sleep(0.1)
        assert stats["status from cp-is"] == 1
        assert stats["task inform-social-worker"] == 1
    finally:
        await runner.cleanup()
        store.close()
