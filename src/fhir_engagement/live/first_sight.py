"""A child's past, read from the FHIR server the first time the live adapter meets them.

Patterns count across time: a child's second miss is "repeat" even when the first happened before
the adapter started. So on first sight of a child named as ``Patient/x`` the adapter reads their
Patient and active status Flags/Conditions (context), their Appointments and Encounters over the
rules' longest window (history, remembered without acting on it), and the WNB-letter Tasks it wrote
earlier (so "after a letter was asked" holds across deployments).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
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
    """Reads each new child's context and history once per process.

    The six reads a new child costs (Patient, Flags, Conditions, Appointments, Encounters, the
    adapter's own letter Tasks) go out together, not one after another: sequential, they were
    most of a first-seen child's time from push to Task (issue 15). They are applied in the
    order that matters: context, then history, then what was asked.
    """

    def __init__(self, pipeline: Pipeline, client: FhirClient) -> None:
        self.pipeline, self.client = pipeline, client
        self._seen: set[str] = set()  # children whose history was read in this process

    async def read(self, records: list[Record]) -> None:
        """Context and history for every child in ``records`` not met before."""
        current = {r.key for r in records if isinstance(r, Event)}
        for alias in _children(records):
            if alias in self._seen:
                continue
            pid = alias.split("/", 1)[1]
            known = self.pipeline.store.child_of(alias) is not None
            context, past, letters = await asyncio.gather(
                self._context(pid) if not known else _nothing(), self._past_events(pid),
                self._quietly(self.client.search(
                    "Task", {"patient": pid, "code": f"{ACTION}|send-wnb-letter"})))
            for record in self._records(context, f"context {alias}"):
                if not isinstance(record, Event):
                    self.pipeline.accept_context(record)
            self._seen.add(alias)
            for record in self._records(past, f"history {alias}"):
                if isinstance(record, Event) and record.key not in current:
                    self.pipeline.remember(record)
            self._past_asks(alias, letters)

    async def _context(self, pid: str) -> list[dict[str, Any]]:
        patient, flags, conditions = await asyncio.gather(
            self._quietly(self._one("Patient", pid)),
            self._quietly(self.client.search("Flag", {"patient": pid, "status": "active"})),
            self._quietly(self.client.search("Condition", {"patient": pid})))
        return patient + flags + conditions

    async def _one(self, rtype: str, rid: str) -> list[dict[str, Any]]:
        return [await self.client.read(rtype, rid)]

    async def _past_events(self, pid: str) -> list[dict[str, Any]]:
        patterns = self.pipeline.engine.rules.patterns
        window = max(patterns.not_brought_window_days, patterns.over_engagement_window_days)
        since = (datetime.now(UTC) - timedelta(days=window)).strftime("%Y-%m-%d")
        query = {"patient": pid, "date": f"ge{since}", "_count": "200"}
        appointments, encounters = await asyncio.gather(
            self._quietly(self.client.search("Appointment", query)),
            self._quietly(self.client.search("Encounter", query)))
        return appointments + encounters

    @staticmethod
    async def _quietly(read: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """A read the server refuses gives nothing: a child's past is a help, not a condition."""
        try:
            return await read
        except DeliveryError:
            return []

    def _past_asks(self, alias: str, letters: list[dict[str, Any]]) -> None:
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


async def _nothing() -> list[dict[str, Any]]:
    return []
