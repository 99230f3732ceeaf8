"""FHIR pushes (rest-hook, topic notifications, plain resources): kept before the 2xx, then drained.

``accept`` answers the HTTP request: the body is committed to the inbox first (the 2xx means
"kept"). Pushes that arrive together (one turn of the event loop: the concurrent connections of one
sender) are kept in one commit, and each is answered only after that commit; the group is put and
committed in one synchronous step, so nothing else on the loop (the worker's rollback of an item
that failed) can come between a push being put and its commit. One commit a push was ~140 us of the
~500 us a push costs the server (cProfile, ``bench/listener_bench.py``). ``drain`` is asynchronous
because id-only and empty notifications name resources the adapter must read from the FHIR server;
what it reads goes through ingest/records.py like any input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from fhir_engagement.errors import DeliveryError, NotificationError
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.ingest.notifications import Notice, classify
from fhir_engagement.ingest.records import Read
from fhir_engagement.ingest.references import resource_path
from fhir_engagement.live import recovery
from fhir_engagement.live.first_sight import FirstSight
from fhir_engagement.live.recovery import Recovery
from fhir_engagement.live.status_sources import StatusSources
from fhir_engagement.live.workers import drain_items, off_loop_if_large
from fhir_engagement.pipeline import Pipeline

__all__ = ["FhirInbox"]

_LOG = logging.getLogger(__name__)
CHANNEL = "fhir"


class FhirInbox:
    """Accepts pushed FHIR bodies for one pipeline and drains them, fetching what they point at."""

    def __init__(self, pipeline: Pipeline, client: FhirClient | None,
                 max_attempts: int = 3) -> None:
        self.pipeline, self.client, self.max_attempts = pipeline, client, max_attempts
        self.store, self.stats = pipeline.store, pipeline.stats
        self.committed: Callable[[], None] | None = None  # serve: wakes the outbox (workers.py)
        self.recovery = Recovery(pipeline, client)
        self.first_sight = FirstSight(pipeline, client) if client is not None else None
        self.status: StatusSources | None = None  # serve with status_sources (CP-IS)
        self._group: list[_Push] = []  # classified, waiting for the next group commit

    async def accept(self, body: bytes, origin: str, path_type: str | None = None,
                     path_id: str | None = None) -> Notice:
        """Classify and keep one push; NotificationError (400) and StoreError (503) go up."""
        try:
            notice = await off_loop_if_large(len(body), classify, body, path_type, path_id)
        except NotificationError as error:
            self.store.dead_letter(f"{origin} ({error.where})", error.reason, body)
            self.store.commit()
            self.stats["rejected"] += 1
            _LOG.warning("refused a push to %s: %s", origin.split(" ", 1)[-1], type(error).__name__)
            raise
        push = _Push(notice, origin, body, asyncio.get_running_loop().create_future())
        if not self._group:
            asyncio.get_running_loop().call_soon(self._keep_group)
        self._group.append(push)
        await asyncio.shield(push.kept)  # a client gone meanwhile must not undo the others' commit
        return notice

    def _keep_group(self) -> None:
        """Put every push of the group, commit once, then let each be answered.

        A push whose put fails alone gets its own error; a failed commit fails them all (503:
        the senders send again, and dedupe makes a resend that was kept after all a duplicate).
        """
        group, self._group = self._group, []
        failed: dict[int, Exception] = {}
        for index, push in enumerate(group):
            try:
                self._put(push)
            except Exception as exc:  # this push's answer (a StoreError: 503); the others go on
                failed[index] = exc
        try:
            self.store.commit()
        except Exception as exc:
            failed = dict.fromkeys(range(len(group)), exc)
        for index, push in enumerate(group):
            if index in failed:
                push.kept.set_exception(failed[index])
            else:
                push.kept.set_result(None)

    def _put(self, push: _Push) -> None:
        notice, fresh = push.notice, True
        if notice.kind not in ("handshake", "heartbeat"):
            fresh = self.store.inbox_put(CHANNEL, notice.subscription or "push", notice.dedupe,
                                         push.origin, push.body)
            self.stats["received" if fresh else "duplicates"] += 1
        if notice.subscription:
            self.recovery.track(notice, fresh)

    async def drain(self, limit: int = 200) -> int:
        """Process up to ``limit`` kept items (recoveries first, then pushes); returns how many."""
        done = await drain_items(self.store, recovery.CHANNEL, limit, self._recover, self.stats,
                                 self.max_attempts, self.committed)
        done += await drain_items(self.store, CHANNEL, limit, self._process, self.stats,
                                  self.max_attempts, self.committed)
        if done:
            _LOG.info("processed %d pushes; %d events so far", done, self.stats["events"])
        return done

    async def _recover(self, origin: str, raw: bytes) -> None:
        found = await self.recovery.recover(raw, origin)
        await self._apply(found + await self._fetch_all(_focus_of(found), origin, raw), origin, raw)

    async def _process(self, origin: str, raw: bytes) -> None:
        await self._apply(await self._documents(raw, origin), origin, raw)

    async def _apply(self, documents: list[dict[str, Any]], origin: str, raw: bytes) -> None:
        reads = await off_loop_if_large(len(raw), self._read, documents, origin, raw)
        records: list[Record] = []
        for read in reads:  # the store is the loop's: rejections are kept here, not in a thread
            for error in read.rejected:
                self.pipeline.reject(error, raw)
            records += read.records
        if self.first_sight is not None:
            await self.first_sight.read(records)
        if self.status is not None:  # after first sight: the child's NHS number is known then
            await self.status.ask(records)
        self.pipeline.apply(records, raw, origin)

    async def _documents(self, raw: bytes, origin: str) -> list[dict[str, Any]]:
        """The FHIR documents one kept push stands for: included, fetched, or searched for."""
        # classified once already, on accept: not walked for depth again
        notice = await off_loop_if_large(len(raw), partial(classify, kept=True), raw)
        documents = [notice.document] if notice.document else []
        documents += await self._fetch_all(notice.focus, origin, raw)
        if notice.kind == "poll" or _empty_event(notice):
            documents += await self.recovery.poll(origin, raw)
        return documents

    def _read(self, documents: list[dict[str, Any]], origin: str, raw: bytes) -> list[Read]:
        """Pure: may run in a thread."""
        return [self.pipeline.engine.records.read_document(d, origin, raw) for d in documents]

    async def _fetch_all(self, references: tuple[str, ...], origin: str,
                         raw: bytes) -> list[dict[str, Any]]:
        out = []
        for reference in references:
            found = await self._fetch(reference, origin, raw)
            if found is not None:
                out.append(found)
        return out

    async def _fetch(self, reference: str, origin: str, raw: bytes) -> dict[str, Any] | None:
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


@dataclass(slots=True)
class _Push:
    """A classified push waiting for its group's commit; ``kept`` is done once it is durable."""

    notice: Notice
    origin: str
    body: bytes
    kept: asyncio.Future[None]


def _focus_of(documents: list[dict[str, Any]]) -> tuple[str, ...]:
    """What an id-only ``$events`` answer names, to be read from the server."""
    focus: list[str] = []
    for document in documents:
        try:
            focus += classify(orjson.dumps(document)).focus
        except NotificationError:
            continue  # not a notification Bundle: its entries are read as they are
    return tuple(focus)


def _empty_event(notice: Notice) -> bool:
    """An event notification with ``empty`` content: no focus given, nothing included."""
    if notice.kind != "event-notification" or notice.focus or notice.document is None:
        return False
    entries = notice.document.get("entry", [])
    return not any(isinstance(e, dict) and "resource" in e for e in entries[1:])
