"""The outbox: deliver each decision's Flag, Tasks and Provenance to the FHIR server, once.

Every decision is queued in the store (``deliveries``) in the same commit as the decision itself,
so a crash or a FHIR server outage loses nothing: what is not delivered stays pending and is sent
when the server answers again. Each batch is one transaction Bundle of conditional writes, so
sending it twice writes nothing twice; that is why every failure that may be transient is retried.

Sorting failures (fhirserver/client.py names them): no answer, 408, 429, 5xx -> retried now a few
times with jittered exponential backoff that honours Retry-After, then rescheduled; 409/412 (a Flag
changed between our read and our write) -> the Flag re-read and the batch rebuilt, the same few
times, then dead-lettered; 401/403 -> one new token (in the client), then dead-lettered if still
refused; any other 4xx, or a malformed answer -> dead-lettered with the reason, for a person to
look at (``deadletter`` command). Anything else going wrong with one batch (a bug, an answer nobody
foresaw) makes that batch a dead letter too: one bad batch never stops the worker.

Before a batch goes, the child it names by conditional reference (``Patient?identifier=``) is
named by the target server's literal ``Patient/{id}`` (live/patients.py, cached in the store), or
by identifier when the server holds no such Patient or several. A 404/410 to a batch that named a
cached Patient (merged or deleted on the server) forgets those answers and sends it once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from fhir_engagement.config import Settings
from fhir_engagement.decisions.bundle import transaction
from fhir_engagement.decisions.flag import never_lower
from fhir_engagement.decisions.references import Criterion, patient_criteria, resolve_patients
from fhir_engagement.errors import (
    ConflictError,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    StoreError,
)
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.live.patients import DEFAULT_TTL, PatientDirectory
from fhir_engagement.store.base import Store

__all__ = ["DeliveryReport", "Outbox", "deliver_pending"]

_LOG = logging.getLogger(__name__)
_GONE = frozenset({HTTPStatus.NOT_FOUND, HTTPStatus.GONE})


@dataclass
class DeliveryReport:
    """What one pass over the due batches did."""

    delivered: int = 0
    rescheduled: int = 0
    dead: int = 0
    pending: int = 0

    def __iadd__(self, other: DeliveryReport) -> DeliveryReport:
        self.delivered += other.delivered
        self.rescheduled += other.rescheduled
        self.dead += other.dead
        return self


class Outbox:
    """Sends due batches through one client; ``run_once`` for replay and tests, ``run`` for serve."""

    def __init__(
        self, store: Store, client: FhirClient, *, tries: int = 4, max_wait: float = 10.0,
        max_backoff: float = 60.0, batch_limit: int = 200, patient_ttl: float = DEFAULT_TTL,
    ) -> None:
        self.store, self.client = store, client
        self.patients = PatientDirectory(store, client, patient_ttl)
        self.tries, self.max_wait, self.max_backoff = tries, max_wait, max_backoff
        self.batch_limit = batch_limit

    async def run_once(self) -> DeliveryReport:
        """Send every batch that is due now, in decision order."""
        report = DeliveryReport()
        for batch, attempts in self.store.due_deliveries(datetime.now(UTC), self.batch_limit):
            report += await self._deliver(batch, attempts)
            self.store.commit()
        return report

    async def drain(self, deadline: float) -> DeliveryReport:
        """Keep sending until nothing is pending or ``deadline`` (seconds) has passed."""
        report = DeliveryReport()
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while self.store.delivery_counts().get("pending", 0) and loop.time() < end:
            report += await self.run_once()
            if self.store.delivery_counts().get("pending", 0):
                await asyncio.sleep(min(1.0, max(end - loop.time(), 0)))
        return report

    async def run(self, wake: asyncio.Event, idle: float = 1.0,
                  lease: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve mode: deliver whenever woken (each committed decision sets ``wake``), and at
        least every ``idle`` seconds: a rescheduled batch falls due with no decision to wake it.

        It ends only when cancelled. A batch's own failure is contained in ``_deliver``; what
        reaches here is the store failing, which no batch caused: logged, tried again later.
        ``lease`` is awaited before each pass: with several replicas only the lease holder sends.
        """
        while True:
            if lease is not None:
                await lease()
            # Cleared before the pass, not after: a decision committed while a batch is on the
            # wire sets it again, and the next pass starts at once instead of after ``idle``.
            wake.clear()
            try:
                await self.run_once()
            except Exception as exc:  # the worker outlives a failed pass; cancellation ends it
                _LOG.error("a delivery pass failed, trying again: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):  # no task per wait: it turns per decision
                    await wake.wait()

    async def _deliver(self, batch: str, attempts: int) -> DeliveryReport:
        """Send one batch and sort how it failed: the one place a batch's failure is contained.

        A StoreError goes up: the store, not the batch, is at fault, and nothing can be recorded.
        """
        rows = self.store.delivery_outputs(batch)
        bundle: dict[str, Any] = {}
        try:
            bundle = transaction((r.id, r.kind, r.resource) for r in rows)
            await self._send_named(bundle)
        except RetryableDeliveryError as error:
            return self._reschedule(batch, attempts, error)
        except DeliveryError as error:  # refused, still conflicting, or a malformed answer
            # The status, never the server's diagnostics: those can quote the resource.
            _LOG.error("delivery %s refused (HTTP %s, %s), kept in the dead-letter store",
                       batch, error.status or "no answer", type(error).__name__)
            return self._dead(batch, str(error), bundle)
        except StoreError:
            raise
        except Exception as exc:  # a bug or an answer nobody foresaw: this batch only
            _LOG.error("delivery %s failed unexpectedly, kept in the dead-letter store: %s",
                       batch, type(exc).__name__)
            reason = f"could not be delivered ({type(exc).__name__}); kept for a person to look at"
            return self._dead(batch, reason, bundle)
        self.store.delivery_done(batch)
        _LOG.info("delivery %s written (%d resources)", batch, len(rows))
        return DeliveryReport(delivered=1)

    def _reschedule(
        self, batch: str, attempts: int, error: RetryableDeliveryError
    ) -> DeliveryReport:
        delay = self._backoff(attempts, error)
        when = datetime.now(UTC) + timedelta(seconds=delay)
        self.store.delivery_retry(batch, when, str(error))
        _LOG.warning("delivery %s rescheduled in %.0f s (HTTP %s)", batch, delay,
                     error.status or "no answer")
        return DeliveryReport(rescheduled=1)

    def _dead(self, batch: str, reason: str, bundle: dict[str, Any]) -> DeliveryReport:
        """The batch leaves the queue and waits, with its reason, for a person."""
        self.store.delivery_dead(batch, reason)
        self.store.dead_letter(f"delivery {batch}", reason, orjson.dumps(bundle))
        return DeliveryReport(dead=1)

    async def _send_named(self, bundle: dict[str, Any]) -> None:
        """Send the batch with its children named as the server knows them.

        A 404/410 to a batch that named a Patient from the store may mean the Patient was merged
        or deleted since: those answers are forgotten and the batch goes once more, asked afresh.
        A second refusal is the batch's own (dead-lettered as any other).
        """
        criteria = set().union(*(patient_criteria(e["resource"]) for e in bundle["entry"]))
        resolution = await self.patients.resolve(criteria)
        try:
            await self._send(_named(bundle, resolution.answers))
        except PermanentDeliveryError as error:
            if error.status not in _GONE or not resolution.cached:
                raise
            _LOG.warning("delivery refused (HTTP %s) naming %d Patient(s) from the cache; "
                         "asking the server again", error.status, len(resolution.cached))
            self.patients.forget(resolution.cached)
            fresh = await self.patients.resolve(criteria)
            await self._send(_named(bundle, fresh.answers))

    async def _send(self, bundle: dict[str, Any]) -> None:
        """The transaction, tried again on a transient failure or a version conflict.

        On a conflict someone changed a Flag between our read and our write: each try re-reads
        the Flags and rebuilds the batch, so it is the new request that goes, not the stale one.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((RetryableDeliveryError, ConflictError)),
            wait=self._wait, stop=stop_after_attempt(self.tries), reraise=True)
        async for attempt in retrying:
            with attempt:
                guarded = await self._guard_flags(copy.deepcopy(bundle))  # re-read each try
                await self.client.transaction(guarded)

    async def _guard_flags(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Write each Flag over what the server holds now, never lowering it, never reviving it.

        A Flag a clinician ended (status not active) is left as it is: the decision's Tasks point
        at it. An active one is merged (nothing lowered) and written to ``Flag/{id}`` with
        If-Match on the version just read, so a change made meanwhile is not overwritten.
        """
        for entry in [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Flag"]:
            ident = entry["resource"]["identifier"][0]
            found = await self.client.search(
                "Flag", {"identifier": f"{ident['system']}|{ident['value']}"})
            if not found:
                continue  # the conditional update creates it
            theirs = found[0]
            _repoint(bundle, entry["fullUrl"], f"Flag/{theirs['id']}")
            if theirs.get("status") != "active":
                bundle["entry"].remove(entry)
                continue
            entry["fullUrl"] = f"{self.client.base_url}/Flag/{theirs['id']}"
            entry["resource"] = never_lower(entry["resource"], theirs)
            version = (theirs.get("meta") or {}).get("versionId")
            entry["request"] = {"method": "PUT", "url": f"Flag/{theirs['id']}"}
            if version:
                entry["request"]["ifMatch"] = f'W/"{version}"'
        return bundle

    def _wait(self, state: RetryCallState) -> float:
        """Jittered exponential backoff, but never sooner than the server's Retry-After."""
        jitter = wait_random_exponential(multiplier=0.2, max=self.max_wait)(state)
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return min(max(jitter, asked), self.max_wait)

    def _backoff(self, attempts: int, error: RetryableDeliveryError) -> float:
        """When to try a batch again after a failed pass: grows with its attempts, jittered."""
        base = min(self.max_backoff, 2.0 ** min(attempts, 6))
        return max(error.retry_after or 0.0, base * random.uniform(0.5, 1.0))


async def deliver_pending(store: Store, settings: Settings) -> DeliveryReport:
    """Send what is pending to the settings' FHIR server, for at most ``deliver_timeout`` s."""
    async with aiohttp.ClientSession() as session:
        client = FhirClient(settings.fhir_base or "", session, token_source(settings, session))
        outbox = Outbox(store, client, patient_ttl=settings.server_patient_ttl)
        return await outbox.drain(settings.deliver_timeout)


def _named(bundle: dict[str, Any], answers: Mapping[Criterion, str | None]) -> dict[str, Any]:
    """A new Bundle, each entry's conditional Patient references resolved; the batch as stored
    (and as a dead letter keeps it) stays conditional, to be resolved afresh when retried."""
    return {**bundle, "entry": [{**e, "resource": resolve_patients(e["resource"], answers)}
                                for e in bundle["entry"]]}


def _repoint(bundle: dict[str, Any], old: str, new: str) -> None:
    """References to a Flag's urn:uuid, made literal: the Flag is already on the server."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        reason = resource.get("reasonReference")
        if isinstance(reason, dict) and reason.get("reference") == old:
            reason["reference"] = new
        for target in resource.get("target", []):
            if target.get("reference") == old:
                target["reference"] = new
