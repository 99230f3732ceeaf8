"""Live input, kept durably before it is acknowledged, then processed from the inbox.

The one visible rule of the live paths lives here: an HL7 v2 AA, or a 2xx to a FHIR push, is sent
only after the raw input is committed. The listeners (ingest/mllp.py, server.py) only frame and
route; this module decides the answer and feeds the pipeline.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_engagement.decisions.codesystems import ACTION
from fhir_engagement.errors import (
    DeliveryError,
    InputError,
    MessageError,
    NotificationError,
    StoreError,
)
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.fhir import Record, resource_path
from fhir_engagement.ingest.fhirtime import parse_datetime
from fhir_engagement.ingest.hl7v2 import build_ack, read_v2
from fhir_engagement.ingest.notifications import Notice, classify
from fhir_engagement.ingest.v2parse import V2Message, parse_message
from fhir_engagement.model import Event
from fhir_engagement.pipeline import Pipeline

__all__ = ["FhirInbox", "V2Inbox"]

_LOG = logging.getLogger(__name__)

_UNAVAILABLE = "the adapter cannot store messages now: send again"


class V2Inbox:
    """Accepts v2 messages for one pipeline and drains them through it."""

    def __init__(self, pipeline: Pipeline, channel: str = "mllp") -> None:
        self.pipeline, self.channel = pipeline, channel
        self.store, self.stats = pipeline.store, pipeline.stats

    def accept(self, raw: bytes, origin: str) -> tuple[bytes, bool]:
        """Keep one message durably, then answer it: (ACK, whether it is new).

        AA only after the message is committed to the inbox; AE (the message kept in the
        dead-letter store with the reason) when it cannot be parsed or mapped; AR when the store
        cannot keep it, so that the sender keeps it and sends it again. A message already
        received (same sender and MSH-10) is acknowledged again and not processed twice.
        """
        message = None
        try:
            message = parse_message(raw)
            read_v2(message, self.pipeline.engine.v2, origin)  # map now: unmappable is AE, not AA
        except MessageError as error:
            return self._refuse(message, raw, origin, error), False
        try:
            fresh = self.store.inbox_put(self.channel, message.sender, message.control_id, origin,
                                         raw)
            self.store.commit()
        except StoreError:
            return build_ack(message, "AR", _UNAVAILABLE), False
        self.stats["received" if fresh else "duplicates"] += 1
        return build_ack(message, "AA"), fresh

    def refuse_oversize(self, head: bytes, limit: int) -> bytes:
        """A frame over the size limit: AE, with its head kept, so the sender knows to split it."""
        try:
            message = parse_message(head.split(b"\r", 1)[0] + b"\r")
        except MessageError:
            message = None
        error = MessageError("MLLP frame", f"larger than the {limit:,}-byte limit")
        return self._refuse(message, head, self.channel, error)

    def drain(self, limit: int = 500) -> int:
        """Process up to ``limit`` stored messages in arrival order; returns how many."""
        rows = self.store.inbox_pending(limit, self.channel)
        for _, origin, raw in rows:
            try:
                records = read_v2(parse_message(raw), self.pipeline.engine.v2, origin)
            except MessageError as error:
                self.pipeline.reject(MessageError(f"{origin} ({error.where})", error.reason), raw)
                continue
            self.pipeline.apply(records, raw)
        if rows:
            self.store.inbox_done([row[0] for row in rows])
            self.store.commit()
        return len(rows)

    def _refuse(
        self, message: V2Message | None, raw: bytes, origin: str, error: MessageError
    ) -> bytes:
        try:
            self.store.dead_letter(f"{origin} ({error.where})", error.reason, raw)
            self.store.commit()
        except StoreError:
            return build_ack(message, "AR", _UNAVAILABLE)
        self.stats["rejected"] += 1
        return build_ack(message, "AE", error.reason, error.where)


class FhirInbox:
    """Accepts pushed FHIR bodies for one pipeline and drains them, fetching what they point at.

    ``accept`` answers the HTTP request: the body is committed to the inbox first (the 2xx means
    "kept"). ``drain`` is asynchronous because id-only and empty notifications name resources
    the adapter must read from the FHIR server, with the child's Patient and status.
    """

    def __init__(self, pipeline: Pipeline, client: FhirClient | None) -> None:
        self.pipeline, self.client = pipeline, client
        self.store, self.stats = pipeline.store, pipeline.stats
        self._seen: set[str] = set()  # children whose history was read in this process
        self._events_offered: bool | None = None

    def accept(self, body: bytes, origin: str, path_type: str | None = None,
               path_id: str | None = None) -> Notice:
        """Classify and keep one push; NotificationError (400) and StoreError (503) go up."""
        try:
            notice = classify(body, path_type, path_id)
        except NotificationError as error:
            self.store.dead_letter(f"{origin} ({error.where})", error.reason, body)
            self.store.commit()
            self.stats["rejected"] += 1
            _LOG.warning("refused a push to %s: %s (%s)", origin, error.reason, error.where)
            raise
        if notice.subscription:
            self._track(notice)
        if notice.kind not in ("handshake", "heartbeat"):
            fresh = self.store.inbox_put("fhir", notice.subscription or "push", notice.dedupe,
                                         origin, body)
            self.stats["received" if fresh else "duplicates"] += 1
        self.store.commit()
        return notice

    def _track(self, notice: Notice) -> None:
        newest = max(notice.event_numbers, default=notice.events_since_start)
        before = self.store.subscription_seen(notice.subscription or "", notice.kind, newest)
        self.stats[f"notifications {notice.kind}"] += 1
        first = min(notice.event_numbers, default=None)
        if first is not None and before and first > before + 1:
            # Events were lost on the way: ask for them ($events), or look by _lastUpdated.
            self.stats["event gaps"] += 1
            request = _recovery(notice.subscription or "", before + 1, first - 1)
            self.store.inbox_put("fhir", "recovery", f"gap:{notice.subscription}:{before}",
                                 "gap recovery", orjson.dumps(request))

    async def drain(self, limit: int = 200) -> int:
        """Process up to ``limit`` kept pushes in arrival order; returns how many."""
        rows = self.store.inbox_pending(limit, "fhir")
        for _, origin, raw in rows:
            records = await self._records(raw, origin)
            await self._context(records)
            await self._history(records)
            self.pipeline.apply(records, raw)
        if rows:
            self.store.inbox_done([row[0] for row in rows])
            self.store.commit()
            _LOG.info("processed %d pushes; %d events so far", len(rows), self.stats["events"])
        return len(rows)

    async def _records(self, raw: bytes, origin: str) -> list[Record]:
        notice = classify(raw)  # it was classified once already: cannot fail now
        if notice.document and _is_recovery(notice.document):
            return self._read_all(await self._recover(notice.document, origin, raw), origin, raw)
        documents = [notice.document] if notice.document else []
        documents += await self._fetch_all(notice.focus, origin, raw)
        if notice.kind == "poll" or _empty_event(notice):
            documents += await self._poll(origin, raw)
        return self._read_all(documents, origin, raw)

    def _read_all(self, documents: list[dict[str, Any]], origin: str, raw: bytes) -> list[Record]:
        records: list[Record] = []
        for document in documents:
            for record in self.pipeline.engine.reader.read(document, origin):
                if isinstance(record, InputError):
                    self.pipeline.reject(record, raw)
                else:
                    records.append(record)
        return records

    async def _recover(self, request: dict[str, Any], origin: str, raw: bytes) -> list[dict[str, Any]]:
        """Lost events: ``Subscription/{id}/$events`` where the server offers it, else a search."""
        values = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                  for p in request["parameter"]}
        if self.client is None or not await self._offers_events():
            return await self._poll(origin, raw)
        subscription = str(values["subscription"]).rstrip("/").rsplit("/", 1)[-1]
        try:
            bundle = await self.client.operation(
                "Subscription", subscription, "$events",
                {"eventsSinceNumber": str(values["eventsSinceNumber"]),
                 "eventsUntilNumber": str(values["eventsUntilNumber"]),
                 "content": "full-resource"})
        except DeliveryError as error:
            self.pipeline.reject(NotificationError(origin, f"$events failed: {error}"), raw)
            return await self._poll(origin, raw)
        self.stats["events recovered"] += 1
        notice = classify(orjson.dumps(bundle))
        return [bundle, *await self._fetch_all(notice.focus, origin, raw)]

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

    async def _fetch_all(self, references: tuple[str, ...], origin: str,
                         raw: bytes) -> list[dict[str, object]]:
        out = []
        for reference in references:
            found = await self._fetch(reference, origin, raw)
            if found is not None:
                out.append(found)
        return out

    async def _fetch(self, reference: str, origin: str, raw: bytes) -> dict[str, object] | None:
        if self.client is None:
            self.pipeline.reject(NotificationError(origin, f"{reference} is not included and no "
                                                   "FHIR server is configured to read it"), raw)
            return None
        rtype, _, rid = resource_path(reference).partition("/")
        try:
            return await self.client.read(rtype, rid)
        except DeliveryError as error:
            self.pipeline.reject(NotificationError(origin, f"cannot read {reference}: {error}"), raw)
            return None

    async def _poll(self, origin: str, raw: bytes) -> list[dict[str, object]]:
        """An empty rest-hook POST or a gap: search what changed since the last look."""
        if self.client is None:
            return []
        # The first look goes back a day, not to the beginning: older events are history, read
        # per child on first sight (_history), not events to act on now.
        first_look = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        since = self.store.meta("poll_since") or first_look
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        found: list[dict[str, object]] = []
        for rtype, status in (("Appointment", "noshow,cancelled,fulfilled"),
                              ("Encounter", "finished,in-progress,entered-in-error")):
            try:
                found += await self.client.search(rtype, {"status": status,
                                                          "_lastUpdated": f"ge{since}"})
            except DeliveryError as error:
                self.pipeline.reject(NotificationError(origin, f"search failed: {error}"), raw)
                return found
        self.store.set_meta("poll_since", now)
        return found

    async def _context(self, records: list[Record]) -> None:
        """On first sight of a child named as Patient/x: their Patient and status Flags."""
        if self.client is None:
            return
        for alias in self._new_children(records):
            pid = alias.split("/", 1)[1]
            documents: list[dict[str, object]] = []
            with contextlib.suppress(DeliveryError):
                documents.append(await self.client.read("Patient", pid))
                documents += await self.client.search("Flag", {"patient": pid, "status": "active"})
                documents += await self.client.search("Condition", {"patient": pid})
            for document in documents:
                for record in self.pipeline.engine.reader.read(document, f"context {alias}"):
                    if not isinstance(record, InputError | Event):
                        self.pipeline.accept_context(record)

    def _new_children(self, records: list[Record]) -> list[str]:
        aliases = {r.patient for r in records if isinstance(r, Event) and r.patient}
        return sorted(a for a in aliases if a.startswith("Patient/") and a not in self._seen
                      and self.store.child_of(a) is None)

    async def _history(self, records: list[Record]) -> None:
        """On first sight of a child: their Appointments and Encounters over the rules' longest
        window, and the adapter's own earlier Tasks, so patterns count what came before."""
        if self.client is None:
            return
        current = {r.key for r in records if isinstance(r, Event)}
        window = max(self.pipeline.engine.rules.patterns.not_brought_window_days,
                     self.pipeline.engine.rules.patterns.over_engagement_window_days)
        since = (datetime.now(UTC) - timedelta(days=window)).strftime("%Y-%m-%d")
        for alias in {r.patient for r in records if isinstance(r, Event) and r.patient}:
            if not alias.startswith("Patient/") or alias in self._seen:
                continue
            self._seen.add(alias)
            await self._past_events(alias, since, current)
            await self._past_asks(alias)

    async def _past_events(self, alias: str, since: str, current: set[str]) -> None:
        pid = alias.split("/", 1)[1]
        found: list[dict[str, object]] = []
        with contextlib.suppress(DeliveryError):
            found += await self.client.search(  # type: ignore[union-attr]
                "Appointment", {"patient": pid, "date": f"ge{since}", "_count": "200"})
            found += await self.client.search(  # type: ignore[union-attr]
                "Encounter", {"patient": pid, "date": f"ge{since}", "_count": "200"})
        for document in found:
            for record in self.pipeline.engine.reader.read(document, f"history {alias}"):
                if isinstance(record, Event) and record.key not in current:
                    self.pipeline.remember(record)

    async def _past_asks(self, alias: str) -> None:
        with contextlib.suppress(DeliveryError):
            letters = await self.client.search(  # type: ignore[union-attr]
                "Task", {"patient": alias.split("/", 1)[1], "code": f"{ACTION}|send-wnb-letter"})
            for task in letters:
                at = parse_datetime(str(task.get("authoredOn", "")))
                if at is not None:
                    self.pipeline.remember_asked(alias, f"Task/{task['id']}", at,
                                                 frozenset({"send-wnb-letter"}))



def _empty_event(notice: Notice) -> bool:
    """An event notification with ``empty`` content: no focus given, nothing included."""
    if notice.kind != "event-notification" or notice.focus or notice.document is None:
        return False
    entries = notice.document.get("entry", [])
    return not any(isinstance(e, dict) and "resource" in e for e in entries[1:])


def _recovery(subscription: str, since: int, until: int) -> dict[str, Any]:
    """What the worker must ask for: a Parameters resource, kept in the inbox like any push."""
    return {"resourceType": "Parameters", "id": "fhir-engagement-recovery", "parameter": [
        {"name": "subscription", "valueString": subscription},
        {"name": "eventsSinceNumber", "valueInteger": since},
        {"name": "eventsUntilNumber", "valueInteger": until}]}


def _is_recovery(document: dict[str, Any]) -> bool:
    return document.get("resourceType") == "Parameters" and document.get(
        "id") == "fhir-engagement-recovery"
