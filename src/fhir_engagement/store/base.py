"""What the adapter may ask of durable state, one Protocol per role: SQLite or PostgreSQL.

A child's history, what was already asked for, and every output written are kept here, so patterns
and idempotency hold across runs and restarts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fhir_engagement.model import HistoryItem, PatientFacts, StatusFact

__all__ = [
    "Access",
    "AppointmentCount",
    "Audit",
    "ChildHistory",
    "ChildRecord",
    "ChildSignal",
    "DeadLetters",
    "DeliveryQueue",
    "Inbox",
    "InboxRow",
    "OutputRow",
    "Outputs",
    "ReplayBundles",
    "Replicas",
    "ReportQueries",
    "ServerPatient",
    "ServerPatients",
    "SignalRow",
    "SituationRow",
    "Store",
    "StoreHealth",
    "Transactional",
]


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
class InboxRow:
    """One kept input as an operator lists it: where and why, never its content."""

    id: int
    received: str
    channel: str
    origin: str
    state: str
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class OutputRow:
    """A resource the adapter has decided to write."""

    id: str
    kind: str
    child: str
    resource: bytes


class Transactional(Protocol):
    """Writes are grouped: nothing is durable until ``commit``; ``rollback`` forgets them."""

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class ChildHistory(Protocol):
    """Children (aliases, birth dates, known status) and each child's signals over time."""

    def add_patient(self, facts: PatientFacts, child: str) -> None: ...
    def child_of(self, alias: str) -> ChildRecord | None: ...
    def aliases_of(self, child: str) -> frozenset[str]: ...
    def merge_children(self, old: str, into: str) -> None: ...
    def add_status(self, fact: StatusFact) -> None: ...
    def status_facts(self, child: str) -> list[StatusFact]: ...

    def event_alias(self, alias: str) -> str | None: ...
    def add_event_aliases(self, aliases: Sequence[str], event_key: str) -> None: ...

    def signals_of(self, event_key: str) -> dict[str, SignalRow]: ...
    def prefetch(self, event_keys: Collection[str], event_aliases: Collection[str],
                 patients: Collection[str]) -> None: ...
    def history_before(self, child: str, at: datetime) -> Sequence[HistoryItem]: ...
    def add_signal(
        self, child: str, item: HistoryItem, band: str, origin: str, version: str = ""
    ) -> None: ...
    def retract(self, event_key: str, signal: str) -> None: ...


class Outputs(Protocol):
    """The resources the adapter decided to write, per run (deterministic ids: written once)."""

    def start_run(self, description: str) -> int: ...
    def has_output(self, output_id: str) -> bool: ...
    def output(self, output_id: str) -> OutputRow | None: ...
    def put_output(self, row: OutputRow, run: int) -> None: ...
    def run_outputs(self, run: int) -> list[OutputRow]: ...
    def iter_outputs(
        self, *, run: int | None = None, bundle: str | None = None
    ) -> Iterator[OutputRow]: ...


class DeliveryQueue(Protocol):
    """The outbox: one batch per decision, queued in the decision's commit, sent until written."""

    def enqueue_delivery(self, batch: str, child: str, output_ids: Sequence[str]) -> None: ...
    def due_deliveries(self, now: datetime, limit: int) -> list[tuple[str, int]]: ...
    def delivery_outputs(self, batch: str) -> list[OutputRow]: ...
    def delivery_done(self, batch: str) -> None: ...
    def delivery_retry(self, batch: str, at: datetime, error: str) -> None: ...
    def delivery_dead(self, batch: str, error: str) -> None: ...
    def delivery_again(self, batch: str) -> bool: ...
    def delivery_counts(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ServerPatient:
    """What a FHIR server answered when asked for a child's Patient by identifier, and when.

    ``patient_id`` is None when it held no such Patient, or several (no one to choose).
    """

    patient_id: str | None
    checked: datetime


class ServerPatients(Protocol):
    """Each target server's Patient for a child's identifier, cached for the outbox.

    Keyed by the server's base URL: ``Patient/1`` at one server is not ``Patient/1`` at another.
    """

    def server_patient(self, server: str, system: str, value: str) -> ServerPatient | None: ...
    def set_server_patient(self, server: str, system: str, value: str,
                           answer: ServerPatient) -> None: ...
    def forget_server_patient(self, server: str, system: str, value: str) -> None: ...


class Inbox(Protocol):
    """Live input kept before it is acknowledged, and what the listeners remember of feeds."""

    def inbox_put(self, channel: str, sender: str, control_id: str, origin: str,
                  raw: bytes) -> bool: ...
    def inbox_pending(self, limit: int, channel: str = "mllp") -> list[tuple[int, str, bytes]]: ...
    def inbox_done(self, ids: Sequence[int]) -> None: ...
    def inbox_depth(self) -> tuple[int, datetime | None]: ...
    def inbox_failed(self, item: int, reason: str) -> int: ...
    def inbox_set_state(self, item: int, state: str) -> bool: ...
    def inbox_rows(self, states: Collection[str]) -> list[InboxRow]: ...
    def inbox_raw(self, item: int) -> tuple[str, bytes] | None: ...

    def subscription_seen(self, subscription: str, kind: str, last_event: int | None) -> int: ...
    def subscriptions(self) -> list[tuple[str, int, str, str]]: ...
    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class DeadLetters(Protocol):
    """What could not be used, with where and why: nothing is lost."""

    def dead_letter(self, origin: str, reason: str, raw: bytes) -> None: ...
    def dead_letters(self) -> list[tuple[str, str, bytes]]: ...
    def dead_letter_rows(self) -> list[tuple[int, str, str, str]]: ...
    def dead_letter_raw(self, letter: int) -> tuple[str, bytes] | None: ...
    def forget_dead_letter(self, letter: int) -> None: ...


# -- replay Bundles (replay.py) -----------------------------------------------------------------
class ReplayBundles(Protocol):
    """Which runs' outputs were written to which ``--out`` Bundle.

    A run that asks for a Bundle is owed one; a Bundle claims every owed run, and is confirmed
    once its file is in place, so a rerun after a crash writes what no Bundle holds yet.
    """

    def claim_bundle(self, bundle: str, path: str, run: int) -> int: ...
    def bundle_written(self, bundle: str) -> None: ...
    def release_bundle(self, bundle: str) -> None: ...
    def unconfirmed_bundles(self) -> list[tuple[str, str]]: ...
# -- end of replay Bundles ----------------------------------------------------------------------


class ReportQueries(Protocol):
    """Read-only queries behind the reports."""

    def appointment_counts(
        self,
        counted: Collection[str],
        missed: Collection[str],
        exclude_prefixes: Collection[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        provider: str | None = None,
    ) -> list[AppointmentCount]: ...
    def situation_rows(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[SituationRow]: ...
    def outputs_of_kind(self, kind: str) -> list[OutputRow]: ...
    def child_signals(self, child: str) -> list[ChildSignal]: ...
    def child_outputs(self, child: str) -> list[OutputRow]: ...


class Audit(Protocol):
    """Who read identifiable data (a child's chronology), keyed so the log names no child.

    The key itself lives outside the store (store/auditkey.py); an older store's copy in
    ``meta`` is read once to move it out, then forgotten."""

    def legacy_audit_key(self) -> bytes | None: ...
    def forget_legacy_audit_key(self) -> None: ...
    def record_access(self, access: Access) -> None: ...
    def accesses(self) -> list[Access]: ...


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What /readyz and /metrics say of the store, per replica.

    ``lag_seconds``: how far a configured read replica is behind (None: none configured)."""

    backend: str
    reachable: bool
    reason: str = ""
    lag_seconds: float | None = None


class Replicas(Protocol):
    """Several ``serve`` processes on one database: which of them decides, and the store's health.

    Deciding (draining the inboxes) and delivering (the outbox) are done by one replica at a time,
    the lease holder, so that each child's events are counted in arrival order exactly as one
    process counts them (docs/replicas.md); every replica accepts input. On PostgreSQL the lease is
    a session advisory lock: a replica that dies (kill -9) or loses its connection loses it, and
    another takes it at its next try. On SQLite one process holds the file: it always holds the
    lease.
    """

    def hold_lease(self) -> bool: ...
    def release_lease(self) -> None: ...
    def health(self) -> StoreHealth: ...


class Store(
    Transactional, ChildHistory, Outputs, DeliveryQueue, ServerPatients, Inbox, DeadLetters,
    ReplayBundles, ReportQueries, Audit, Replicas, Protocol,
):
    """Every role at once: what one database (SQLite or PostgreSQL) provides to the whole adapter.

    A second store can be built role by role: each Protocol above stands alone.
    """


# -- reports: the rows the report queries return ----------------------------------------------
@dataclass(frozen=True, slots=True)
class AppointmentCount:
    """Events with an outcome, grouped by provider, UTC hour, adult or not, and missed or not.

    The hour, not the day, because quarters are counted in local time: in Europe/London three of
    the four quarters start at 23:00 UTC the day before.
    """

    provider: str | None
    hour: datetime
    adult: bool
    missed: bool
    events: int


@dataclass(frozen=True, slots=True)
class SituationRow:
    """One unretracted signal of a child (never an adult) that the rules placed in a table row."""

    child: str
    situation: str
    occurred: datetime


@dataclass(frozen=True, slots=True)
class ChildSignal:
    """One signal in a child's chronology, retracted ones included (and marked)."""

    event_key: str
    signal: str
    occurred: datetime
    service: str | None
    provider: str | None
    band: str
    situation: str
    retracted: bool


@dataclass(frozen=True, slots=True)
class Access:
    """One read of identifiable data: who, when, what, and which child as a keyed hash only."""

    at: datetime
    who: str
    action: str
    subject: str
    detail: str = ""
