"""Outputs name the child by a reference the target server resolves (rules.md 7, "Writing back").

Against the real sekmet-fhir: a child known by NHS number whose Patient is on the server is named
by its literal ``Patient/{id}``, so ``Task?patient=`` and ``Flag?patient=`` find every output; a
child with no Patient there is still written (by identifier). The Patient searches are counted in
sekmet's own access log: one per child per server, however many batches follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson

from fhir_engagement.decisions.ids import NHS_NUMBER_SYSTEM
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.hl7v2.messages import nhs_number, siu
from tests.integration.conftest import FhirServer

ON_SERVER = nhs_number(7301)
NOT_ON_SERVER = nhs_number(7402)


def _feed(folder: Path, nhs: str, *appointments: tuple[str, str]) -> Path:
    """One SIU^S26 (not brought) per (appointment, time), as a v2 feed folder."""
    folder.mkdir(parents=True)
    for n, (appt, when) in enumerate(appointments):
        raw = siu("S26", f"{appt}-m", appt, when, nhs, status="Cancelled")
        (folder / f"{n:03d}.hl7").write_bytes(raw)
    return folder


def _patient_searches(server: FhirServer, nhs: str) -> int:
    """``GET Patient?identifier=…|nhs`` requests in sekmet's access log (decoded, any encoding)."""
    lines = unquote(server.log_path.read_text(errors="replace")).splitlines()
    return sum(1 for line in lines if "GET /fhir/Patient?" in line and f"|{nhs}" in line)


async def _search(http: aiohttp.ClientSession, base: str, query: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/{query}", params={"_count": "100"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json(content_type=None)
    return [e["resource"] for e in body.get("entry", [])]


async def _create_patient(http: aiohttp.ClientSession, base: str, nhs: str) -> str:
    patient = {"resourceType": "Patient", "birthDate": "2015-06-01",
               "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]}
    async with http.post(f"{base}/Patient", json=patient) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json(content_type=None))["id"])


async def _deliver(store: SqliteStore, base: str) -> None:
    async with aiohttp.ClientSession() as session:
        report = await Outbox(store, FhirClient(base, session)).drain(deadline=30)
    assert report.dead == 0


def _task_ids(store: SqliteStore, nhs: str) -> set[str]:
    """Our Task identifiers for the child: what the server must list under the child."""
    rows = [orjson.loads(r.resource) for r in store.outputs_of_kind("Task")]
    return {t["identifier"][0]["value"] for t in rows if nhs in t["for"].get("reference", "")}


async def test_a_child_on_the_server_is_named_by_its_patient_id_searched_once(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    base = fhir_server.base_url
    patient = await _create_patient(http, base, ON_SERVER)
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        replay([_feed(tmp_path / "first", ON_SERVER, ("PR1", "20260302100000"))], engine, store)
        await _deliver(store, base)
        assert _patient_searches(fhir_server, ON_SERVER) == 1
        # A second miss at the same service: a repeat, a second batch (new Tasks, the Flag raised).
        replay([_feed(tmp_path / "second", ON_SERVER, ("PR2", "20260406100000"))], engine, store)
        await _deliver(store, base)
        assert store.delivery_counts() == {"done": 2}
        assert _patient_searches(fhir_server, ON_SERVER) == 1  # the answer came from the store
        expected = _task_ids(store, ON_SERVER)
    finally:
        store.close()
    tasks = await _search(http, base, f"Task?patient=Patient/{patient}")
    assert len(expected) >= 2
    assert {t["identifier"][0]["value"] for t in tasks} == expected
    assert {t["for"]["reference"] for t in tasks} == {f"Patient/{patient}"}
    (flag,) = await _search(http, base, f"Flag?patient=Patient/{patient}")
    assert flag["code"]["coding"][0]["code"] == "disengagement-repeat"


async def test_a_child_not_on_the_server_is_still_written_named_by_identifier(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    base = fhir_server.base_url
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        replay([_feed(tmp_path / "feed", NOT_ON_SERVER, ("NP1", "20260302100000"))], engine,
               store)
        (stored,) = [orjson.loads(r.resource) for r in store.outputs_of_kind("Task")]
        await _deliver(store, base)
        assert store.delivery_counts() == {"done": 1}
    finally:
        store.close()
    # As stored (a dry run's form): the conditional reference R4 allows in a transaction.
    assert stored["for"] == {"reference": f"Patient?identifier={NHS_NUMBER_SYSTEM}|{NOT_ON_SERVER}",
                             "type": "Patient"}
    assert _patient_searches(fhir_server, NOT_ON_SERVER) == 1
    (task,) = await _search(http, base,
                            f"Task?patient:identifier={NHS_NUMBER_SYSTEM}|{NOT_ON_SERVER}")
    assert task["for"] == {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": NOT_ON_SERVER},
                           "type": "Patient"}
    assert task["identifier"][0]["value"] == stored["identifier"][0]["value"]
