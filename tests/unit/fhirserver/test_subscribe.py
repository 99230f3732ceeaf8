"""subscribe(): one Subscription per resource type that can retract, and a requested heartbeat."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from aiohttp import web

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.subscribe import CRITERIA, subscribe
from tests.conftest import MAPPINGS, serve_app

TOPIC = "http://example.org/SubscriptionTopic/appointment-noshow"
HEARTBEAT = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
             "backport-heartbeat-period")


class Meta:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def meta(self, key: str) -> str | None:
        return self.data.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.data[key] = value

    def commit(self) -> None:
        pass


def _server(held: dict[str, dict[str, Any]]) -> web.Application:
    async def search(_: web.Request) -> web.Response:
        return web.json_response({"resourceType": "Bundle", "type": "searchset",
                                  "entry": [{"resource": r} for r in held.values()]})

    async def put(request: web.Request) -> web.Response:
        body = await request.json()
        held[request.match_info["id"]] = body
        return web.json_response(body)

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response({"resourceType": "CapabilityStatement", "rest": [{"resource": [
            {"type": "Subscription", "extension": [{"valueCanonical": TOPIC}]}]}]})

    app = web.Application()
    app.router.add_get("/fhir/Subscription", search)
    app.router.add_put("/fhir/Subscription/{id}", put)
    app.router.add_get("/fhir/metadata", metadata)
    return app


def _statuses(criteria: str) -> set[str]:
    return set(criteria.split("status=", 1)[1].split(","))


def test_the_criteria_cover_every_status_that_retracts() -> None:
    """mappings/fhir/*.toml [retract]: a correction must reach the adapter to take a signal back."""
    by_type = {c.split("?", 1)[0]: _statuses(c) for c in CRITERIA}
    assert len(by_type) == len(CRITERIA)  # one per resource type
    for rtype in ("Appointment", "Encounter"):
        spec = tomllib.loads((MAPPINGS / "fhir" / f"{rtype}.toml").read_text())
        r4 = {"on-hold"}  # R5 only: an R4 server rejects it in a search
        assert set(spec["retract"]["status"]) - r4 <= by_type[rtype], rtype
    assert {"noshow", "cancelled", "fulfilled", "arrived", "checked-in",
            "entered-in-error"} <= by_type["Appointment"]
    assert "finished" in by_type["Encounter"]


async def test_topic_subscriptions_ask_for_the_heartbeat_and_old_ones_are_turned_off(
    tmp_path: Path
) -> None:
    old = {"resourceType": "Subscription", "id": "old-1", "status": "active",
           "criteria": "Appointment?status=noshow",
           "channel": {"type": "rest-hook", "endpoint": "https://me/notify"}}
    held: dict[str, dict[str, Any]] = {"old-1": old}
    async with serve_app(_server(held)) as served:
        settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"),
                            fhir_base=f"{served.url}/fhir", topics=(TOPIC,), heartbeat_period=120)
        report = await subscribe(settings, "https://me/notify", Meta())
    assert (report.created, report.retired) == (3, 1)
    assert held["old-1"]["status"] == "off"
    (topic,) = [s for s in held.values() if s["criteria"] == TOPIC]
    assert topic["channel"]["extension"] == [{"url": HEARTBEAT, "valueUnsignedInt": 120}]
    classic = [s for s in held.values() if s["criteria"] in CRITERIA]
    assert len(classic) == 2
