"""The real FHIR server the integration tests run, and the behaviours the adapter's writes rely on.

Each test writes resources with identifiers of its own (a fresh child key), so the tests share one
server for the session without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fhir_engagement.decisions.bundle import transaction
from fhir_engagement.decisions.ids import (
    FLAG_SYSTEM,
    TASK_SYSTEM,
    flag_id,
    full_url,
    provenance_id,
    task_id,
)
from fhir_engagement.pipeline import Engine
from fhir_engagement.replay import replay
from fhir_engagement.store import SqliteStore
from tests.conftest import SCENARIOS
from tests.integration.conftest import FhirServer, put_patients

FHIR_JSON = "application/fhir+json"
NOTIFICATION_WAIT = 10.0  # seconds; sekmet delivers a rest-hook notification within a second


# ---------------------------------------------------------------- helpers


async def fhir(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, **headers: str
) -> tuple[int, Mapping[str, str], Any]:
    """One FHIR request: status, response headers (any case) and the JSON body (None when empty)."""
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = FHIR_JSON
    async with http.request(method, url, data=data, headers=headers) as response:
        raw = await response.read()
        return response.status, response.headers.copy(), orjson.loads(raw) if raw else None


@dataclass(frozen=True)
class DecisionIds:
    """The ids one decision's Bundle uses: one Flag, two Tasks, one Provenance."""

    child: str
    flag: str
    tasks: tuple[str, str]
    provenance: str

    @classmethod
    def fresh(cls) -> DecisionIds:
        child = f"Patient/{uuid.uuid4().hex}"
        event = f"Appointment/{uuid.uuid4().hex}"
        return cls(child, flag_id(child, "engagement"),
                   (task_id(child, event, "inform-gp"), task_id(child, event, "review-impact")),
                   provenance_id(child, event, "not-brought", "R1"))

    def bundle(self, stage: str = "disengagement-single") -> dict[str, Any]:
        """The transaction the adapter writes for this decision (built by decisions.bundle)."""
        flag = {"resourceType": "Flag", "identifier": [{"system": FLAG_SYSTEM, "value": self.flag}],
                "status": "active", "code": {"text": stage}, "subject": {"reference": self.child}}
        tasks = [{"resourceType": "Task", "identifier": [{"system": TASK_SYSTEM, "value": oid}],
                  "status": "requested", "intent": "order", "for": {"reference": self.child},
                  "reasonReference": {"reference": full_url(self.flag)}} for oid in self.tasks]
        provenance = {"resourceType": "Provenance", "id": self.provenance,
                      "recorded": "2026-11-24T10:00:00+00:00",
                      "target": [{"reference": full_url(oid)} for oid in (self.flag, *self.tasks)],
                      "agent": [{"who": {"display": "fhir-engagement adapter"}}]}
        outputs = [(self.flag, "Flag", flag),
                   *((oid, "Task", t) for oid, t in zip(self.tasks, tasks, strict=True)),
                   (self.provenance, "Provenance", provenance)]
        return transaction((oid, kind, orjson.dumps(resource)) for oid, kind, resource in outputs)


def statuses(response: dict[str, Any]) -> list[str]:
    return [e["response"]["status"] for e in response["entry"]]


def ids(response: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in response["entry"]]


async def search(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    status, _, bundle = await fhir(http, "GET", url)
    assert status == HTTPStatus.OK, bundle
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


# ---------------------------------------------------------------- the fixture


async def test_the_server_answers_as_fhir_r4(fhir_server: FhirServer, http: aiohttp.ClientSession) -> None:
    status, _, capability = await fhir(http, "GET", f"{fhir_server.base_url}/metadata")

    assert status == HTTPStatus.OK
    assert capability["fhirVersion"] == "4.0.1"
    rest = capability["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    by_type = {r["type"]: r for r in rest["resource"]}
    for kind in ("Flag", "Task", "Provenance"):
        assert by_type[kind]["conditionalCreate"], kind
        assert by_type[kind]["conditionalUpdate"], kind
    # No $events: gap recovery against this server has to search by _lastUpdated.
    operations = {o["name"] for o in by_type["Subscription"].get("operation", [])}
    assert "events" not in operations


async def test_stop_and_start_keep_port_and_data(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    decision = DecisionIds.fresh()
    status, _, written = await fhir(http, "POST", fhir_server.base_url, decision.bundle())
    assert status == HTTPStatus.OK, written
    flag_ref = ids(written)[0]

    await asyncio.to_thread(fhir_server.stop)
    with pytest.raises(aiohttp.ClientConnectionError):
        await fhir(http, "GET", f"{fhir_server.base_url}/{flag_ref}")
    await asyncio.to_thread(fhir_server.start)

    status, _, flag = await fhir(http, "GET", f"{fhir_server.base_url}/{flag_ref}")
    assert status == HTTPStatus.OK
    assert flag["identifier"][0]["value"] == decision.flag


# ---------------------------------------------------------------- transactions


async def test_transaction_with_conditional_create_is_idempotent(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    decision = DecisionIds.fresh()

    _, _, first = await fhir(http, "POST", fhir_server.base_url, decision.bundle())
    status, _, second = await fhir(http, "POST", fhir_server.base_url, decision.bundle())

    assert first["type"] == "transaction-response"
    assert statuses(first) == ["201 Created"] * 4
    assert status == HTTPStatus.OK
    assert statuses(second) == ["200 OK"] * 4
    assert ids(second) == ids(first)
    for oid in decision.tasks:
        tasks = await search(http, f"{fhir_server.base_url}/Task?identifier={TASK_SYSTEM}|{oid}")
        assert len(tasks) == 1
    # The Tasks are found, not rewritten; the Flag and the Provenance are PUTs, so a new version.
    versions = [e["response"]["etag"] for e in second["entry"]]
    assert versions == ['W/"2"', 'W/"1"', 'W/"1"', 'W/"2"']


async def test_urn_uuid_references_resolve_to_the_written_resources(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    decision = DecisionIds.fresh()
    _, _, written = await fhir(http, "POST", fhir_server.base_url, decision.bundle())
    flag_ref, *task_refs, provenance_ref = ids(written)

    for task_ref in task_refs:
        _, _, task = await fhir(http, "GET", f"{fhir_server.base_url}/{task_ref}")
        assert task["reasonReference"] == {"reference": flag_ref}
    _, _, provenance = await fhir(http, "GET", f"{fhir_server.base_url}/{provenance_ref}")
    assert provenance_ref == f"Provenance/{decision.provenance}"
    assert [t["reference"] for t in provenance["target"]] == [flag_ref, *task_refs]


async def test_conditional_put_on_the_identifier_updates_the_flag(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    decision = DecisionIds.fresh()
    _, _, first = await fhir(http, "POST", fhir_server.base_url, decision.bundle())

    _, _, second = await fhir(http, "POST", fhir_server.base_url,
                              decision.bundle("disengagement-repeat"))

    assert ids(second)[0] == ids(first)[0]
    flags = await search(http, f"{fhir_server.base_url}/Flag?identifier={FLAG_SYSTEM}|{decision.flag}")
    assert len(flags) == 1
    assert f"Flag/{flags[0]['id']}" == ids(first)[0]
    assert flags[0]["code"] == {"text": "disengagement-repeat"}
    assert flags[0]["meta"]["versionId"] == "2"


async def test_a_search_by_identifier_and_patient_finds_the_flag(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    decision = DecisionIds.fresh()
    _, _, written = await fhir(http, "POST", fhir_server.base_url, decision.bundle())

    by_identifier = await search(
        http, f"{fhir_server.base_url}/Flag?identifier={FLAG_SYSTEM}|{decision.flag}")
    by_patient = await search(http, f"{fhir_server.base_url}/Flag?patient={decision.child}&status=active")

    assert [f"Flag/{f['id']}" for f in by_identifier] == [ids(written)[0]]
    assert [f["id"] for f in by_patient] == [f["id"] for f in by_identifier]


async def test_a_stale_if_match_fails_the_whole_transaction(
    fhir_server: FhirServer, http: aiohttp.ClientSession
) -> None:
    """If-Match is honoured on ``PUT Flag/{id}`` (not on a conditional PUT by identifier), and a
    failed entry rolls back every other entry of the transaction."""
    decision = DecisionIds.fresh()
    _, _, written = await fhir(http, "POST", fhir_server.base_url, decision.bundle())
    flag_ref = ids(written)[0]
    _, headers, flag = await fhir(http, "GET", f"{fhir_server.base_url}/{flag_ref}")
    assert headers["ETag"] == 'W/"1"'
    late = DecisionIds.fresh()
    bundle = late.bundle()
    bundle["entry"][0]["request"] = {"method": "PUT", "url": flag_ref, "ifMatch": 'W/"0"'}
    bundle["entry"][0]["resource"] = {k: v for k, v in flag.items() if k != "meta"}

    status, _, outcome = await fhir(http, "POST", fhir_server.base_url, bundle)

    assert status == HTTPStatus.PRECONDITION_FAILED
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "conflict"
    for oid in late.tasks:
        assert await search(http, f"{fhir_server.base_url}/Task?identifier={TASK_SYSTEM}|{oid}") == []


async def test_the_adapters_own_bundle_is_accepted_and_idempotent(
    fhir_server: FhirServer, http: aiohttp.ClientSession, engine: Engine, store: SqliteStore
) -> None:
    """What the decision builders really write (a replayed scenario), not a hand-made Bundle."""
    bundle = replay([SCENARIOS / "07-persistent-wnb-ladder"], engine, store).bundle
    assert bundle["entry"], "the scenario decides nothing"
    # The dry-run Bundle names the child by a conditional reference (NHS number): the server
    # resolves it to the child it holds.
    scenario = orjson.loads((SCENARIOS / "07-persistent-wnb-ladder" / "bundle.json").read_bytes())
    await put_patients(http, fhir_server.base_url, scenario)

    status, _, first = await fhir(http, "POST", fhir_server.base_url, bundle)
    assert status == HTTPStatus.OK, first
    _, _, second = await fhir(http, "POST", fhir_server.base_url, bundle)

    assert set(statuses(first)) == {"201 Created"}
    assert set(statuses(second)) == {"200 OK"}
    assert ids(second) == ids(first)


# ---------------------------------------------------------------- subscriptions


@dataclass
class Receiver:
    """A loopback endpoint that records what the FHIR server's rest-hook sends."""

    url: str
    received: asyncio.Queue[tuple[str, str, dict[str, str], bytes]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: asyncio.Queue[tuple[str, str, dict[str, str], bytes]] = asyncio.Queue()

    async def record(request: web.Request) -> web.Response:
        await received.put((request.method, request.path, dict(request.headers), await request.read()))
        return web.Response(status=HTTPStatus.OK)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Receiver(f"http://127.0.0.1:{port}/notify", received)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("payload", [True, False], ids=["payload", "empty"])
async def test_a_rest_hook_subscription_notifies_a_no_show(
    fhir_server: FhirServer, http: aiohttp.ClientSession, receiver: Receiver, payload: bool
) -> None:
    """With a payload: ``PUT {endpoint}/Appointment/{id}`` carrying it; without: an empty POST."""
    child = f"Patient/{uuid.uuid4().hex}"
    channel = {"type": "rest-hook", "endpoint": receiver.url, "header": ["Authorization: Bearer s3cret"]}
    if payload:
        channel["payload"] = FHIR_JSON
    subscription = {"resourceType": "Subscription", "status": "requested", "reason": "test",
                    "criteria": f"Appointment?status=noshow&patient={child}", "channel": channel}
    status, _, created = await fhir(http, "POST", f"{fhir_server.base_url}/Subscription", subscription)
    assert status == HTTPStatus.CREATED, created
    try:
        appointment = {"resourceType": "Appointment", "status": "noshow",
                       "participant": [{"actor": {"reference": child}, "status": "accepted"}]}
        _, _, written = await fhir(http, "POST", f"{fhir_server.base_url}/Appointment", appointment)

        method, path, headers, body = await asyncio.wait_for(receiver.received.get(), NOTIFICATION_WAIT)
    finally:
        await fhir(http, "DELETE", f"{fhir_server.base_url}/Subscription/{created['id']}")

    assert headers["Authorization"] == "Bearer s3cret"
    if payload:
        assert (method, path) == ("PUT", f"/notify/Appointment/{written['id']}")
        assert headers["Content-Type"].startswith(FHIR_JSON)
        assert orjson.loads(body)["meta"]["versionId"] == "1"
    else:
        assert (method, path, body) == ("POST", "/notify", b"")
