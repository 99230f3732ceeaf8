"""THE path: records -> signals -> guidance -> decisions -> outbox rows, in the store.

Replay, the FHIR push inbox, the MLLP inbox and dead-letter retry all use it the same way, each
item behind ``process_guarded`` / ``accept_context_guarded``. Context records
(patients, status Flags/Conditions) are kept as they come; events must be handed over in
event-time order (replay sorts them) so that the same events always give the same outputs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_engagement.config import Settings, default_codesystems_dir, default_mappings_dir
from fhir_engagement.decisions.codesystems import CodeSystems, load_codesystems
from fhir_engagement.decisions.flag import flag_resource, flag_state, merge_flag
from fhir_engagement.decisions.ids import (
    flag_id,
    full_url,
    provenance_id,
    reference_for,
    task_id,
)
from fhir_engagement.decisions.letter import COPIES, letter_drafts, merge_facts
from fhir_engagement.decisions.lettertemplates import LetterTemplates, load_letter_templates
from fhir_engagement.decisions.provenance import provenance_resource
from fhir_engagement.decisions.task import OwnerRef, task_resource
from fhir_engagement.decisions.validate import InvalidOutputError, OutputValidator
from fhir_engagement.decisions.wording import TaskWording, load_wording
from fhir_engagement.errors import (
    IdentityConflictError,
    InputError,
    RecordError,
    RulesError,
    StoreError,
    UnreadableError,
)
from fhir_engagement.guidance.decide import (
    HIGH_RISK,
    UNBORN,
    URGENT,
    Situation,
    decide_all,
    decide_household,
    decide_retraction,
)
from fhir_engagement.guidance.rules import Rules, load_rules
from fhir_engagement.guidance.status import age_band, age_in_years, child_status
from fhir_engagement.identity import (
    HOUSEHOLD_CHILD,
    HOUSEHOLD_PERSON,
    household_aliases,
    identify,
    meta_list,
    nhs_of,
)
from fhir_engagement.ingest.fhir import Reader, Record
from fhir_engagement.ingest.fhirtime import latest_date
from fhir_engagement.ingest.hl7v2 import LOCAL_SYSTEM
from fhir_engagement.ingest.household import HOUSEHOLD
from fhir_engagement.ingest.records import Readers
from fhir_engagement.ingest.sources import Sources
from fhir_engagement.ingest.v2map import V2Mappings, load_v2_mappings
from fhir_engagement.ingest.validate import validate_input
from fhir_engagement.model import (
    HOME,
    Action,
    ChildStatus,
    Contact,
    Decision,
    Event,
    HistoryItem,
    LetterFacts,
    PatientFacts,
    Signal,
    StatusFact,
    split_key,
)
from fhir_engagement.signals.extract import extract, is_correction
from fhir_engagement.signals.mappings import Mappings, load_mappings
from fhir_engagement.store.base import OutputRow, SignalRow, Store

__all__ = ["Engine", "Pipeline", "load_engine", "status_source_key"]

_LOG = logging.getLogger(__name__)

# Signals never acted on alone: they feed patterns and chronology (an attendance may complete an
# alternation, which the guidance then acts on). Undated, they cannot be placed, so are ignored.
_PASSIVE = frozenset({"attended"})
# A correction can take these back (noshow keyed in error, a discharge cancelled, an episode of
# care or an outcome of attendance entered in error).
_RETRACTABLE = frozenset({"not-brought", "no-access-visit", "family-cancelled",
                          "refused-assessment", "left-before-seen", "left-against-advice",
                          "discharged"})


@dataclass(frozen=True, slots=True)
class Engine:
    """Everything loaded and checked at start-up: mappings, rules, CodeSystems, the readers."""

    mappings: Mappings
    rules: Rules
    systems: CodeSystems
    records: Readers
    letters: LetterTemplates | None = None  # the WNB letter drafts (mappings/letters/)
    # Task words per care setting (mappings/wording.toml)
    wording: TaskWording = field(default_factory=TaskWording)

    @property
    def reader(self) -> Reader:
        return self.records.fhir

    @property
    def v2(self) -> V2Mappings:
        return self.records.v2


def load_engine(settings: Settings, codesystems: Path | None = None) -> Engine:
    """Load every data file; raises ConfigError (file, key, line) on the first fault."""
    mappings = load_mappings(settings.mappings_dir)
    rules = load_rules(settings.mappings_dir)
    _check_code_sets(rules, mappings, settings.mappings_dir)
    systems = load_codesystems(codesystems or default_codesystems_dir())
    status_codes = frozenset().union(*(s.codes | s.ended_by for s in mappings.statuses))
    reader = Reader(mappings.extensions, status_codes, settings.source,
                    services=mappings.services, sources=Sources.from_settings(settings),
                    household_groups=mappings.codesets[rules.household.group_codes])
    v2 = load_v2_mappings(settings.mappings_dir / "hl7v2")
    letters_dir = settings.mappings_dir / "letters"
    if not letters_dir.is_dir():  # a mappings folder from before letters: the shipped ones
        letters_dir = default_mappings_dir() / "letters"
    wording = settings.mappings_dir / "wording.toml"
    if not wording.exists():  # a mappings folder from before the care wording: the shipped one
        wording = default_mappings_dir() / "wording.toml"
    return Engine(mappings, rules, systems, Readers(reader, v2), load_letter_templates(letters_dir),
                  load_wording(wording))


def _check_code_sets(rules: Rules, mappings: Mappings, root: Path) -> None:
    """The code sets rules.toml names (rules.md s.8) must exist in mappings/codes/."""
    named = {("clinical_risk", "service_codes"): rules.clinical_risk.service_codes,
             ("clinical_risk", "priority_codes"): rules.clinical_risk.priority_codes,
             ("unborn", "service_codes"): rules.unborn.service_codes,
             ("household", "group_codes"): rules.household.group_codes}
    for (table, key), name in named.items():
        if name not in mappings.codesets:
            raise RulesError(str(root / "rules.toml"), f"{table}.{key}",
                             f"no code set '{name}' in mappings/codes/")


def _raised_again(event: Event, row: SignalRow) -> bool:
    """A retracted signal comes back only with a version later than the one that raised it (a
    no-show keyed in error, corrected, then a real no-show): the same version re-sent, as when a
    replay reads its files again, must not raise it a second time. A correction that raises no
    signal of its own (a cancelled discharge) leaves no newer version in the store to make the
    re-sent original stale, so this is what keeps it retracted. Unversioned events cannot tell a
    re-send from a change, so for them a retracted signal is raised again, as before."""
    if not row.retracted:
        return False
    return not event.version or not row.version or event.version > row.version


class Pipeline:
    """Applies the guidance to records, writing outputs to the store's outbox for one run."""

    def __init__(
        self, engine: Engine, store: Store, run: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock`` gives the decision time (Task.authoredOn, Provenance.recorded); tests fix it."""
        self.engine, self.store, self.run = engine, store, run
        self._clock = clock
        self.stats: Counter[str] = Counter()
        self.queued = 0  # deliveries queued so far: serve wakes the outbox when it grows
        self._tz = ZoneInfo(engine.rules.timezone)
        self._validator = OutputValidator()
        # The twin aliases prefetch computed for each event of the chunk, by identity (the event
        # is kept beside them, so an id is never reused while its entry lives): one computation
        # an event instead of two.
        self._aliases_ahead: dict[int, tuple[Event, list[str]]] = {}
        # serve with status_sources (CP-IS): their answers, kept in the store, go in the Tasks
        self.consult_status_sources = False

    # -- context ----------------------------------------------------------------------------
    def accept_context(self, record: Record) -> None:
        """Keep a Patient or status Flag/Condition; events go through ``process``."""
        if isinstance(record, PatientFacts):
            if record.aliases:
                self._identify(record)
                self.stats["patients"] += 1
                if record.letter is not None:
                    self._keep_letter_facts(record)
        elif isinstance(record, StatusFact) and _household_persons(record):
            self._household_link(record)
            self.stats["household links"] += 1
        elif isinstance(record, StatusFact):
            self.store.add_status(record)
            self.stats["status records"] += 1

    def _identify(self, facts: PatientFacts) -> str:
        try:
            return identify(self.store, facts)
        except IdentityConflictError:
            self.stats["identity conflicts"] += 1
            raise

    def reject(self, error: InputError, raw: bytes) -> None:
        """Keep what could not be used in the dead-letter store, with where and why."""
        self.store.dead_letter(error.where, error.reason, raw)
        self.stats["rejected"] += 1

    def apply(self, records: list[Record], raw: bytes, where: str = "") -> None:
        """Context first-come, events through ``process``; what cannot be used is dead-lettered."""
        for record in records:
            if isinstance(record, Event):
                self.process_guarded(record, raw)
            else:
                self.accept_context_guarded(record, where, raw)

    def process_guarded(self, event: Event, raw: bytes) -> InputError | None:
        """``process`` at a boundary: a bad event becomes a dead letter, never a stopped worker.

        Returns the rejection, if any. A StoreError goes up: the store, not the event, is at
        fault, and the caller must not mark the input done.
        """
        return self._guarded(lambda: self.process(event), event.origin, raw, "processed")

    def accept_context_guarded(
        self, record: PatientFacts | StatusFact, where: str, raw: bytes = b""
    ) -> InputError | None:
        """``accept_context`` at the same boundary as ``process_guarded``."""
        at = f"{where} ({record.key})" if isinstance(record, StatusFact) else record.origin or where
        return self._guarded(lambda: self.accept_context(record), at, raw, "kept as context")

    def _guarded(
        self, work: Callable[[], None], origin: str, raw: bytes, what: str
    ) -> InputError | None:
        try:
            work()
        except InputError as error:
            self.reject(error, raw)
            return error
        except StoreError:
            raise
        except Exception as exc:  # the one place an unforeseen failure on one record is contained
            _LOG.error("one record could not be %s: %s", what, type(exc).__name__)
            error = UnreadableError(origin, f"could not be {what} ({type(exc).__name__}); kept for "
                                    "a person to look at", raw)
            self.reject(error, raw)
            return error
        return None

    def remember(self, event: Event, asked: frozenset[str] = frozenset()) -> None:
        """Add an earlier event to the child's history without deciding anything about it.

        Live mode reads a child's recent past from the FHIR server on first sight, so patterns
        count what happened before the adapter started; those events were someone else's to act
        on. ``asked`` records what the adapter asked for then (a WNB letter, say).
        """
        if event.occurred is None or event.patient is None:
            return
        previous = self.store.signals_of(event.key)
        child, band = self._child(event)
        for signal in extract(event, self.engine.mappings):
            if signal.code in previous:
                continue
            item = HistoryItem(event.key, signal.code, event.occurred, event.service,
                               event.provider, "", asked)
            self.store.add_signal(child, item, band, event.origin, event.version)
            self.stats["history remembered"] += 1

    def remember_asked(self, patient: str, key: str, at: datetime, actions: frozenset[str]) -> None:
        """Record that the adapter already asked for ``actions`` for a child (read back from its
        own Tasks on the server), so that "after a letter was asked" holds across deployments."""
        record = self.store.child_of(patient)
        child = record.key if record else self._identify(PatientFacts((patient,), None, None))
        if key in self.store.signals_of(key):
            return
        item = HistoryItem(key, "asked", at, None, None, "", actions)
        self.store.add_signal(child, item, "unknown", "server", "")

    def _keep_letter_facts(self, record: PatientFacts) -> None:
        """What a WNB letter needs, kept per record alias (a RelatedPerson adds itself to its
        patient's). In the store's ``meta`` table, so no schema change is needed while the
        PostgreSQL store is being written: docs/outputs.md, "The letter"."""
        alias = record.aliases[0]
        known = self.store.meta(_LETTER_META + alias)
        facts = record.letter or LetterFacts()
        if known is not None:
            before = _facts_from_json(known)
            if facts.contacts and all(c.reference for c in facts.contacts):  # a RelatedPerson
                others = [c for c in before.contacts if c.reference not in
                          {x.reference for x in facts.contacts}]
                facts = replace(before, contacts=(*others, *facts.contacts))
            else:  # a newer Patient: its own facts, with the RelatedPersons kept
                facts = replace(facts, contacts=(*facts.contacts,
                                                 *(c for c in before.contacts if c.reference)))
        self.store.set_meta(_LETTER_META + alias, _facts_json(facts))

    def _letter_facts(self, child: str) -> LetterFacts:
        names = sorted(self.store.aliases_of(child) | {child})
        found = [self.store.meta(_LETTER_META + a) for a in names]
        return merge_facts([_facts_from_json(f) for f in found if f is not None])

    # -- events -----------------------------------------------------------------------------
    def process(self, event: Event) -> None:
        """Apply the guidance to one event. Raises RecordError for an event we cannot act on."""
        self.stats["events"] += 1
        event = self._canonical(event)
        signals = extract(event, self.engine.mappings)
        previous = self.store.signals_of(event.key)
        if previous and self._stale(event, previous):
            self.stats["stale versions"] += 1
            return
        codes = {s.code for s in signals}
        new = [s for s in signals
               if s.code not in previous or _raised_again(event, previous[s.code])]
        gone = [c for c, row in previous.items()
                if c not in codes and c in _RETRACTABLE and not row.retracted]
        if gone and not is_correction(event, self.engine.mappings):
            gone = []  # changed, but not a correction (re-booked, say): earlier signals stand
        if not new and not gone:
            if signals:
                self.stats["duplicates"] += 1
            return
        if event.occurred is None and codes <= _PASSIVE:
            self.stats["undated attendances ignored"] += 1
            return
        if event.occurred is None:
            raise RecordError(event.origin, f"{event.key} raises {', '.join(sorted(codes))} but "
                              "carries no time (start, period, performed, meta.lastUpdated)")
        if event.patient is None:
            raise RecordError(event.origin, f"{event.key} names no patient the adapter can "
                              "identify (missing or display-only reference)")
        child, band = self._child(event)
        band = self._unborn(event, child, band)
        decided = [(signal, self._decide(event, signal, child, band)) for signal in new]
        # Only what the adapter will act on is parsed and validated (~7% of events in replay).
        resource = event.resource() if gone or any(d for _, d in decided) else None
        if resource is not None:
            validate_input(resource, event.origin)
        for signal, decisions in decided:
            self._record(event, signal, child, band, decisions)
        for code in sorted(gone):
            self._retract(event, code, child)

    def _canonical(self, event: Event) -> Event:
        """A v2 message and its FHIR twin are one event: the one seen second takes the key of the
        one seen first. Twins share an appointment/visit id *and* its time (to the minute): ids
        alone are unique only per system, and the two forms rarely share a patient identifier."""
        ahead = self._aliases_ahead.pop(id(event), None)
        aliases = ahead[1] if ahead is not None and ahead[0] is event else self._twin_aliases(event)
        for alias in aliases:
            key = self.store.event_alias(alias)
            if key is not None and key != event.key:
                self.stats["twins merged"] += 1
                return replace(event, key=key)
        if aliases:
            self.store.add_event_aliases(aliases, event.key)
        return event

    def _twin_aliases(self, event: Event) -> list[str]:
        if not event.identifiers or event.occurred is None:
            return []
        minute = event.occurred.isoformat()[:16]  # to the minute; occurred is always UTC
        # Twins come from one provider: two trusts' appointment numbers may well coincide. With
        # no ODS code configured, the alias is the one earlier versions stored, so a twin still
        # finds an event recorded before sources existed.
        ods = self.engine.reader.sources.ods(split_key(event.key)[1])
        scope = f"{ods}|" if ods else ""
        return [f"{scope}{event.resource_type}|{value}|{minute}" for value in event.identifiers]

    def prefetch(self, events: Sequence[Event]) -> None:
        """Tell the store what the next events will look up, so a database a round trip away
        reads it in a few queries instead of a few per event (replay.py calls it per chunk)."""
        self._aliases_ahead = {id(e): (e, self._twin_aliases(e)) for e in events}
        self.store.prefetch([e.key for e in events],
                            [a for _, aliases in self._aliases_ahead.values() for a in aliases],
                            [e.patient for e in events if e.patient])

    def _stale(self, event: Event, previous: Mapping[str, SignalRow]) -> bool:
        """An older version re-sent after a newer one must not undo the newer one's signals."""
        known = max((r.version for r in previous.values()), default="")
        return bool(event.version and known and event.version < known)

    def _child(self, event: Event) -> tuple[str, str]:
        alias = event.patient or ""
        record = self.store.child_of(alias)
        if record is None:  # named before any Patient record: its own child until one joins it
            self._identify(PatientFacts((alias,), None, None, event.origin))
            record = self.store.child_of(alias)
        child = record.key if record else alias
        birth = latest_date(record.birth_date) if record and record.birth_date else None
        years = age_in_years(birth, event.occurred.astimezone(self._tz).date())
        return child, age_band(years, self.engine.rules.patterns)

    def _decide(
        self, event: Event, signal: Signal, child: str, band: str
    ) -> tuple[Decision, ...]:
        if band == "adult":
            return ()
        history = self.store.history_before(child, event.occurred)
        status = child_status(self.store.status_facts(child), event.occurred,
                              self.engine.mappings.statuses, band)
        situation = Situation(event, signal.code, history, status, band, self._tags(event))
        return decide_all(situation, self.engine.rules)

    def _tags(self, event: Event) -> frozenset[str]:
        """What the code sets rules.toml names say about the event (rules.md s.8): a high-risk
        service, an urgent referral, an antenatal or maternity contact."""
        sets, rules = self.engine.mappings.codesets, self.engine.rules
        values = frozenset().union(*event.slots.values()) if event.slots else frozenset()
        found = [(HIGH_RISK, values, rules.clinical_risk.service_codes),
                 (URGENT, event.slots.get("priority", frozenset()),
                  rules.clinical_risk.priority_codes),
                 (UNBORN, values, rules.unborn.service_codes)]
        return frozenset(tag for tag, have, name in found if have & sets[name])

    def _unborn(self, event: Event, child: str, band: str) -> str:
        """An adult in scope as an unborn child's mother (rules.md s.8): an active unborn CPP on
        her record and a missed antenatal or maternity contact. Every other adult is excluded."""
        if band != "adult" or UNBORN not in self._tags(event):
            return band
        status = child_status(self.store.status_facts(child), event.occurred,  # type: ignore[arg-type]
                              self.engine.mappings.statuses, band)
        return "unborn" if self.engine.rules.unborn.status in status.statuses else band

    # -- brothers and sisters (rules.md s.8) ------------------------------------------------
    def _household_link(self, fact: StatusFact) -> None:
        """Keep a parent-or-carer link both ways in the store's key-value table: person ->
        children, child -> persons (docs/decisions.md: no table of its own)."""
        persons = _household_persons(fact)
        self._meta_add(HOUSEHOLD_CHILD + fact.patient, persons)
        for person in persons:
            self._meta_add(HOUSEHOLD_PERSON + person, [fact.patient])

    def _meta_add(self, key: str, values: list[str]) -> None:
        have = meta_list(self.store, key)
        if not set(values) <= set(have):
            self.store.set_meta(key, orjson.dumps(sorted(set(have) | set(values))).decode())

    def siblings(self, child: str, at: datetime) -> list[tuple[str, str]]:
        """Every other child known to share a parent or carer: (child key, an alias of theirs)."""
        found: dict[str, str] = {}
        for alias in household_aliases(self.store, child):
            record = self.store.child_of(alias)
            if record is None:  # known only from a link: a child of their own until one joins
                self._identify(PatientFacts((alias,), None, None))
                record = self.store.child_of(alias)
            key = record.key if record else alias
            if key != child and not self._adult(record, at):
                found.setdefault(key, alias)
        return sorted(found.items())

    def _adult(self, record: object, at: datetime) -> bool:
        birth = getattr(record, "birth_date", None)
        years = age_in_years(latest_date(birth) if birth else None, at.astimezone(self._tz).date())
        return age_band(years, self.engine.rules.patterns) == "adult"

    def _household(self, decision: Decision, event: Event, child: str, signal: str) -> None:
        situation = Situation(event, signal, (), ChildStatus(), "")
        review = decide_household(situation, decision, self.engine.rules)
        if review is None:
            return
        index = self._subject(event, child)
        for sibling, alias in self.siblings(child, event.occurred):  # type: ignore[arg-type]
            self._write(review, event, sibling, signal, own=alias, index=index)

    def _record(
        self, event: Event, signal: Signal, child: str, band: str,
        decisions: tuple[Decision, ...],
    ) -> None:
        """Write each decision (the signal's own row first: a Task two rows both ask for is the
        first row's) and keep the signal in the child's history with every row it raised."""
        self.stats[f"signal {signal.code}"] += 1
        if band == "adult":
            self.stats["adults excluded"] += 1
        for decision in decisions:
            self._write(decision, event, child, signal.code, band)
        for decision in decisions:
            self._household(decision, event, child, signal.code)
        situation = "+".join(d.situation for d in decisions)
        asked = frozenset(a.code for d in decisions for a in d.actions)
        item = HistoryItem(event.key, signal.code, event.occurred, event.service, event.provider,
                           situation, asked)
        self.store.add_signal(child, item, band, event.origin, event.version)

    def _retract(self, event: Event, code: str, child: str) -> None:
        row = self.store.signals_of(event.key)[code]
        self.store.retract(event.key, code)
        self.stats[f"retracted {code}"] += 1
        if row.situation:  # only a signal that asked for something needs a second look
            self._write(decide_retraction(event, code, self.engine.rules), event, child, code)

    # -- outputs ----------------------------------------------------------------------------
    def _write(
        self, decision: Decision, event: Event, child: str, signal: str, band: str = "",
        own: str | None = None, index: dict[str, object] | None = None,
    ) -> None:
        """Write one decision's Flag, Tasks and Provenance for ``child``. A brother's or
        sister's review names them by ``own`` alias and the index child only by reference."""
        subject = self._subject(event, child, own)
        kind = "over-engagement" if decision.situation == "over-engagement" else "engagement"
        flag_url, flag_changed = self._flag(decision, event, child, kind, subject)
        decided = self._clock()  # one decision time for all it writes
        decision = self._source_notes(decision, child)
        written: list[str] = []
        for action in decision.actions:
            tid = task_id(child, event.key, action.code, decision.situation)
            if self.store.has_output(tid):
                continue
            task = task_resource(tid, action, decision, event, subject, flag_url,
                                 self._owner(action, event), self.engine.systems,
                                 decided, self._barriers(event), index, self._care(event),
                                 self.engine.wording)
            self._put(tid, "Task", child, task)
            self.stats[f"task {action.code}"] += 1
            written.append(tid)
            if action.code == "send-wnb-letter":
                written.extend(self._letters(tid, decision, event, child, subject, decided,
                                             band, signal))
        if written or flag_changed:
            # The Flag goes with every batch that references it, so it is a target too: every
            # write carries Provenance, even an unchanged Flag written again beside new Tasks.
            targets = ([flag_url] if flag_url else []) + [full_url(t) for t in written]
            pid = provenance_id(child, event.key, signal, decision.rule_id)
            prov = provenance_resource(pid, targets, decision, event, self.engine.mappings.digest,
                                       decided)
            self._put(pid, "Provenance", child, prov)
            # One delivery per decision: the Tasks reference the Flag, so it always goes along.
            ids = [*written, pid] + ([flag_id(child, kind)] if flag_url else [])
            self.store.enqueue_delivery(pid, child, ids)
            self.queued += 1

    def _letters(
        self, tid: str, decision: Decision, event: Event, child: str,
        subject: dict[str, object], decided: datetime, band: str, signal: str,
    ) -> list[str]:
        """The letter drafts that go with a send-wnb-letter Task (rules.md s.8, "The letter").

        A young person gets one only when a clinician answered classify-attendance "was not
        brought" (reliant on an adult); otherwise no draft is written rather than a letter to
        the parents of a young person who may have chosen not to attend (decisions/letter.py
        refuses it too)."""
        reliant = band == "young-person" and self._reliant_on_adult(event, child, band)
        if self.engine.letters is None or (band == "young-person" and not reliant):
            return []
        drafts = letter_drafts(tid, full_url(tid), decision, event, subject,
                               self._letter_facts(child), self.engine.letters, self._tz,
                               decided, band, reliant_on_adult=reliant, signal=signal,
                               care=self._care(event))
        for (lid, draft), copy in zip(drafts, COPIES, strict=True):
            self._put(lid, "CommunicationRequest", child, draft)
            self.stats[f"letter {copy}"] += 1
        return [lid for lid, _ in drafts]

    def _reliant_on_adult(self, event: Event, child: str, band: str) -> bool:
        status = child_status(self.store.status_facts(child), event.occurred,  # type: ignore[arg-type]
                              self.engine.mappings.statuses, band)
        return self.engine.rules.decided.reliant_status in status.statuses

    def _source_notes(self, decision: Decision, child: str) -> Decision:
        """What the status services (CP-IS) said, for the Tasks: that one could not be asked, so
        the decision rests on what is known here; the responsible local authority's contact."""
        nhs = nhs_of(self.store, child) if self.consult_status_sources else None
        kept = _status_answers(self.store.meta(status_source_key(nhs))) if nhs else {}
        informs = any(a.code == "inform-social-worker" for a in decision.actions)
        notes: list[str] = []
        for name, said in sorted(kept.items()):
            if not said.get("reachable"):
                notes.append(f"{name} was not reachable when this was decided: the decision used "
                             f"the statuses known here. Check {name} before acting.")
            elif informs and said.get("contacts"):
                contacts = "; ".join(str(c) for c in said["contacts"])
                notes.append(f"Responsible local authority (from {name}): {contacts}.")
        return replace(decision, notes=(*decision.notes, *notes)) if notes else decision

    def _flag(
        self, decision: Decision, event: Event, child: str, kind: str, subject: dict[str, object]
    ) -> tuple[str | None, bool]:
        """Escalate (never lower) the child's Flag; return its fullUrl and whether it changed."""
        fid = flag_id(child, kind)
        row = self.store.output(fid)
        current = flag_state(orjson.loads(row.resource)) if row else None
        if decision.flag is None:
            if row is None:
                return None, False
            self.store.put_output(row, self.run)  # re-sent so the Tasks' reference resolves
            return full_url(fid), False
        state = merge_flag(current, decision.flag, event.occurred, decision.evidence)
        if state != current:
            self._put(fid, "Flag", child, flag_resource(fid, state, subject, self.engine.systems))
            return full_url(fid), True
        self.store.put_output(row, self.run)  # type: ignore[arg-type]
        return full_url(fid), False

    def _put(self, rid: str, kind: str, child: str, resource: dict[str, object]) -> None:
        try:
            self._validator.check(resource)
        except InvalidOutputError as exc:
            raise RecordError(rid, f"the {kind} built for this event is not valid FHIR: {exc}") \
                from exc
        self.store.put_output(OutputRow(rid, kind, child, orjson.dumps(resource)), self.run)

    def _subject(self, event: Event, child: str, own: str | None = None) -> dict[str, object]:
        """The child as the target server can find them (rules.md s.7, "writing back"): its own
        ``Patient/{id}`` when the event came from it, else by NHS number, else a literal id it
        holds, else a declared identifier; never a name that means something only here."""
        names = sorted(self.store.aliases_of(child) | {child})
        own = own if own is not None else event.patient or ""
        if _literal(own):
            return reference_for(own)
        nhs = nhs_of(self.store, child)
        if nhs is not None:
            return reference_for(f"nhs:{nhs}")
        literal = next((a for a in names if _literal(a)), None)
        declared = next((a for a in names if a.startswith("id:")
                         and not a.startswith(f"id:{LOCAL_SYSTEM}")), None)
        if literal or declared:
            return reference_for(literal or declared or "")
        return _described(own or child)

    def _care(self, event: Event) -> str:
        """The event's source's care setting (rules.md s.8), '' when no source is configured."""
        config = self.engine.reader.sources.config(split_key(event.key)[1])
        return config.care if config else ""

    def _owner(self, action: Action, event: Event) -> OwnerRef:
        """The role's owner; a source's care (primary or secondary) names its own safeguarding
        lead (rules.md s.8). A source with no configuration keeps the generic role."""
        rules = self.engine.rules
        config = self.engine.reader.sources.config(split_key(event.key)[1])
        role = rules.role_for(action.owner_role, config.care) if config else action.owner_role
        owner = rules.owners[role]
        if action.owner_role == "expecting-practitioner" and event.performer:
            return dict(event.performer), owner.text
        return owner.reference, owner.text

    def _barriers(self, event: Event) -> tuple[str, ...]:
        barrier = self.engine.mappings.codesets.get("barrier", frozenset())
        found = event.slots.get("cancellation-reason", frozenset()) & barrier
        names = self.engine.mappings.displays.get("barrier", {})
        return tuple(sorted(names.get(c, c) for c in found))


_LETTER_META = "letter-facts:"


def _facts_json(facts: LetterFacts) -> str:
    return orjson.dumps({
        "given": facts.given_name,
        "contacts": [[c.name, c.relationship, sorted(c.codes), c.reference] for c in facts.contacts],
        "languages": [list(lang) for lang in facts.languages],
        "gp": [list(p) for p in facts.gp] if facts.gp else None,
    }).decode()


def _facts_from_json(text: str) -> LetterFacts:
    data = orjson.loads(text)
    return LetterFacts(
        data["given"],
        tuple(Contact(n, r, frozenset(codes), ref) for n, r, codes, ref in data["contacts"]),
        tuple((code, words) for code, words in data["languages"]),
        tuple((k, v) for k, v in data["gp"]) if data["gp"] else None,
    )


def status_source_key(nhs: str) -> str:
    """The store's meta key for what the status services said about the child with ``nhs``."""
    return f"status-sources:{nhs}"


def _status_answers(text: str | None) -> dict[str, dict[str, Any]]:
    try:
        kept = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return {k: v for k, v in kept.items() if isinstance(v, dict)} if isinstance(kept, dict) else {}


def _household_persons(fact: StatusFact) -> list[str]:
    """The parents or carers a household link names ([] for any other status fact)."""
    return sorted(c[len(HOUSEHOLD):] for c in fact.codes if c.startswith(HOUSEHOLD))


def _literal(alias: str) -> bool:
    """A ``Patient/{id}`` of the home namespace: a literal reference on the target server."""
    path, namespace = split_key(alias)
    return namespace == HOME and path.startswith("Patient/") and "#" not in path \
        and ":" not in path


def _described(alias: str) -> dict[str, object]:
    """The last resort, a child known only by a local id no source declares: its value with
    where it came from, no system (an invented one would mislead every server)."""
    path, namespace = split_key(alias)
    if alias.startswith("id:"):
        system, _, value = alias[3:].partition("|")
        authority = system.removeprefix(LOCAL_SYSTEM)
        return {"type": "Patient", "identifier": {"value": value, "assigner": {"display": authority}}}
    return {"type": "Patient", "display": f"{path} at {namespace or 'this source'}"}

