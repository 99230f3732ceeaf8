"""A child's past, read from the FHIR server the first time the live adapter meets them.

Patterns count across time: a child's second miss is "repeat" even when the first happened before
the adapter started. So on first sight of a child named as ``Patient/x`` the adapter reads their
Patient and active status Flags/Conditions (context), their Appointments and Encounters over the
rules' longest window (history, remembered without acting on it), and the WNB-letter Tasks it wrote
earlier (so "after a letter was asked" holds across deployments).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_engagement.decisions.codesystems import ACTION
from fhir_engagement.errors import DeliveryError
from fhir_engagement.fhirserver.client import FhirClient
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.ingest.fhirtime import parse_datetime
from fhir_engagement.model import Event
from fhir_engagement.pipeline import Pipeline

__all__ = ["FirstSight"]


class FirstSight:
    """Reads each new child's context and history once per process."""

    def __init__(self, pipeline: Pipeline, client: FhirClient) -> None:
        self.pipeline, self.client = pipeline, client
        self._seen: set[str] = set()  # children whose history was read in this process

    async def read(self, records: list[Record]) -> None:
        """Context and history for every child in ``records`` not met before."""
        current = {r.key for r in records if isinstance(r, Event)}
        for alias in _children(records):
            if alias in self._seen:
                continue
            if self.pipeline.store.child_of(alias) is None:
                await self._context(alias)
            self._seen.add(alias)
            await self._past_events(alias, current)
            await self._past_asks(alias)

    async def _context(self, alias: str) -> None:
        pid = alias.split("/", 1)[1]
        documents: list[dict[str, Any]] = []
        with contextlib.suppress(DeliveryError):
            documents.append(await self.client.read("Patient", pid))
            documents += await self.client.search("Flag", {"patient": pid, "status": "active"})
            documents += await self.client.search("Condition", {"patient": pid})
        for record in self._records(documents, f"context {alias}"):
            if not isinstance(record, Event):
                self.pipeline.accept_context(record)

    async def _past_events(self, alias: str, current: set[str]) -> None:
        pid = alias.split("/", 1)[1]
        patterns = self.pipeline.engine.rules.patterns
        window = max(patterns.not_brought_window_days, patterns.over_engagement_window_days)
        since = (datetime.now(UTC) - timedelta(days=window)).strftime("%Y-%m-%d")
        found: list[dict[str, Any]] = []
        with contextlib.suppress(DeliveryError):
            for rtype in ("Appointment", "Encounter"):
                found += await self.client.search(
                    rtype, {"patient": pid, "date": f"ge{since}", "_count": "200"})
        for record in self._records(found, f"history {alias}"):
            if isinstance(record, Event) and record.key not in current:
                self.pipeline.remember(record)

    async def _past_asks(self, alias: str) -> None:
        with contextlib.suppress(DeliveryError):
            letters = await self.client.search(
                "Task", {"patient": alias.split("/", 1)[1], "code": f"{ACTION}|send-wnb-letter"})
            for task in letters:
                at = parse_datetime(str(task.get("authoredOn", "")))
                if at is not None and isinstance(task.get("id"), str):
                    self.pipeline.remember_asked(alias, f"Task/{task['id']}", at,
                                                 frozenset({"send-wnb-letter"}))

    def _records(self, documents: list[dict[str, Any]], origin: str) -> list[Record]:
        """What the server sent, read like any input; what cannot be read is simply not used."""
        records: list[Record] = []
        for document in documents:
            records += self.pipeline.engine.records.read_document(document, origin).records
        return records


def _children(records: list[Record]) -> list[str]:
    aliases = {r.patient for r in records if isinstance(r, Event) and r.patient}
    return sorted(a for a in aliases if a.startswith("Patient/"))
