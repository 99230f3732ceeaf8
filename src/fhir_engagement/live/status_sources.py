"""Asking national status services (CP-IS) about a child, with a cache and a time limit.

A child on a plan at another local authority is known to CP-IS, not to the hospital: without
asking, they would be treated as having no known status and get the slowest ladder (issue 12).
Each configured source is asked on first sight of a child and whenever an event about them comes
in, unless its answer is younger than the source's ``ttl`` (kept in the store, so replicas and
restarts share it). A source that does not answer within its ``timeout`` never holds a decision
back: the decision goes ahead on what is known, and its Tasks say the source was not reachable
(``pipeline.Pipeline._source_notes`` reads what is kept here). Asked again after
``_RETRY_UNREACHABLE`` seconds at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable

import aiohttp

from fhir_engagement.config import StatusSourceConfig
from fhir_engagement.errors import DeliveryError
from fhir_engagement.fhirserver.auth import status_source_token
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.identity import nhs_of
from fhir_engagement.ingest.careteam import read_careteam, subject_nhs_number
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.model import Event, PatientFacts
from fhir_engagement.pipeline import Pipeline, status_source_key

__all__ = ["StatusSources"]

_LOG = logging.getLogger(__name__)
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
_RETRY_UNREACHABLE = 60.0  # seconds: an outage is asked about again soon, not after a whole ttl
_MAX_PAGES = 2  # a child has a plan or two, never pages of them


class StatusSources:
    """The configured status services, one client each, sharing the adapter's HTTP session."""

    def __init__(self, pipeline: Pipeline, session: aiohttp.ClientSession,
                 sources: Iterable[StatusSourceConfig],
                 clock: Callable[[], float] = time.time) -> None:
        self.pipeline, self._clock = pipeline, clock
        self._clients = [
            (s, FhirClient(s.base, session, status_source_token(s, session), timeout=s.timeout,
                           max_pages=_MAX_PAGES, headers=s.headers))
            for s in sources]

    async def ask(self, records: list[Record]) -> None:
        """Ask about every child these records name whose NHS number is known."""
        for nhs, alias in self._children(records).items():
            for source, client in self._clients:
                await self._ask_one(source, client, alias, nhs)

    def _children(self, records: list[Record]) -> dict[str, str]:
        """NHS number -> an alias of the child: from Patient records in hand, else from what the
        store knows; one question per child, however many names the records give them."""
        found: dict[str, str] = {}
        store = self.pipeline.store
        for record in records:
            if isinstance(record, PatientFacts) and record.nhs_number and record.aliases:
                found.setdefault(record.nhs_number, record.aliases[0])
            elif isinstance(record, Event) and record.patient:
                child = store.child_of(record.patient)
                nhs = nhs_of(store, child.key) if child else None
                if nhs:
                    found.setdefault(nhs, record.patient)
        return found

    async def _ask_one(self, source: StatusSourceConfig, client: FhirClient,
                       alias: str, nhs: str) -> None:
        key = status_source_key(nhs)
        kept = _load(self.pipeline.store.meta(key))
        now = self._clock()
        last = kept.get(source.name)
        if last and now - last["at"] < (source.ttl if last["reachable"] else
                                        min(source.ttl, _RETRY_UNREACHABLE)):
            return
        try:
            async with asyncio.timeout(source.timeout):
                teams = await client.search("CareTeam",
                                            {"patient:identifier": f"{NHS_NUMBER}|{nhs}"})
        except (DeliveryError, TimeoutError) as exc:
            # no identifiers in the log: the source and what went wrong only
            _LOG.warning("status source %s not reachable: %s", source.name, type(exc).__name__)
            kept[source.name] = {"at": now, "reachable": False,
                                 "contacts": last["contacts"] if last else []}
        else:
            kept[source.name] = {"at": now, "reachable": True,
                                 "contacts": self._keep(teams, alias, nhs, source.name)}
        self.pipeline.store.set_meta(key, json.dumps(kept, sort_keys=True))

    def _keep(self, teams: list[dict[str, object]], alias: str, nhs: str, name: str) -> list[str]:
        contacts: list[str] = []
        for team in teams:
            named = subject_nhs_number(team)
            if named is not None and named != nhs:  # another child's plan: never theirs
                self.pipeline.stats[f"{name} answers about another child"] += 1
                continue
            fact, contact = read_careteam(team, alias, name)
            if fact is not None:
                self.pipeline.accept_context(fact)
                self.pipeline.stats[f"status from {name}"] += 1
            if contact and contact not in contacts:
                contacts.append(contact)
        return contacts


def _load(text: str | None) -> dict[str, dict[str, object]]:
    try:
        kept = json.loads(text) if text else {}
    except ValueError:
        return {}
    return kept if isinstance(kept, dict) else {}

