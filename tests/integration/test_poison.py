"""Acknowledged means processed: poison input never stops the workers; /readyz tells the truth.

``serve`` runs for real (HTTP and MLLP on loopback sockets, a SQLite file). Each poison input a
hostile or careless sender sent in the reliability issue goes in first, then 100 ordinary no-shows
for 100 children: every one of them must become a review-impact Task (rules.md section 5: a single
WNB, no known status -> review-impact), and the poison must sit in the dead letters, not in a
stopped worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from fhir_engagement.config import Settings
from fhir_engagement.errors import StoreError
from fhir_engagement.ingest.mllp import END, START
from fhir_engagement.live.app import MLLP_SERVER, build_app
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS, serve_app
from tests.hl7v2.messages import nhs_number, siu

SECRET = "poison-test-secret"
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}


class FaultyStore(SqliteStore):
    """A real SQLite store whose disk can be made to "fill up" for the drain (fault injection)."""

    full = False

    def inbox_done(self, ids: Any) -> None:
        if self.full:
            raise StoreError("database or disk is full (injected by the test)")
        super().inbox_done(ids)


@dataclass
class Serve:
    url: str
    mllp_port: int
    store: FaultyStore


@pytest.fixture
async def serve(engine: Engine, tmp_path: Path) -> AsyncIterator[Serve]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"), mllp_port=0,
                        notify_token=SECRET, inbox_max_age=30)
    store = FaultyStore(settings.store)
    app = build_app(settings, engine, store)
    async with serve_app(app) as served:
        yield Serve(served.url, app[MLLP_SERVER].port, store)
    store.close()


def _noshow(n: int, start: str = "2026-05-04T10:00:00Z", nhs: str | None = None) -> bytes:
    """A transaction Bundle: one child (born 2015) and their no-show."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": f"poison-p{n}",
                               "birthDate": "2015-06-01"}
    if nhs is not None:
        patient["identifier"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]
    appointment = {"resourceType": "Appointment", "id": f"poison-a{n}", "status": "noshow",
                   "start": start, "participant": [
                       {"actor": {"reference": f"Patient/poison-p{n}"}, "status": "accepted"}]}
    return orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": f"Patient/poison-p{n}", "resource": patient},
        {"fullUrl": f"Appointment/poison-a{n}", "resource": appointment}]})


def _notification(number: int) -> bytes:
    status = {"resourceType": "SubscriptionStatus", "type": "event-notification",
              "subscription": {"reference": "Subscription/poison"},
              "notificationEvent": [{"eventNumber": str(number),
                                     "focus": {"reference": "Appointment/not-included"}}]}
    return orjson.dumps({"resourceType": "Bundle", "type": "subscription-notification",
                         "entry": [{"resource": status}]})


POISON_PUSHES = [
    _noshow(9001, start="0001-01-01T00:00:00Z"),  # .NET DateTime.MinValue from a PAS export
    _noshow(9002, start="9999-12-31T23:59:59Z"),
    _noshow(9003, nhs="94347\u00b265919"),  # a superscript two: isdigit() says yes
    orjson.dumps({"resourceType": "Parameters", "id": "fhir-engagement-recovery",
                  "parameter": [{"name": "subscription"}]}),  # posing as the adapter's own
    _notification(2**62),
    _notification(2**63 + 5),
    b"[" * 5000 + b"]" * 5000,  # deep nesting
]


def _poison_v2() -> list[bytes]:
    sch_year_1 = siu("S26", "POISON-1", "PA1", "00010101", nhs_number(9101))
    year_9999 = siu("S26", "POISON-2", "PA2", "99991231235959", nhs_number(9102))
    odd_nhs = siu("S26", "POISON-3", "PA3", "20260504100000", "12345\u00b2789X")
    return [sch_year_1, year_9999, odd_nhs]


async def _mllp(port: int, messages: list[bytes]) -> list[str]:
    """Send each message on one connection; every one must be answered (AA, AE or AR)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes = []
    for raw in messages:
        writer.write(START + raw + END)
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(END), 10)
        msa = next(s for s in ack.decode().split("\r") if s.startswith("MSA"))
        codes.append(msa.split("|")[1])
    writer.close()
    await writer.wait_closed()
    return codes


async def _ready(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/readyz") as resp:  # the status is for anyone (load balancers)
        return resp.status


async def _settled(store: SqliteStore, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):  # bounded
        if store.inbox_depth()[0] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the inbox still holds {store.inbox_depth()[0]} items")


def _review_tasks(store: SqliteStore) -> set[str]:
    """The Appointments that have a review-impact Task focused on them."""
    focus = set()
    for row in store.outputs_of_kind("Task"):
        task = orjson.loads(row.resource)
        if task["code"]["coding"][0]["code"] == "review-impact":
            focus.add(str(task["focus"].get("reference") or task["focus"]["identifier"]["value"]))
    return focus


async def test_poison_then_100_no_shows_all_become_tasks_and_readyz_tells_the_truth(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    for body in POISON_PUSHES:
        async with http.post(f"{serve.url}/notify", data=body, headers=AUTH) as resp:
            assert resp.status in (200, 400), await resp.text()
        assert await _ready(http, serve.url) == 200
    codes = await _mllp(serve.mllp_port, _poison_v2())
    assert set(codes) <= {"AA", "AE"}
    await _settled(serve.store)
    assert await _ready(http, serve.url) == 200

    for n in range(50):
        async with http.post(f"{serve.url}/notify", data=_noshow(n), headers=AUTH) as resp:
            assert resp.status == 200
    ordinary = [siu("S26", f"OK-{n}", f"OKA{n}", "20260504100000", nhs_number(9200 + n))
                for n in range(50)]
    assert await _mllp(serve.mllp_port, ordinary) == ["AA"] * 50
    await _settled(serve.store)

    focus = _review_tasks(serve.store)
    assert {f"Appointment/poison-a{n}" for n in range(50)} <= focus
    assert sum(1 for f in focus if f.startswith("OKA") or "OKA" in f) == 50
    assert await _ready(http, serve.url) == 200
    reasons = [reason for _, reason, _ in serve.store.dead_letters()]
    assert len(reasons) >= 4, reasons  # the year-0001 push, the deep nesting, the v2 poison...
    async with http.get(f"{serve.url}/metrics", headers=AUTH) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "fhir_engagement" in text
    assert "worker restarts" not in text  # no worker ever stopped


async def test_a_full_disk_stops_processing_readyz_says_so_and_all_is_processed_after(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    serve.store.full = True
    for n in range(5):
        async with http.post(f"{serve.url}/notify", data=_noshow(100 + n), headers=AUTH) as resp:
            assert resp.status == 200  # kept: the inbox write still fits
    for _ in range(50):  # bounded: the worker fails, and is restarted with backoff
        if await _ready(http, serve.url) == 503:
            break
        await asyncio.sleep(0.1)
    async with http.get(f"{serve.url}/readyz") as resp:
        assert resp.status == 503
        assert await resp.json() == {"ready": False}  # no details without the credential
    async with http.get(f"{serve.url}/readyz", headers=AUTH) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert any("fhir-inbox" in p for p in body["problems"]), body
    assert "s.sqlite3" not in str(body)  # no paths or secrets in the answer

    serve.store.full = False  # space returns
    await _settled(serve.store, seconds=30)
    assert {f"Appointment/poison-a{100 + n}" for n in range(5)} <= _review_tasks(serve.store)
    for _ in range(50):  # bounded: the worker is back after its backoff
        if await _ready(http, serve.url) == 200:
            break
        await asyncio.sleep(0.1)
    assert await _ready(http, serve.url) == 200
