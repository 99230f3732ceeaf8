"""Create or repair the Subscriptions the adapter needs on a FHIR server.

Classic R4 rest-hook with the full resource as payload: no-show and cancelled Appointments,
finished Encounters (R4 has no search parameter for the discharge disposition, so every finished
Encounter is sent and filtered here). And, for each topic in the settings' ``topics`` that the
server's CapabilityStatement offers, a topic-based one (Subscriptions backport IG, full-resource
content). A Subscription the server put in ``error`` (its endpoint was down) is set back to
``requested``; events from the outage are recovered by the listener's ``_lastUpdated`` search,
not by the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient

__all__ = ["CRITERIA", "SubscribeReport", "subscribe"]

CRITERIA = ("Appointment?status=noshow", "Appointment?status=cancelled",
            "Appointment?status=fulfilled", "Encounter?status=finished")
_REASON = "fhir-engagement: child and family engagement (HSCP guidance)"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


@dataclass
class SubscribeReport:
    created: int = 0
    repaired: int = 0
    unchanged: int = 0
    topics_not_offered: list[str] = field(default_factory=list)


async def subscribe(settings: Settings, endpoint: str) -> SubscribeReport:
    """Make sure one active rest-hook Subscription per criterion points at ``endpoint``,
    carrying the credential (``notify_token``) the listener asks for."""
    report = SubscribeReport()
    secret = settings.notify_token
    async with aiohttp.ClientSession() as session:
        client = FhirClient(settings.fhir_base or "", session, token_source(settings, session))
        existing = await client.search("Subscription", {"_count": "200"})
        ours = {s.get("criteria"): s for s in existing
                if s.get("channel", {}).get("endpoint") == endpoint}
        wanted = [_subscription(c, endpoint, secret) for c in CRITERIA]
        offered = await _offered_topics(client) if settings.topics else set()
        for topic in settings.topics:
            if topic in offered:
                wanted.append(_topic_subscription(topic, endpoint, secret))
            else:
                report.topics_not_offered.append(topic)
        for subscription in wanted:
            await _ensure(client, subscription, ours.get(subscription["criteria"]), report)
    return report


async def _ensure(client: FhirClient, wanted: dict[str, Any], current: dict[str, Any] | None,
                  report: SubscribeReport) -> None:
    if current is None:
        await client.create(wanted)
        report.created += 1
    elif current.get("status") in ("error", "off"):
        await client.update({**wanted, "id": current["id"]})
        report.repaired += 1
    else:
        report.unchanged += 1


async def _offered_topics(client: FhirClient) -> set[str]:
    """Topic canonicals the server lists on Subscription in its CapabilityStatement."""
    capability = await client.metadata()
    return {str(e.get("valueCanonical")) for rest in capability.get("rest", [])
            for resource in rest.get("resource", []) if resource.get("type") == "Subscription"
            for e in resource.get("extension", []) if "valueCanonical" in e}


def _topic_subscription(topic: str, endpoint: str, secret: str | None) -> dict[str, Any]:
    """A backport IG (R4) topic-based Subscription, full-resource content."""
    subscription = _subscription(topic, endpoint, secret)
    subscription["meta"] = {"profile": [f"{_BACKPORT}/backport-subscription"]}
    subscription["channel"]["_payload"] = {"extension": [  # type: ignore[index]
        {"url": f"{_BACKPORT}/backport-payload-content", "valueCode": "full-resource"}]}
    return subscription


def _subscription(criteria: str, endpoint: str, secret: str | None) -> dict[str, Any]:
    channel: dict[str, object] = {"type": "rest-hook", "endpoint": endpoint,
                                  "payload": "application/fhir+json"}
    if secret:
        channel["header"] = [f"Authorization: Bearer {secret}"]
    return {"resourceType": "Subscription", "status": "requested", "reason": _REASON,
            "criteria": criteria, "channel": channel}
