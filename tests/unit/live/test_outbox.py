"""The outbox worker outlives one bad batch: it becomes a dead letter with a reason, the rest go.

The store is a real SQLite file; the FHIR server is a small real aiohttp server on 127.0.0.1
that answers most requests properly and one of them with garbage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fhir_engagement.decisions.ids import FLAG_SYSTEM, flag_id
from fhir_engagement.errors import StoreError
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.live.outbox import Outbox
from fhir_engagement.store import SqliteStore
from fhir_engagement.store.base import OutputRow
from tests.conftest import serve_app

BATCHES = ("b1", "b2", "b3")
SETTLE = 10.0  # seconds the worker gets to deliver three batches from a loopback server
POLL = 0.05


@dataclass
class FakeFhir:
    """What the server was sent, and how it answers: ``transaction`` and ``flags`` are hooks."""

    base: str = ""
    transactions: list[dict[str, Any]] = field(default_factory=list)
    flag_searches: list[str] = field(default_factory=list)
    transaction: Callable[[dict[str, Any]], web.Response] | None = None
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)  # identifier value -> Flag


def _ok(bundle: dict[str, Any]) -> web.Response:
    entries = [{"response": {"status": "201 Created"}} for _ in bundle["entry"]]
    return web.json_response({"resourceType": "Bundle", "type": "transaction-response",
                              "entry": entries})


def _task_ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"}


@pytest.fixture
async def fhir() -> AsyncIterator[FakeFhir]:
    server = FakeFhir()

    async def transaction(request: web.Request) -> web.Response:
        bundle = await request.json(loads=orjson.loads)
        server.transactions.append(bundle)
        return (server.transaction or _ok)(bundle)

    async def flags(request: web.Request) -> web.Response:
        value = request.query["identifier"].split("|", 1)[1]
        server.flag_searches.append(value)
        found = [{"resource": server.flags[value]}] if value in server.flags else []
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "entry": found})

    app = web.Application()
    app.router.add_post("/fhir", transaction)
    app.router.add_get("/fhir/Flag", flags)
    async with serve_app(app) as served:
        server.base = f"{served.url}/fhir"
        yield server


def _flag(child: str, priority: str = "PM") -> dict[str, Any]:
    return {"resourceType": "Flag", "identifier": [{"system": FLAG_SYSTEM,
                                                    "value": flag_id(child, "engagement")}],
            "status": "active", "subject": {"reference": f"Patient/{child}"},
            "code": {"coding": [{"system": "https://fhir-engagement.org/fhir/CodeSystem/"
                                           "engagement-concern", "code": "disengagement-single"}]},
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-priority",
                           "valueCodeableConcept": {"coding": [{"code": priority}]}}],
            "period": {"start": "2026-01-05T09:00:00+00:00"}}


def _queue(store: SqliteStore, batches: tuple[str, ...] = BATCHES) -> None:
    """One batch per child: its Flag and one Task, as the pipeline queues a decision."""
    run = store.start_run("test")
    for batch in batches:
        child = f"child-{batch}"
        task = {"resourceType": "Task", "id": f"task-{batch}", "status": "requested",
                "for": {"reference": f"Patient/{child}"}}
        fid = flag_id(child, "engagement")
        store.put_output(OutputRow(fid, "Flag", child, orjson.dumps(_flag(child))), run)
        store.put_output(OutputRow(f"task-{batch}", "Task", child, orjson.dumps(task)), run)
        store.enqueue_delivery(batch, child, [f"task-{batch}", fid])
    store.commit()


def _outbox(store: SqliteStore, session: aiohttp.ClientSession, base: str) -> Outbox:
    return Outbox(store, FhirClient(base, session), tries=2, max_wait=0.05)


async def _run_until_settled(outbox: Outbox, store: SqliteStore) -> asyncio.Task[None]:
    """Start the serve-mode worker, wait until nothing is pending, and leave it running."""
    worker = asyncio.create_task(outbox.run(asyncio.Event(), idle=0.05))
    for _ in range(int(SETTLE / POLL)):  # bounded
        if not store.delivery_counts().get("pending", 0) or worker.done():
            break
        await asyncio.sleep(POLL)
    return worker


async def _stop(worker: asyncio.Task[None]) -> None:
    """The worker must still be running: only cancelling it ends it."""
    assert not worker.done(), worker.exception() if worker.done() else None
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker


async def test_a_garbage_answer_to_one_transaction_is_a_dead_letter_and_the_rest_go(
    fhir: FakeFhir, store: SqliteStore
) -> None:
    fhir.transaction = lambda b: (web.json_response({"entry": [1]}) if "task-b2" in _task_ids(b)
                                  else _ok(b))
    _queue(store)
    async with aiohttp.ClientSession() as session:
        worker = await _run_until_settled(_outbox(store, session, fhir.base), store)
        await _stop(worker)

    assert store.delivery_counts() == {"done": 2, "dead": 1}
    (letter,) = store.dead_letter_rows()
    assert letter[2] == "delivery b2"
    assert "not a FHIR Bundle" in letter[3]
    assert [sorted(_task_ids(b)) for b in fhir.transactions] == [["task-b1"], ["task-b2"],
                                                                 ["task-b3"]]


async def test_an_unforeseen_failure_on_one_batch_is_a_dead_letter_and_the_worker_goes_on(
    fhir: FakeFhir, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's Flag for b2 has no id (a well-formed Bundle, an unusable Flag): the outbox
    trips over it. That batch is kept with a reason; the log names only the exception type."""
    fhir.flags[flag_id("child-b2", "engagement")] = _flag("child-b2", "PH")  # no "id"
    _queue(store)
    async with aiohttp.ClientSession() as session:
        with caplog.at_level(logging.ERROR, logger="fhir_engagement.live.outbox"):
            worker = await _run_until_settled(_outbox(store, session, fhir.base), store)
            await _stop(worker)

    assert store.delivery_counts() == {"done": 2, "dead": 1}
    (letter,) = store.dead_letter_rows()
    assert letter[2] == "delivery b2"
    assert letter[3] == "could not be delivered (KeyError); kept for a person to look at"
    assert sorted(t for b in fhir.transactions for t in _task_ids(b)) == ["task-b1", "task-b3"]
    (record,) = caplog.records
    assert "KeyError" in record.getMessage()
    assert "child-b2" not in record.getMessage()
    assert "Patient/" not in record.getMessage()


class FlakyStore(SqliteStore):
    """A real SQLite store whose first look for due batches fails, as a locked database would."""

    failed = False

    def due_deliveries(self, now: Any, limit: int) -> list[tuple[str, int]]:
        if not self.failed:
            self.failed = True
            raise StoreError("database is locked")
        return super().due_deliveries(now, limit)


async def test_a_failed_pass_does_not_end_the_worker(fhir: FakeFhir, tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "flaky.sqlite3"))
    _queue(store)
    try:
        async with aiohttp.ClientSession() as session:
            worker = await _run_until_settled(_outbox(store, session, fhir.base), store)
            await _stop(worker)
        assert store.failed
        assert store.delivery_counts() == {"done": 3}
    finally:
        store.close()


def _conflict() -> web.Response:
    return web.json_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "conflict", "diagnostics": "version mismatch"}]}, status=412)


async def test_a_conflict_rereads_the_flag_and_writes_over_the_new_version(
    fhir: FakeFhir, store: SqliteStore
) -> None:
    fid = flag_id("child-b1", "engagement")
    fhir.flags[fid] = {**_flag("child-b1", "PL"), "id": "srv-1", "meta": {"versionId": "1"}}

    def answer(bundle: dict[str, Any]) -> web.Response:
        if len(fhir.transactions) == 1:  # a person saved the Flag meanwhile: version 2
            fhir.flags[fid] = {**_flag("child-b1", "PH"), "id": "srv-1", "meta": {"versionId": "2"}}
            return _conflict()
        return _ok(bundle)

    fhir.transaction = answer
    _queue(store, ("b1",))
    async with aiohttp.ClientSession() as session:
        report = await _outbox(store, session, fhir.base).run_once()

    assert (report.delivered, report.dead) == (1, 0)
    assert fhir.flag_searches == [fid, fid]  # read again after the conflict
    flag_entry = fhir.transactions[-1]["entry"][0]
    assert flag_entry["request"] == {"method": "PUT", "url": "Flag/srv-1", "ifMatch": 'W/"2"'}
    priority = flag_entry["resource"]["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert priority["code"] == "PH"  # what the person raised is kept


async def test_a_conflict_that_persists_is_a_dead_letter_not_a_loop(
    fhir: FakeFhir, store: SqliteStore
) -> None:
    fhir.transaction = lambda _: _conflict()
    _queue(store, ("b1",))
    async with aiohttp.ClientSession() as session:
        report = await _outbox(store, session, fhir.base).run_once()

    assert (report.delivered, report.dead) == (0, 1)
    assert len(fhir.transactions) == 2  # tries=2: once, then once more after a re-read
    assert "version mismatch" in store.dead_letter_rows()[0][3]
