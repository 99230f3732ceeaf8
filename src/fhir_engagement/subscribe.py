"""Create or repair the rest-hook Subscriptions the adapter needs on a FHIR server.

Classic R4 rest-hook with the full resource as payload: no-show and cancelled Appointments,
finished Encounters (R4 has no search parameter for the discharge disposition, so every finished
Encounter is sent and filtered here). A Subscription the server put in ``error`` (its endpoint was
down) is set back to ``requested``; events from the outage are recovered by the listener's
``_lastUpdated`` search, not by the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from fhir_engagement.auth import token_source
from fhir_engagement.config import Settings
from fhir_engagement.fhir_client import FhirClient

__all__ = ["CRITERIA", "SubscribeReport", "subscribe"]

CRITERIA = ("Appointment?status=noshow", "Appointment?status=cancelled",
            "Appointment?status=fulfilled", "Encounter?status=finished")
_REASON = "fhir-engagement: child and family engagement (HSCP guidance)"


@dataclass
class SubscribeReport:
    created: int = 0
    repaired: int = 0
    unchanged: int = 0


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
        for criteria in CRITERIA:
            current = ours.get(criteria)
            if current is None:
                await client.create(_subscription(criteria, endpoint, secret))
                report.created += 1
            elif current.get("status") in ("error", "off"):
                repaired = {**_subscription(criteria, endpoint, secret), "id": current["id"]}
                await client.update(repaired)
                report.repaired += 1
            else:
                report.unchanged += 1
    return report


def _subscription(criteria: str, endpoint: str, secret: str | None) -> dict[str, object]:
    channel: dict[str, object] = {"type": "rest-hook", "endpoint": endpoint,
                                  "payload": "application/fhir+json"}
    if secret:
        channel["header"] = [f"Authorization: Bearer {secret}"]
    return {"resourceType": "Subscription", "status": "requested", "reason": _REASON,
            "criteria": criteria, "channel": channel}
