"""Gaps in a subscription's event numbers, and catching up: ``$events``, else a search.

A gap found on accept is kept in the inbox (channel ``recovery``, never the push channel, so no
pushed body can pose as a recovery request) and worked by the FHIR inbox worker like a push.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_engagement.errors import DeliveryError, NotificationError
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.notifications import Notice
from fhir_engagement.pipeline import Pipeline

__all__ = ["CHANNEL", "Recovery"]

CHANNEL = "recovery"
# Above this an event number is not plausible (JSON's exact integers end at 2**53).
_MAX_EVENT_NUMBER = 2**53
# A wider gap is not asked of $events event by event: one _lastUpdated search covers it.
_MAX_EVENTS_ASKED = 1000
# What a _lastUpdated catch-up searches for: everything that raises or retracts a signal (a
# no-show corrected to arrived or checked-in, or keyed in error, retracts it).
_SEARCHES = (("Appointment", "noshow,cancelled,fulfilled,arrived,checked-in,entered-in-error"),
             ("Encounter", "finished,in-progress,entered-in-error"))


class Recovery:
    """Tracks each subscription's event numbers and fetches what was missed."""

    def __init__(self, pipeline: Pipeline, client: FhirClient | None) -> None:
        self.pipeline, self.client = pipeline, client
        self.store, self.stats = pipeline.store, pipeline.stats
        self._events_offered: bool | None = None

    def track(self, notice: Notice, fresh: bool = True) -> None:
        """Record the newest event number; keep a recovery request when some were skipped.

        Numbers are the sender's, so never trusted to be sane: one that is not a plausible event
        number is counted and ignored (it must not switch gap detection off), and numbering
        that goes back, or a number seen before on a new event (``fresh``), is counted as an
        anomaly (a restarted server, or a forgery); gaps are then measured from the new numbers.
        Processing never depends on the numbers: dedupe includes the focus and the body.
        """
        numbers = [n for n in notice.event_numbers if 0 < n <= _MAX_EVENT_NUMBER]
        if len(numbers) < len(notice.event_numbers):
            self.stats["event numbering anomalies"] += 1
        since = notice.events_since_start
        newest = max(numbers, default=since if since and 0 <= since <= _MAX_EVENT_NUMBER else None)
        before = self.store.subscription_seen(notice.subscription or "", notice.kind, newest)
        self.stats[f"notifications {notice.kind}"] += 1
        if fresh and numbers and max(numbers) <= before:
            self.stats["event numbering anomalies"] += 1  # numbering restarted, or a repeat
        if numbers and before and min(numbers) > before + 1:
            self._gap(notice.subscription or "", before + 1, min(numbers) - 1)

    def _gap(self, subscription: str, since: int, until: int) -> None:
        """Events were lost on the way: ask for them ($events), or look by _lastUpdated."""
        self.stats["event gaps"] += 1
        request = {"subscription": subscription, "since": since, "until": until}
        self.store.inbox_put(CHANNEL, subscription, f"gap:{since}-{until}", "gap recovery",
                             orjson.dumps(request))

    async def recover(self, raw: bytes, origin: str) -> list[dict[str, Any]]:
        """The lost events: ``$events`` where the server offers it (its Bundle), else a search."""
        request = orjson.loads(raw)
        wide = request["until"] - request["since"] >= _MAX_EVENTS_ASKED
        if self.client is None or wide or not await self._offers_events():
            return await self.poll(origin, raw)
        subscription = str(request["subscription"]).rstrip("/").rsplit("/", 1)[-1]
        try:
            bundle = await self.client.operation(
                "Subscription", subscription, "$events",
                {"eventsSinceNumber": str(request["since"]),
                 "eventsUntilNumber": str(request["until"]), "content": "full-resource"})
        except DeliveryError as error:
            self.pipeline.reject(NotificationError(origin, f"$events failed: {error}"), raw)
            return await self.poll(origin, raw)
        self.stats["events recovered"] += 1
        return [bundle]

    async def poll(self, origin: str, raw: bytes) -> list[dict[str, Any]]:
        """An empty rest-hook POST or a gap: search what changed since the last look."""
        if self.client is None:
            return []
        # The first look goes back a day, not to the beginning: older events are history, read
        # per child on first sight (first_sight.py), not events to act on now.
        first_look = _stamp(datetime.now(UTC) - timedelta(days=1))
        since = self.store.meta("poll_since") or first_look
        now = _stamp(datetime.now(UTC))
        found: list[dict[str, Any]] = []
        for rtype, status in _SEARCHES:
            try:
                found += await self.client.search(rtype, {"status": status,
                                                          "_lastUpdated": f"ge{since}"})
            except DeliveryError as error:
                self.pipeline.reject(NotificationError(origin, f"search failed: {error}"), raw)
                return found
        self.store.set_meta("poll_since", now)
        return found

    async def _offers_events(self) -> bool:
        if self._events_offered is None and self.client is not None:
            try:
                capability = await self.client.metadata()
            except DeliveryError:
                return False
            self._events_offered = any(
                str(op.get("name", "")).lstrip("$") == "events"
                for rest in capability.get("rest", []) for res in rest.get("resource", [])
                if res.get("type") == "Subscription" for op in res.get("operation", []))
        return bool(self._events_offered)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

