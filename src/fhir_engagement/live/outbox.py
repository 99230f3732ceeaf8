"""The outbox: deliver each decision's Flag, Tasks and Provenance to the FHIR server, once.

Every decision is queued in the store (``deliveries``) in the same commit as the decision itself,
so a crash or a FHIR server outage loses nothing: what is not delivered stays pending and is sent
when the server answers again. Each batch is one transaction Bundle of conditional writes, so
sending it twice writes nothing twice; that is why every failure that may be transient is retried.

Sorting failures (fhir_client.py names them): no answer, 408, 429, 5xx -> retried now a few times
with jittered exponential backoff that honours Retry-After, then rescheduled; 401/403 -> one new
token (in the client), then dead-lettered if still refused; any other 4xx -> dead-lettered with
the server's OperationOutcome, for a person to look at (``deadletter`` command, a later issue).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
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
from fhir_engagement.errors import (
    AuthRequiredError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from fhir_engagement.fhirserver.auth import token_source
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.store.base import Store

__all__ = ["DeliveryReport", "Outbox", "deliver_pending"]

_LOG = logging.getLogger(__name__)


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
        max_backoff: float = 60.0, batch_limit: int = 200,
    ) -> None:
        self.store, self.client = store, client
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

    async def run(self, wake: asyncio.Event, idle: float = 1.0) -> None:
        """Serve mode: deliver whenever woken, and at least every ``idle`` seconds."""
        while True:
            await self.run_once()
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle)

    async def _deliver(self, batch: str, attempts: int) -> DeliveryReport:
        rows = self.store.delivery_outputs(batch)
        bundle = transaction((r.id, r.kind, r.resource) for r in rows)
        try:
            await self._send(bundle)
        except RetryableDeliveryError as error:
            delay = self._backoff(attempts, error)
            when = datetime.now(UTC) + timedelta(seconds=delay)
            self.store.delivery_retry(batch, when, str(error))
            _LOG.warning("delivery %s rescheduled in %.0f s: %s", batch, delay, error)
            return DeliveryReport(rescheduled=1)
        except (PermanentDeliveryError, AuthRequiredError) as error:
            self.store.delivery_dead(batch, str(error))
            self.store.dead_letter(f"delivery {batch}", str(error), orjson.dumps(bundle))
            _LOG.error("delivery %s refused, kept in the dead-letter store: %s", batch, error)
            return DeliveryReport(dead=1)
        self.store.delivery_done(batch)
        _LOG.info("delivery %s written (%d resources)", batch, len(rows))
        return DeliveryReport(delivered=1)

    async def _send(self, bundle: dict[str, Any]) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableDeliveryError),
            wait=self._wait, stop=stop_after_attempt(self.tries), reraise=True)
        async for attempt in retrying:
            with attempt:
                guarded = await self._guard_flags(copy.deepcopy(bundle))  # re-read each try
                try:
                    await self.client.transaction(guarded)
                except PermanentDeliveryError as error:
                    if error.status == HTTPStatus.PRECONDITION_FAILED and "conflict" in str(
                            error).lower():
                        # Someone changed the Flag between our read and our write: read again.
                        raise RetryableDeliveryError(error.status, error.reason) from error
                    raise

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
        return await Outbox(store, client).drain(settings.deliver_timeout)


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
