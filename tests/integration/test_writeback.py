"""Write-back through the outbox to a real FHIR server (sekmet-fhir over HTTP, started by the tests).

Expected counts come from fixtures/scenarios/07's expected.toml (the ladder: 8 Tasks, one Flag
escalated to persistent, one Provenance per decision).
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from pathlib import Path

import aiohttp

from fhir_engagement.decisions.ids import FLAG_SYSTEM
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from fhir_engagement.store.base import OutputRow
from tests.conftest import SCENARIOS, run_cli
from tests.hl7v2.messages import nhs_number
from tests.integration.conftest import FhirServer, put_patients

LADDER = SCENARIOS / "07-persistent-wnb-ladder"
EXPECTED_TASKS = len(tomllib.loads((LADDER / "expected.toml").read_text())["task"])
NHS_07 = json.loads((LADDER / "bundle.json").read_text())["entry"][0]["resource"]["identifier"][0][
    "value"]
OUTAGE = 30.0  # seconds the FHIR server is down (issue 3: "stop the FHIR server for 30 s")




async def _count(http: aiohttp.ClientSession, base: str, query: str) -> int:
    async with http.get(f"{base}/{query}", params={"_summary": "count"}) as resp:
        assert resp.status == 200, await resp.text()
        return int((await resp.json(content_type=None))["total"])


async def _ladder_tasks(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(f"{base}/Task", params={"focus": "Appointment/s07-a3", "_count": "50"}) as r:
        body = await r.json(content_type=None)
    return sorted(e["resource"]["code"]["coding"][0]["code"] for e in body.get("entry", []))


async def test_replay_writes_each_decision_once_to_the_server(
    fhir_server: FhirServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    args = ("replay", str(LADDER), "--fhir-base", fhir_server.base_url, "--store",
            str(tmp_path / "s.sqlite3"), "--quiet")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3 decisions written, 0 refused" in first.stderr
    base = fhir_server.base_url
    flag = await _count(http, base, f"Flag?identifier={FLAG_SYSTEM}|")
    assert flag >= 1
    tasks_before = await _count(http, base, "Task")
    assert await _ladder_tasks(http, base) == ["contact-childrens-services", "neglect-referral",
                                               "review-impact"]
    ladder = [await _count(http, base, f"Task?focus=Appointment/s07-a{i}") for i in (1, 2, 3)]
    assert sum(ladder) == EXPECTED_TASKS
    # The same input again, through a fresh store: the conditional writes find what is there.
    again = run_cli(*args[:-3], "--store", str(tmp_path / "other.sqlite3"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert await _count(http, base, "Task") == tasks_before


async def test_an_outage_loses_nothing_and_writes_nothing_twice(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    replay([SCENARIOS / "08-practice-example-looked-after-camhs"], engine, store)
    assert store.delivery_counts() == {"pending": 3}
    fhir_server.stop()
    try:
        async with aiohttp.ClientSession() as session:
            outbox = Outbox(store, FhirClient(fhir_server.base_url, session), tries=2,
                            max_wait=0.2, max_backoff=0.5)
            during = await outbox.run_once()
            assert (during.delivered, during.rescheduled) == (0, 3)
            restart = asyncio.get_running_loop().run_in_executor(None, _restart_later,
                                                                 fhir_server, OUTAGE)
            report = await outbox.drain(deadline=60)
            await restart
    finally:
        store.close()
        if not fhir_server.running:
            fhir_server.start()
    assert report.delivered == 3
    tasks = await _all(http, fhir_server.base_url, "Task?focus=Appointment/s08-a3")
    assert sorted(tasks) == ["inform-social-worker", "neglect-referral", "review-impact"]


def _restart_later(server: FhirServer, seconds: float) -> None:
    time.sleep(seconds)
    server.start()


async def _all(http: aiohttp.ClientSession, base: str, query: str) -> list[str]:
    async with http.get(f"{base}/{query}", params={"_count": "100"}) as resp:
        body = await resp.json(content_type=None)
    return [e["resource"]["code"]["coding"][0]["code"] for e in body.get("entry", [])]


async def test_a_refused_batch_goes_to_the_dead_letter_store(
    fhir_server: FhirServer, engine: Engine, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        replay([SCENARIOS / "01-single-wnb-no-status"], engine, store)
        # Break the queued Task so that the server refuses it (a real 400): the same output id
        # written again replaces it, as a re-decided output would.
        (task,) = store.outputs_of_kind("Task")
        broken = task.resource.replace(b'"intent":"order"', b'"intent":7')
        assert broken != task.resource
        store.put_output(OutputRow(task.id, task.kind, task.child, broken), store.start_run("break"))
        store.commit()
        async with aiohttp.ClientSession() as session:
            report = await Outbox(store, FhirClient(fhir_server.base_url, session)).run_once()
        assert (report.delivered, report.dead) == (0, 1)
        assert store.delivery_counts() == {"dead": 1}
        (origin, reason, raw) = store.dead_letters()[0]
        assert origin.startswith("delivery fe-prov-")
        assert "HTTP 400" in reason
        assert b'"type":"transaction"' in raw
    finally:
        store.close()


def _split_ladder(tmp_path: Path, child: str, nhs: str) -> tuple[Path, Path]:
    """Scenario 07 for another child (the server is shared by the tests), in two parts: the first
    two misses, then the third. Derived copies of the fixture."""
    text = (LADDER / "bundle.json").read_text().replace("s07-", f"{child}-")
    bundle = json.loads(text.replace(NHS_07, nhs))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(parents=True)
    second.mkdir()
    third = f"{child}-a3"
    early = [e for e in bundle["entry"] if e["resource"]["id"] != third]
    (first / "b.json").write_text(json.dumps({**bundle, "entry": early}))
    late = [e for e in bundle["entry"] if e["resource"]["id"] == third]
    (second / "b.json").write_text(json.dumps({**bundle, "entry": late}))
    return first, second


async def _deliver(store: SqliteStore, base: str) -> None:
    async with aiohttp.ClientSession() as session:
        await Outbox(store, FhirClient(base, session)).drain(deadline=30)


async def _the_flag(http: aiohttp.ClientSession, base: str, child: str) -> dict:
    async with http.get(f"{base}/Flag", params={"patient": f"Patient/{child}-child"}) as resp:
        (entry,) = (await resp.json(content_type=None))["entry"]
    return entry["resource"]


async def test_a_flag_a_clinician_ended_is_not_revived_and_tasks_point_at_it(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    first, second = _split_ladder(tmp_path, "ended", nhs_number(5101))
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        await put_patients(http, fhir_server.base_url, json.loads((first / "b.json").read_text()))
        replay([first], engine, store)
        await _deliver(store, fhir_server.base_url)
        flag = await _the_flag(http, fhir_server.base_url, "ended")
        assert flag["code"]["coding"][0]["code"] == "disengagement-repeat"
        ended = {**flag, "status": "inactive"}  # the clinician ends it
        async with http.put(f"{fhir_server.base_url}/Flag/{flag['id']}", json=ended) as resp:
            assert resp.status == 200
        replay([second], engine, store)  # the third miss: persistent, on our side
        await _deliver(store, fhir_server.base_url)
        assert store.delivery_counts() == {"done": 3}
    finally:
        store.close()
    after = await _the_flag(http, fhir_server.base_url, "ended")
    assert after["status"] == "inactive"
    assert after["code"]["coding"][0]["code"] == "disengagement-repeat"
    async with http.get(f"{fhir_server.base_url}/Task",
                        params={"focus": "Appointment/ended-a3", "code": "neglect-referral"}) as r:
        (task,) = [e["resource"] for e in (await r.json(content_type=None))["entry"]]
    assert task["reasonReference"]["reference"] == f"Flag/{flag['id']}"


async def test_a_priority_a_person_raised_is_kept_when_the_adapter_escalates(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, tmp_path: Path
) -> None:
    first, second = _split_ladder(tmp_path, "raised", nhs_number(5202))
    store = SqliteStore(str(tmp_path / "s.sqlite3"))
    try:
        await put_patients(http, fhir_server.base_url, json.loads((first / "b.json").read_text()))
        replay([first], engine, store)
        await _deliver(store, fhir_server.base_url)
        async with http.get(f"{fhir_server.base_url}/Flag",
                            params={"patient": "Patient/raised-child"}) as resp:
            (entry,) = (await resp.json(content_type=None))["entry"]
        flag = entry["resource"]
        flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "PH"  # by hand
        async with http.put(f"{fhir_server.base_url}/Flag/{flag['id']}", json=flag) as resp:
            assert resp.status == 200
        replay([second], engine, store)
        await _deliver(store, fhir_server.base_url)
    finally:
        store.close()
    async with http.get(f"{fhir_server.base_url}/Flag/{flag['id']}") as resp:
        after = await resp.json(content_type=None)
    assert after["code"]["coding"][0]["code"] == "disengagement-persistent"  # escalated
    assert after["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PH"  # kept
