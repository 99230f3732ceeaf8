"""Create or repair the Subscriptions the adapter needs on a FHIR server.

Classic R4 rest-hook with the full resource as payload, one Subscription per resource type, whose
criteria name every status that raises a signal *or takes one back* (a no-show corrected to
fulfilled, arrived, checked-in or entered-in-error must reach the adapter to be retracted; R4 has
no search parameter for the discharge disposition, so every finished Encounter is sent and filtered
here). And, for each topic in the settings' ``topics`` that the server's CapabilityStatement
offers, a topic-based one (Subscriptions backport IG, full-resource content) asking for a heartbeat
every ``heartbeat_period`` seconds; the metrics call a subscription overdue after
``OVERDUE_PERIODS`` periods of silence. Subscriptions at our endpoint with criteria no longer
wanted (the earlier one-per-status ones) are turned ``off``. A Subscription the server put in
``error`` (its endpoint was down) is set back to ``requested``; events from the outage are
recovered by the listener's ``_lastUpdated`` search, not by the server.

Each Subscription carries its own secret in its rest-hook header, never the notify token: a
header is readable by anyone who may read Subscriptions on the server. The secret is
``fes.<id>.<generation>.<HMAC(notify_token, id.generation)>``, so nothing secret is stored: the
store's ``meta`` keeps only each subscription's generation. ``rotate`` moves every subscription
to the next generation; the previous one is accepted for ``subscription_secret_grace`` seconds
(notifications already queued on the server carry it). Changing the notify token invalidates
every subscription secret: run ``subscribe --rotate`` after it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp
import orjson

from fhir_engagement.config import Settings
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient

__all__ = ["CRITERIA", "OVERDUE_PERIODS", "SecretStore", "SubscribeReport", "secret_is_valid", "subscribe",
           "subscription_secret"]

# Per resource type: the statuses that raise a signal and those that retract one
# (mappings/fhir/*.toml [retract]); a comma in a FHIR search value is "or".
CRITERIA = (
    "Appointment?status=noshow,cancelled,fulfilled,arrived,checked-in,entered-in-error",
    "Encounter?status=finished,cancelled,entered-in-error,in-progress,arrived,triaged,onleave",
)
OVERDUE_PERIODS = 3  # heartbeats missed before a subscription is an alarm
_REASON = "fhir-engagement: child and family engagement (HSCP guidance)"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
_PREFIX = "fes"
_META = "subscription_secret:"


class SecretStore(Protocol):
    """Where each subscription's secret generation is kept (the store's ``meta``)."""

    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def commit(self) -> None: ...


def subscription_secret(notify_token: str, subscription: str, generation: int) -> str:
    """The secret one Subscription presents; derived, so it need not be stored anywhere."""
    mac = hmac.new(notify_token.encode(), f"{subscription}.{generation}".encode(),
                   hashlib.sha256).hexdigest()
    return f"{_PREFIX}.{subscription}.{generation}.{mac}"


def secret_is_valid(notify_token: str, given: str, meta: Callable[[str], str | None],
                    now: datetime | None = None) -> bool:
    """Whether ``given`` is a subscription secret now: the current generation of a subscription
    this adapter made, or the previous one within its grace period."""
    parts = given.split(".")
    if len(parts) < 4 or parts[0] != _PREFIX or not parts[-2].isdigit():
        return False
    subscription, generation = ".".join(parts[1:-2]), int(parts[-2])
    state = _state(meta(f"{_META}{subscription}"))
    if state is None:
        return False
    current, until = state
    expected = subscription_secret(notify_token, subscription, generation)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return False
    return generation == current or (generation == current - 1 and until is not None
                                     and (now or datetime.now(UTC)) < until)


def _state(value: str | None) -> tuple[int, datetime | None] | None:
    """A subscription's current generation and when its previous one stops being accepted."""
    if value is None:
        return None
    data = orjson.loads(value)
    until = data.get("previous_until")
    return int(data["generation"]), datetime.fromisoformat(until) if until else None


@dataclass
class SubscribeReport:
    created: int = 0
    repaired: int = 0
    unchanged: int = 0
    rotated: int = 0
    retired: int = 0
    topics_not_offered: list[str] = field(default_factory=list)


async def subscribe(settings: Settings, endpoint: str, store: SecretStore,
                    rotate: bool = False) -> SubscribeReport:
    """Make sure one active rest-hook Subscription per criterion points at ``endpoint``, each
    with its own secret (when a notify token is set); ``rotate`` gives each a new one."""
    report = SubscribeReport()
    async with aiohttp.ClientSession() as session:
        client = FhirClient(settings.fhir_base or "", session, token_source(settings, session))
        existing = await client.search("Subscription", {"_count": "200"})
        ours = {s.get("criteria"): s for s in existing
                if s.get("channel", {}).get("endpoint") == endpoint}
        wanted = [_subscription(c, endpoint) for c in CRITERIA]
        offered = await _offered_topics(client) if settings.topics else set()
        for topic in settings.topics:
            if topic in offered:
                wanted.append(_topic_subscription(topic, endpoint, settings.heartbeat_period))
            else:
                report.topics_not_offered.append(topic)
        for subscription in wanted:
            current = ours.get(subscription["criteria"])
            subscription["id"] = current["id"] if current else _new_id(endpoint, subscription)
            _sign(subscription, settings, store, rotate and current is not None)
            await _ensure(client, subscription, current, report, rotate)
        await _retire(client, ours, {s["criteria"] for s in wanted}, report)
    return report


async def _retire(client: FhirClient, ours: dict[Any, dict[str, Any]], wanted: set[str],
                  report: SubscribeReport) -> None:
    """Turn off our Subscriptions whose criteria are no longer wanted, so nothing comes twice."""
    for criteria, current in ours.items():
        if criteria not in wanted and current.get("status") != "off" and "id" in current:
            await client.update({**current, "status": "off"})
            report.retired += 1


def _new_id(endpoint: str, subscription: dict[str, Any]) -> str:
    """Chosen here (created by PUT), so the secret can name it before the server sees it."""
    digest = hashlib.sha256(f"{endpoint}\x1f{subscription['criteria']}".encode()).hexdigest()
    return f"fe-sub-{digest[:24]}"


def _sign(subscription: dict[str, Any], settings: Settings, store: SecretStore,
          rotate: bool) -> None:
    """Put the subscription's secret in its header; its generation is committed first, so the
    listener accepts it before the server starts sending it."""
    token = settings.notify_token
    if not token:
        return
    key = f"{_META}{subscription['id']}"
    state = _state(store.meta(key))
    generation, until = state if state is not None else (1, None)
    if state is None or rotate:
        if rotate:
            generation += 1
            until = datetime.now(UTC) + timedelta(seconds=settings.subscription_secret_grace)
        store.set_meta(key, orjson.dumps({"generation": generation, "previous_until":
                                          until.isoformat() if until else ""}).decode())
        store.commit()
    secret = subscription_secret(token, subscription["id"], generation)
    subscription["channel"]["header"] = [f"Authorization: Bearer {secret}"]


async def _ensure(client: FhirClient, wanted: dict[str, Any], current: dict[str, Any] | None,
                  report: SubscribeReport, rotate: bool) -> None:
    if current is None:
        await client.update(wanted)  # update-as-create, with the id the secret names
        report.created += 1
    elif current.get("status") in ("error", "off") or \
            current.get("channel", {}).get("header") != wanted["channel"].get("header") or \
            _heartbeat(current) != _heartbeat(wanted):
        await client.update({**wanted, "status": _kept_status(current)})
        if rotate:
            report.rotated += 1
        else:
            report.repaired += 1
    else:
        report.unchanged += 1


def _kept_status(current: dict[str, Any]) -> str:
    """A working subscription stays active through a new header; a broken one is requested."""
    return "active" if current.get("status") == "active" else "requested"


async def _offered_topics(client: FhirClient) -> set[str]:
    """Topic canonicals the server lists on Subscription in its CapabilityStatement."""
    capability = await client.metadata()
    return {str(e.get("valueCanonical")) for rest in capability.get("rest", [])
            for resource in rest.get("resource", []) if resource.get("type") == "Subscription"
            for e in resource.get("extension", []) if "valueCanonical" in e}


def _heartbeat(subscription: dict[str, Any]) -> object:
    """The heartbeat period a Subscription asks for (backport IG channel extension), if any."""
    return next((e.get("valueUnsignedInt") for e in subscription.get("channel", {})
                 .get("extension", []) if e.get("url") == f"{_BACKPORT}/backport-heartbeat-period"),
                None)


def _topic_subscription(topic: str, endpoint: str, heartbeat: int) -> dict[str, Any]:
    """A backport IG (R4) topic-based Subscription, full-resource content, with a heartbeat."""
    subscription = _subscription(topic, endpoint)
    subscription["meta"] = {"profile": [f"{_BACKPORT}/backport-subscription"]}
    subscription["channel"]["extension"] = [
        {"url": f"{_BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    subscription["channel"]["_payload"] = {"extension": [  # type: ignore[index]
        {"url": f"{_BACKPORT}/backport-payload-content", "valueCode": "full-resource"}]}
    return subscription


def _subscription(criteria: str, endpoint: str) -> dict[str, Any]:
    channel: dict[str, object] = {"type": "rest-hook", "endpoint": endpoint,
                                  "payload": "application/fhir+json"}
    return {"resourceType": "Subscription", "status": "requested", "reason": _REASON,
            "criteria": criteria, "channel": channel}
