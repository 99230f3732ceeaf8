"""What the pipeline and the reports may ask of durable state. SQLite today; PostgreSQL later.

A child's history, what was already asked for, and every output written are kept here, so patterns
and idempotency hold across runs and restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fhir_engagement.model import HistoryItem, PatientFacts, StatusFact

__all__ = ["ChildRecord", "OutputRow", "SignalRow", "Store"]


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """The child an alias resolves to: canonical key and birth date (FHIR date, maybe partial)."""

    key: str
    birth_date: str | None


@dataclass(frozen=True, slots=True)
class SignalRow:
    """A signal already recorded for an event key."""

    child: str
    signal: str
    occurred: datetime
    retracted: bool
    situation: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class OutputRow:
    """A resource the adapter has decided to write."""

    id: str
    kind: str
    child: str
    resource: bytes


class Store(Protocol):
    """Durable state. Writes are grouped: nothing is durable until ``commit``."""

    def start_run(self, description: str) -> int: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...

    def add_patient(self, facts: PatientFacts) -> None: ...
    def child_of(self, alias: str) -> ChildRecord | None: ...
    def add_status(self, fact: StatusFact) -> None: ...
    def status_facts(self, child: str) -> list[StatusFact]: ...

    def event_alias(self, alias: str) -> str | None: ...
    def add_event_aliases(self, aliases: Sequence[str], event_key: str) -> None: ...

    def signals_of(self, event_key: str) -> dict[str, SignalRow]: ...
    def history_before(self, child: str, at: datetime) -> Sequence[HistoryItem]: ...
    def add_signal(
        self, child: str, item: HistoryItem, band: str, origin: str, version: str = ""
    ) -> None: ...
    def retract(self, event_key: str, signal: str) -> None: ...

    def has_output(self, output_id: str) -> bool: ...
    def output(self, output_id: str) -> OutputRow | None: ...
    def put_output(self, row: OutputRow, run: int) -> None: ...
    def run_outputs(self, run: int) -> list[OutputRow]: ...

    def dead_letter(self, origin: str, reason: str, raw: bytes) -> None: ...
    def dead_letters(self) -> list[tuple[str, str, bytes]]: ...
