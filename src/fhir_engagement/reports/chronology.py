"""One child's chronology for the core group: every engagement event and every action, in order.

The guidance keeps history as a chronology (README point 10). The adapter holds each signal it
raised (retracted ones too, marked: a correction deletes nothing) and every Flag, Task and
Provenance it decided; the Provenance of each decision places the Flag's changes in time. Adults'
events are outside the guidance and left out. A chronology needs the child's NHS number and is
recorded in the audit table before it is built (see ``audit``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_engagement.decisions.codesystems import ACTION, CONCERN, SIGNAL, CodeSystems
from fhir_engagement.decisions.ids import NHS_NUMBER_SYSTEM, full_url
from fhir_engagement.errors import ReportError
from fhir_engagement.identity import household_aliases, nhs_of
from fhir_engagement.ingest.references import nhs_number_is_valid
from fhir_engagement.model import situations_of
from fhir_engagement.reports.audit import Auditor, Read
from fhir_engagement.reports.labels import PATTERNS, display
from fhir_engagement.store.base import Access, ChildRecord, ChildSignal, Store

__all__ = ["Chronology", "Entry", "chronology_bundle", "chronology_text", "household_of",
           "open_chronology", "open_household"]

Resource = dict[str, Any]
_ORDER = {"event": 0, "flag": 1, "task": 2}  # at one time: the event, then what it caused
# The outputs a chronology shows, and where each one's time is.
# Provenance.recorded is the decision time; occurredDateTime (the event's) is used where present.
_TIMES = {"Task": ("authoredOn",), "Provenance": ("recorded",), "Flag": ("period", "start")}


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the chronology: an event's signal, a Task, or a change of the Flag."""

    at: datetime
    kind: str
    code: str
    ref: str
    text: str
    about: str  # the triggering event: what the entry is listed under
    retracted: bool = False


@dataclass(frozen=True, slots=True)
class Chronology:
    nhs_number: str
    birth_date: str | None
    entries: tuple[Entry, ...]
    flags: tuple[Resource, ...]
    resources: tuple[tuple[str, Resource], ...]
    access: Access
    audit_event: Resource  # the read as an AuditEvent, for the FHIR server


def open_chronology(
    store: Store, nhs_number: str, systems: CodeSystems, auditor: Auditor, detail: str = ""
) -> Chronology:
    """Find the child by NHS number, record the access (as the auditor's person), then build.

    Raises:
        ReportError: not a valid NHS number, or no child with it in the store. The message
            never repeats the number.
    """
    number = _nhs_number(nhs_number)
    child = store.child_of(f"nhs:{number}")
    if child is None:
        raise ReportError("no child with this NHS number is known to the store")
    read = auditor.chronology(store, child.key, number, detail)
    return _build(store, child, number, systems, read)


def open_household(
    store: Store, nhs_number: str, systems: CodeSystems, auditor: Auditor, detail: str = ""
) -> list[Chronology]:
    """The child's chronology, then each brother's or sister's (rules.md s.8: children who share
    a parent or carer): every child shown is a read of its own in the audit table."""
    index = open_chronology(store, nhs_number, systems, auditor, f"{detail}, household")
    child = store.child_of(f"nhs:{index.nhs_number}")
    found = [index]
    for sibling in household_of(store, child.key if child else ""):
        number = nhs_of(store, sibling.key) or ""
        read = auditor.chronology(store, sibling.key, number, f"{detail}, household of another child")
        found.append(_build(store, sibling, number, systems, read))
    return found


def household_of(store: Store, child: str) -> list[ChildRecord]:
    """The other children who share a parent or carer with ``child`` (identity.household_aliases),
    as far as the store knows them as children; a read never files a new one."""
    found: dict[str, ChildRecord] = {}
    for alias in household_aliases(store, child):
        record = store.child_of(alias)
        if record is not None and record.key != child:
            found.setdefault(record.key, record)
    return [found[k] for k in sorted(found)]


def _nhs_number(text: str) -> str:
    number = "".join(text.split()).replace("-", "")
    if not nhs_number_is_valid(number):
        raise ReportError("--patient is not a valid NHS number (10 digits with a valid check "
                          "digit)")
    return number


def _build(
    store: Store, child: ChildRecord, number: str, systems: CodeSystems, read: Read
) -> Chronology:
    signals = [s for s in store.child_signals(child.key) if s.band != "adult"]
    resources = [(full_url(r.id), orjson.loads(r.resource))
                 for r in store.child_outputs(child.key) if r.kind in _TIMES]
    resources.sort(key=lambda item: _resource_time(item[1]))
    flags = {url: res for url, res in resources if res["resourceType"] == "Flag"}
    occurred = {t["reference"]: _resource_time(p) for _, p in resources
                if p["resourceType"] == "Provenance" for t in p["target"]}
    entries = [*_events(signals, systems), *_tasks(resources, systems, occurred),
               *_flag_changes(resources, flags)]
    # Stable: at one time, each event then what it caused, Tasks in the order they were decided.
    entries.sort(key=lambda e: (e.at, e.about, _ORDER[e.kind]))
    return Chronology(number, child.birth_date, tuple(entries), tuple(flags.values()),
                      tuple(resources), read.access, read.event)


def _resource_time(resource: Resource) -> datetime:
    if resource["resourceType"] == "Provenance" and "occurredDateTime" in resource:
        return datetime.fromisoformat(resource["occurredDateTime"])
    value: Any = resource
    for name in _TIMES[resource["resourceType"]]:
        value = value[name]
    return datetime.fromisoformat(value)


def _events(signals: Iterable[ChildSignal], systems: CodeSystems) -> Iterator[Entry]:
    for s in signals:
        text = display(systems, SIGNAL, s.signal)
        text += f" at {s.provider or 'an unknown provider'}"
        text += f", service {s.service.rsplit('|', 1)[-1]}" if s.service else ""
        rows = [PATTERNS.get(p, p) for p in situations_of(s.situation)]
        text += f"; rules row: {' and '.join(rows)}" if rows else ""
        text += " (retracted by a later correction)" if s.retracted else ""
        yield Entry(s.occurred, "event", s.signal, s.event_key, text, s.event_key, s.retracted)


def _tasks(
    resources: Iterable[tuple[str, Resource]], systems: CodeSystems, occurred: dict[str, datetime]
) -> Iterator[Entry]:
    """Each Task at its triggering event's time (authoredOn, the decision time, if unknown)."""
    for url, task in resources:
        if task["resourceType"] != "Task":
            continue
        code = task["code"]["coding"][0]["code"]
        due = datetime.fromisoformat(task["restriction"]["period"]["end"]).date()
        owner = task.get("owner") or {}
        who = owner.get("display") or owner.get("reference") or \
            (task.get("performerType") or [{}])[0].get("text", "")
        text = f"Task: {display(systems, ACTION, code)} ({task['priority']}, due {due})"
        text += f" for {who}" if who else ""
        at = occurred.get(url) or datetime.fromisoformat(task["authoredOn"])
        yield Entry(at, "task", code, url, text,
                    task["focus"]["reference"])


def _flag_changes(
    resources: Iterable[tuple[str, Resource]], flags: dict[str, Resource]
) -> Iterator[Entry]:
    """Each decision that changed a Flag targets it in its Provenance; the first one raised it."""
    seen: set[str] = set()
    for _, prov in resources:
        if prov["resourceType"] != "Provenance":
            continue
        rule = prov["policy"][0].rsplit("#", 1)[-1]
        about = prov["entity"][0]["what"]["reference"]  # the triggering event comes first
        for target in (t["reference"] for t in prov["target"]):
            if target not in flags:
                continue
            code = flags[target]["code"]["coding"][0]["code"]
            kind = "Over-engagement" if code == "over-engagement" else "Engagement"
            verb = "updated" if target in seen else "raised"
            seen.add(target)
            yield Entry(_resource_time(prov), "flag", code, target,
                        f"{kind} Flag {verb} (rule {rule})", about)


def _priority(flag: Resource) -> str:
    for ext in flag.get("extension", []):
        if ext["url"].endswith("/flag-priority"):
            return str(ext["valueCodeableConcept"]["coding"][0]["code"])
    return "?"


def chronology_text(chron: Chronology, systems: CodeSystems, tz: ZoneInfo) -> str:
    """The printed chronology: a header with today's Flags, then one line per entry."""
    number = chron.nhs_number
    spaced = (f"NHS number {number[:3]} {number[3:6]} {number[6:]}" if number
              else "a child with no NHS number known here")
    lines = [f"Engagement chronology for {spaced} (born {chron.birth_date or 'unknown'})",
             f"This access is recorded in the audit log: {chron.access.who}, "
             f"{chron.access.at.astimezone(tz):%Y-%m-%d %H:%M}."]
    for flag in chron.flags:
        code = flag["code"]["coding"][0]["code"]
        start = datetime.fromisoformat(flag["period"]["start"]).astimezone(tz)
        lines.append(f"Flag now: {display(systems, CONCERN, code)} ({code}), priority "
                     f"{_priority(flag)}, {flag['status']} since {start:%Y-%m-%d}")
    if not chron.flags:
        lines.append("Flag now: none")
    lines.append("")
    if not chron.entries:
        lines.append("No engagement events recorded for this child.")
    for e in chron.entries:
        indent = "" if e.kind == "event" else "  "
        lines.append(f"{e.at.astimezone(tz):%Y-%m-%d %H:%M}  {indent}{e.text}  [{e.ref}]")
    return "\n".join(lines) + "\n"


def chronology_bundle(
    chron: Chronology, systems: CodeSystems, generated: datetime | None = None
) -> Resource:
    """A FHIR R4 Bundle (type collection): a List of the entries in order, then the Flags,
    Tasks and Provenance themselves, so the core group's system can show or keep them."""
    generated = generated or datetime.now(UTC)
    listing: Resource = {
        "resourceType": "List",
        "status": "current",
        "mode": "snapshot",
        "title": "Engagement chronology for the core group",
        "code": {"text": "Engagement chronology (fhir-engagement)"},
        "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": chron.nhs_number},
                    "type": "Patient"},
        "date": generated.isoformat(),
    }
    items = [_list_entry(e, systems) for e in chron.entries]
    if items:
        listing["entry"] = items
    else:
        listing["emptyReason"] = {"text": "No engagement events recorded for this child."}
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": listing}]
    entries += [{"fullUrl": url, "resource": res} for url, res in chron.resources]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": generated.isoformat(),
            "entry": entries}


def _list_entry(e: Entry, systems: CodeSystems) -> Resource:
    item: Resource = {"date": e.at.isoformat(), "item": {"reference": e.ref, "display": e.text}}
    system = {"event": SIGNAL, "task": ACTION}.get(e.kind)
    if system:  # a Flag change has no code of its own: the Flag says what it is now
        item["flag"] = {"coding": [{"system": system, "code": e.code,
                                    "display": display(systems, system, e.code)}]}
    if e.retracted:
        item["deleted"] = True
    return item
