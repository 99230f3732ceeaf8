"""Naming the child on write-back: the Patient search, its cache's time to live, and a 404 that
means the cached Patient is gone.

The store is a real SQLite file; the FHIR server is a small real aiohttp server on 127.0.0.1 that
answers Patient searches from a table and transactions through a hook (sekmet-fhir, which keeps
no referential integrity, never answers 404 to a literal reference to a deleted Patient).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fhir_engagement.decisions.ids import NHS_NUMBER_SYSTEM, reference_for
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.live.patients import MISS_TTL, PatientDirectory
from fhir_engagement.store import SqliteStore
from fhir_engagement.store.base import OutputRow, ServerPatient
from tests.conftest import serve_app

NHS = "9434765919"
CRITERION = (NHS_NUMBER_SYSTEM, NHS)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class StandIn:
    """Patients by NHS number (a list: several may match), and every request received."""

    base: str = ""
    patients: dict[str, list[str]] = field(default_factory=dict)
    searches: list[str] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], web.Response] | None = None
    search_status: int = 200


def _ok(bundle: dict[str, Any]) -> web.Response:
    return web.json_response({"resourceType": "Bundle", "type": "transaction-response",
                              "entry": [{"response": {"status": "201 Created"}}
                                        for _ in bundle["entry"]]})


def _gone_unless(patient: str) -> Callable[[dict[str, Any]], web.Response]:
    """A server whose only Patient of the child is ``patient``: any other literal one is 404."""
    def answer(bundle: dict[str, Any]) -> web.Response:
        named = {e["resource"]["for"].get("reference") for e in bundle["entry"]}
        if named != {f"Patient/{patient}"}:
            return web.json_response({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-found"}]}, status=404)
        return _ok(bundle)
    return answer


@pytest.fixture
async def server() -> AsyncIterator[StandIn]:
    stand_in = StandIn()

    async def patients(request: web.Request) -> web.Response:
        value = request.query["identifier"].split("|", 1)[1]
        stand_in.searches.append(value)
        if stand_in.search_status != 200:
            return web.json_response({"resourceType": "OperationOutcome"},
                                     status=stand_in.search_status)
        found = [{"resource": {"resourceType": "Patient", "id": p}}
                 for p in stand_in.patients.get(value, [])]
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "entry": found})

    async def transaction(request: web.Request) -> web.Response:
        bundle = await request.json(loads=orjson.loads)
        stand_in.transactions.append(bundle)
        return (stand_in.answer or _ok)(bundle)

    app = web.Application()
    app.router.add_get("/fhir/Patient", patients)
    app.router.add_post("/fhir", transaction)
    async with serve_app(app) as served:
        stand_in.base = f"{served.url}/fhir"
        yield stand_in


def _queue(store: SqliteStore, batch: str) -> None:
    """One Task naming the child by conditional reference, as the pipeline queues it."""
    task = {"resourceType": "Task", "id": f"task-{batch}", "status": "requested",
            "intent": "order", "for": reference_for(f"nhs:{NHS}")}
    store.put_output(OutputRow(f"task-{batch}", "Task", f"nhs:{NHS}", orjson.dumps(task)),
                     store.start_run("test"))
    store.enqueue_delivery(batch, f"nhs:{NHS}", [f"task-{batch}"])
    store.commit()


def _named(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][0]["resource"]["for"]


async def test_a_404_naming_a_cached_patient_forgets_it_and_sends_once_more(
    server: StandIn, store: SqliteStore
) -> None:
    """The Patient was merged into another on the server since the answer was cached."""
    store.set_server_patient(server.base, *CRITERION, ServerPatient("old", datetime.now(UTC)))
    server.patients[NHS], server.answer = ["new"], _gone_unless("new")
    _queue(store, "b1")
    async with aiohttp.ClientSession() as session:
        report = await Outbox(store, FhirClient(server.base, session)).run_once()
    assert (report.delivered, report.dead) == (1, 0)
    assert [_named(b)["reference"] for b in server.transactions] == ["Patient/old", "Patient/new"]
    assert server.searches == [NHS]
    assert store.server_patient(server.base, *CRITERION).patient_id == "new"  # type: ignore[union-attr]


async def test_a_404_with_a_patient_just_searched_is_a_dead_letter_not_a_loop(
    server: StandIn, store: SqliteStore
) -> None:
    server.patients[NHS], server.answer = ["p1"], _gone_unless("nobody")
    _queue(store, "b1")
    async with aiohttp.ClientSession() as session:
        report = await Outbox(store, FhirClient(server.base, session)).run_once()
    assert report.dead == 1
    assert len(server.transactions) == 1
    assert server.searches == [NHS]


async def test_several_patients_for_one_nhs_number_name_the_child_by_identifier(
    server: StandIn, store: SqliteStore
) -> None:
    server.patients[NHS] = ["p1", "p2"]
    _queue(store, "b1")
    async with aiohttp.ClientSession() as session:
        report = await Outbox(store, FhirClient(server.base, session)).run_once()
    assert report.delivered == 1
    assert _named(server.transactions[0]) == {
        "identifier": {"system": NHS_NUMBER_SYSTEM, "value": NHS}, "type": "Patient"}
    assert store.server_patient(server.base, *CRITERION).patient_id is None  # type: ignore[union-attr]


async def test_a_refused_search_still_writes_the_batch_and_caches_nothing(
    server: StandIn, store: SqliteStore
) -> None:
    server.search_status = 400  # e.g. a server that does not offer identifier search on Patient
    _queue(store, "b1")
    async with aiohttp.ClientSession() as session:
        report = await Outbox(store, FhirClient(server.base, session)).run_once()
    assert report.delivered == 1
    assert "identifier" in _named(server.transactions[0])
    assert store.server_patient(server.base, *CRITERION) is None


@pytest.mark.parametrize(
    ("found", "life"), [(["p1"], timedelta(seconds=3600)), ([], timedelta(seconds=MISS_TTL))])
async def test_an_answer_is_reused_within_its_time_to_live_then_asked_again(
    server: StandIn, store: SqliteStore, found: list[str], life: timedelta
) -> None:
    server.patients[NHS] = found
    now = [T0]
    async with aiohttp.ClientSession() as session:
        directory = PatientDirectory(store, FhirClient(server.base, session), ttl=3600,
                                     clock=lambda: now[0])
        first = await directory.resolve([CRITERION])
        now[0] = T0 + life - timedelta(seconds=1)
        assert (await directory.resolve([CRITERION])).answers == first.answers
        assert len(server.searches) == 1
        now[0] = T0 + life
        await directory.resolve([CRITERION])
    assert len(server.searches) == 2
    assert first.answers == {CRITERION: found[0] if found else None}


async def test_answers_are_kept_per_server(server: StandIn, store: SqliteStore) -> None:
    """``Patient/p1`` at one server says nothing about another server's Patients."""
    store.set_server_patient("http://elsewhere.example/fhir", *CRITERION,
                             ServerPatient("p9", datetime.now(UTC)))
    server.patients[NHS] = ["p1"]
    async with aiohttp.ClientSession() as session:
        directory = PatientDirectory(store, FhirClient(server.base, session))
        resolution = await directory.resolve([CRITERION])
    assert resolution.answers == {CRITERION: "p1"}
    assert resolution.cached == frozenset()
