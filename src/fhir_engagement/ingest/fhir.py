"""FHIR JSON (R4, R4B, R5; resources and Bundles of any type) -> Event, PatientFacts, StatusFact.

Works on parsed JSON (dicts), not fhir.resources models: every input resource passes through here
and full validation costs ~70x the parse. Each field read is type-checked, so a wrong type becomes a
RecordError naming the JSON path rather than a crash. The pipeline validates, with fhir.resources,
only what it acts on. Reading is linear in the document's size, and its only recursions (Bundles
in Bundles, a CodeableReference's concept) stop at a fixed depth with a RecordError: a document
nested thousands deep is refused, never a RecursionError.

The hot path (Codings, participants, extensions, references) reads well-formed values inline and
hands anything else to the general checks, which name the fault; error paths are built only then.
This cut the walk by ~25% (docs/benchmarks.md, 2026-12-04); tests/unit/ingest/test_fhir_walk.py
holds the shapes the shortcuts must read as the general walk does.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_engagement.errors import IdentityConflictError, RecordError
from fhir_engagement.ingest import household
from fhir_engagement.ingest.fhirtime import date_problem, parse_datetime
from fhir_engagement.ingest.letterfacts import contact_of_related_person, letter_facts
from fhir_engagement.ingest.references import (
    MAX_IDENTIFIERS,
    NHS_NUMBER_SYSTEM,
    conditional_key,
    identifier_key,
    nhs_number_is_valid,
    reference_key,
)
from fhir_engagement.ingest.sources import Sources, base_and_path
from fhir_engagement.model import (
    HOME,
    STATUS_SYSTEMS,
    Event,
    LetterFacts,
    PatientFacts,
    StatusFact,
    resource_json,
    scoped,
)

__all__ = ["Reader", "Record"]

Record = Event | PatientFacts | StatusFact
Json = Mapping[str, Any]
_MAX_BUNDLES = 8  # Bundles nested in Bundles (a transaction holding a message holding a search)
_MAX_CONCEPTS = 2  # a CodeableReference holds a CodeableConcept, which holds no concept

_NOT_A_CODING = object()  # neither a code nor None: _coding_into names what is wrong
_EVENT_TYPES = frozenset(STATUS_SYSTEMS)
_CONTEXT_TYPES = frozenset({"Patient", "Flag", "Condition", "RelatedPerson", "Group", "Task"})
# Resources in a Bundle that only describe the notification or the write, never a child's event.
_NOT_A_PATIENT = ("Location/", "Device/", "Practitioner", "HealthcareService/", "RelatedPerson/",
                  "Organization/", "Group/")


@dataclass(frozen=True, slots=True)
class Reader:
    """Reads FHIR JSON documents; told by the mappings which extensions fill which slots.

    ``services`` is, per resource type, the order of the elements that name the event's service
    (the mapping files' ``service`` lists): a plain tuple each, so a source may bring its own.
    """

    extensions: Mapping[str, Mapping[str, tuple[str, ...]]]
    status_codes: frozenset[str]
    source: str = ""
    sources: Sources = field(default_factory=Sources)
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Group.code values that make a Group one household (rules.md s.8; mappings/codes/)
    household_groups: frozenset[str] = frozenset()

    def read(
        self, doc: Any, origin: str, namespace: str | None = None, data: bytes | None = None
    ) -> Iterator[Record | RecordError]:
        """Every record in a document (a resource or a Bundle, nested Bundles included).

        ``namespace`` is the source the entry point knows the document by (its folder,
        ``--source``); None when it knows none. ``data`` is the JSON ``doc`` was parsed from,
        if known: an event that is the whole document keeps those bytes as its ``raw``. Errors
        are yielded, not raised, so one bad entry does not lose the rest of the file.
        """
        if not isinstance(doc, dict):
            yield RecordError(origin, f"expected a JSON object, got {_kind(doc)}")
            return
        if doc.get("resourceType") == "Bundle":
            yield from self._bundle(doc, origin, ChainMap(), namespace)
        else:
            yield from self._one(doc, origin, {}, "", _Entry(self._namespace(doc, namespace),
                                                             raw=data))

    def _services(self, rtype: str, namespace: str) -> tuple[str, ...]:
        """Which elements name the service: the source's own order where it gives one."""
        config = self.sources.config(namespace)
        own = config.service.get(rtype) if config else None
        return own if own is not None else self.services.get(rtype, ())

    def _namespace(self, res: Json, given: str | None, outer: str = HOME) -> str:
        """Whose ids a resource's are when no fullUrl says: the entry point's, else its
        ``meta.source``, else the enclosing Bundle's."""
        if given is not None:
            return given
        meta = _meta_source(res)
        return self.sources.for_server(meta) if meta else outer

    def _entry(self, entry: Json, res: Json, namespace: str) -> _Entry:
        """An entry's namespace and key: the fullUrl's server names whose ids they are; an entry
        with no id (a transaction's POST) is named by its fullUrl, or its request's url."""
        full, request = entry.get("fullUrl"), entry.get("request")
        url = request.get("url") if isinstance(request, dict) else None
        absolute = base_and_path(full) if isinstance(full, str) else None
        if absolute is not None:
            namespace = self.sources.for_server(absolute[0])
        rtype, rid = res.get("resourceType"), res.get("id")
        if not isinstance(rtype, str) or (isinstance(rid, str) and rid):
            return _Entry(namespace)
        if absolute is not None:
            return _Entry(namespace, scoped(absolute[1], namespace))
        if isinstance(url, str) and url.startswith(f"{rtype}/") and "?" not in url:
            return _Entry(namespace, scoped(url.split("/_history", 1)[0], namespace))
        conditional = conditional_key(url) if isinstance(url, str) and "?" in url else None
        if isinstance(full, str) and full.startswith("urn:"):
            return _Entry(namespace, scoped(f"{rtype}/{full}", namespace), conditional)
        return _Entry(namespace, "", conditional)

    def _bundle(
        self, bundle: Json, origin: str, outer: ChainMap[str, str], given: str | None,
        depth: int = 1, outer_namespace: str = HOME,
    ) -> Iterator[Any]:
        if depth > _MAX_BUNDLES:
            yield RecordError(origin, f"Bundles nested more than {_MAX_BUNDLES} deep: not read")
            return
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            yield RecordError(origin, "Bundle.entry: expected a list")
            return
        # A view over the outer Bundle's names, not a copy: copying them into each of many inner
        # Bundles cost quadratic time.
        aliases = outer.new_child()
        namespace = self._namespace(bundle, given, outer_namespace)
        named: dict[int, _Entry] = {}
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("resourceType") != "Bundle":
                named[i] = self._entry(entry, res, self._namespace(res, given, namespace))
                key = named[i].key or _own_key(res, named[i].namespace)
                full = entry.get("fullUrl")
                if key and isinstance(full, str):  # only strings: str() of deep values overflows
                    aliases[full] = key
        source = _meta_source(bundle) or self.source
        for i, entry in enumerate(entries):
            where = f"{origin} entry[{i}]"
            if not isinstance(entry, dict):
                yield RecordError(where, f"expected an object, got {_kind(entry)}")
                continue
            res = entry.get("resource")
            if res is None:
                continue  # request-only entries (DELETE, GET) and id-only notifications
            if not isinstance(res, dict):
                yield RecordError(f"{where}.resource", f"expected an object, got {_kind(res)}")
            elif res.get("resourceType") == "Bundle":
                yield from self._bundle(res, f"{where}.resource", aliases, given, depth + 1,
                                        namespace)
            else:
                yield from self._one(res, f"{where}.resource", aliases, source, named[i])

    def _one(
        self, res: Json, origin: str, aliases: Mapping[str, str], source: str, entry: _Entry
    ) -> Iterator[Record | RecordError]:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            yield RecordError(origin, "no resourceType: not a FHIR resource")
            return
        if rtype not in _EVENT_TYPES and rtype not in _CONTEXT_TYPES:
            return  # other resources are neither events nor context: nothing to do
        try:
            yield from self._records(rtype, res, origin, aliases, source, entry)
        except RecordError as exc:
            yield exc

    def _records(
        self, rtype: str, res: Json, origin: str, aliases: Mapping[str, str], source: str,
        entry: _Entry,
    ) -> Iterator[Record]:
        ctx = _ResourceReader(res, rtype, origin, aliases, _meta_source(res) or source or self.source,
                              entry, self.sources)
        if "contained" in res:  # rare: no generator for the others
            yield from ctx.contained_patients()
        if rtype == "Patient":
            yield ctx.patient()
            yield from household.patient_links(res, ctx.key, ctx.ref)
        elif rtype in _SECTION8_CONTEXT:
            if rtype == "RelatedPerson":  # a parent or carer: the WNB letter's recipient too
                facts = ctx.related_person()
                if facts is not None:
                    yield facts
            yield from self._section8(ctx)
        elif rtype in _CONTEXT_TYPES:
            fact = ctx.status_fact(self.status_codes)
            if fact is not None:
                yield fact
        else:
            yield ctx.event(self.extensions.get(rtype, {}), self._services(rtype, ctx.namespace))


    def _section8(self, ctx: _ResourceReader) -> Iterator[StatusFact]:
        """Household links and the 16-17 decision (ingest/household.py), as status facts."""
        if not ctx.key:
            return
        def concept(value: Any) -> set[str]:
            return ctx.concept(value, "code")
        if ctx.rtype == "RelatedPerson":
            fact = household.related_person_link(ctx.res, ctx.key, ctx.ref)
        elif ctx.rtype == "Task":
            fact = household.classify_answer(ctx.res, ctx.key, ctx.ref, concept)
        else:
            yield from household.group_links(ctx.res, ctx.key, ctx.ref, concept,
                                             self.household_groups)
            return
        if fact is not None:
            yield fact


_SECTION8_CONTEXT = frozenset({"RelatedPerson", "Group", "Task"})


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where a resource sits: the namespace of its ids, and its key when it has no id of its own
    (a transaction entry named by its fullUrl), or the child its request's url names."""

    namespace: str
    key: str = ""
    conditional: str | None = None
    raw: bytes | None = None  # the JSON the resource was read from, when it is the whole document


def _own_key(res: Json, namespace: str) -> str:
    rtype, rid = res.get("resourceType"), res.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return scoped(f"{rtype}/{rid}", namespace)
    return ""


class _ResourceReader:
    """Reading one resource: type-checked field access with the JSON path for errors."""

    def __init__(
        self, res: Json, rtype: str, origin: str, aliases: Mapping[str, str], source: str,
        entry: _Entry, sources: Sources,
    ) -> None:
        self.res, self.rtype, self.origin, self.aliases, self.source = (
            res, rtype, origin, aliases, source)
        self.entry, self.sources, self.namespace = entry, sources, entry.namespace
        self.key = _own_key(res, self.namespace) or entry.key
        self._contained: dict[str, str] | None = None
        # Each participant type's first actor, once an Appointment's participants are read.
        self.actors_by_type: dict[str, Json] | None = None
        # The resource's elements read whole by concepts(), so known to be well-formed.
        self.checked: set[str] = set()

    def ref(self, value: Any) -> str | None:
        """The key of a Reference this resource makes (relative ones are in its namespace)."""
        return reference_key(value, self.aliases, self.key, self.namespace, self.sources)

    def contained_type(self, local_id: str) -> str:
        """The type of the contained resource ``#local_id`` ('' if none), indexed on first use:
        a search per participant cost participants x contained."""
        if self._contained is None:
            self._contained = {}
            for item in self.items(self.res, "contained", ""):
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    rtype = item.get("resourceType")
                    self._contained.setdefault(item["id"], rtype if isinstance(rtype, str) else "")
        return self._contained.get(local_id, "")

    # -- typed access ------------------------------------------------------------------------
    def fail(self, path: str, reason: str) -> RecordError:
        return RecordError(f"{self.origin} ({self.rtype}.{path})", reason)

    def text(self, obj: Json, name: str, path: str) -> str | None:
        value = obj.get(name)
        if value is None or isinstance(value, str):
            return value
        raise self.fail(f"{path}{name}", f"expected a string, got {_kind(value)}")

    def obj(self, obj: Json, name: str, path: str) -> Json:
        value = obj.get(name)
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        raise self.fail(f"{path}{name}", f"expected an object, got {_kind(value)}")

    def items(self, obj: Json, name: str, path: str) -> list[Any]:
        value = obj.get(name)
        if type(value) is list:  # the usual case first: ~14 calls per resource
            return value
        if value is None:
            return []
        if isinstance(value, list):
            return value
        if isinstance(value, dict):  # R4 Coding where R5 has a list (Encounter.class)
            return [value]
        raise self.fail(f"{path}{name}", f"expected a list, got {_kind(value)}")

    def concept(self, value: Any, path: str) -> set[str]:
        """A CodeableConcept, a Coding, a CodeableReference or a bare code -> slot codes."""
        out: set[str] = set()
        self._concept_into(out, value, path)
        return out

    def _concept_into(
        self, out: set[str], value: Any, path: str, depth: int = 0, index: int | None = None
    ) -> None:
        # The hot path of every replay: paths for error messages are built only on failure
        # (``index``: the concept is item ``index`` of the list at ``path``).
        if value is None:
            return
        if type(value) is not dict:
            raise self.fail(_item(path, index), f"expected a CodeableConcept, got {_kind(value)}")
        inner = value.get("concept")
        if inner is not None:  # R5 CodeableReference
            if depth >= _MAX_CONCEPTS:
                raise self.fail(_item(path, index), f"concept nested more than {_MAX_CONCEPTS} deep")
            self._concept_into(out, inner, f"{_item(path, index)}.concept", depth + 1)
            return
        codings = value.get("coding")
        bare = codings is None  # a Coding where a CodeableConcept was expected
        if bare:
            codings = (value,) if "code" in value else ()
        elif type(codings) is not list:
            raise self.fail(f"{_item(path, index)}.coding",
                            f"expected a list, got {_kind(codings)}")
        for i, coding in enumerate(codings):
            # A well-formed Coding is read here, without a call per coding; anything else goes
            # to _coding_into, which names the fault.
            code = coding.get("code") if type(coding) is dict else _NOT_A_CODING
            if type(code) is str:
                system = coding.get("system")
                out.add(f"{system}|{code.strip()}" if type(system) is str
                        else "text:" + code.strip().lower())
            elif code is not None:
                self._coding_into(out, coding, _item(path, index), None if bare else i)
        label = value.get("text")
        if type(label) is str and label.strip():
            out.add("text:" + label.strip().lower())

    def _coding_into(self, out: set[str], coding: Any, path: str, index: int | None) -> None:
        if type(coding) is not dict:
            raise self.fail(_at(path, index), f"expected a Coding, got {_kind(coding)}")
        code = coding.get("code")
        if code is None:
            return
        if type(code) is not str:
            raise self.fail(f"{_at(path, index)}.code", f"expected a string, got {_kind(code)}")
        system = coding.get("system")
        out.add(f"{system}|{code.strip()}" if type(system) is str else "text:" + code.strip().lower())

    def concepts(self, obj: Json, name: str) -> set[str]:
        out: set[str] = set()
        self.concepts_into(out, obj, name)
        return out

    def concepts_into(self, out: set[str], obj: Json, name: str) -> None:
        if obj.get(name) is None:  # most of the elements asked for are absent
            return
        for i, item in enumerate(self.items(obj, name, "")):
            self._concept_into(out, item, name, 0, i)
        if obj is self.res:
            self.checked.add(name)

    def _extension_slots(
        self, slots: dict[str, set[str]], extensions: Mapping[str, tuple[str, ...]]
    ) -> None:
        """The slots the mappings fill from extensions (all but the provider, a reference).

        The resource's extension list is looked up once for every slot, not once per slot, and
        read slot by slot in the mappings' order, so a fault is the same one named whatever
        else the list holds."""
        exts: list[Any] | None = None
        for slot, urls in extensions.items():
            if slot == "provider":
                continue
            if exts is None:
                exts = self.items(self.res, "extension", "")
            out = slots.setdefault(slot, set())
            for i, ext in enumerate(exts):
                if type(ext) is dict and ext.get("url") in urls:
                    self._extension_into(out, ext, i)

    def _extension_into(self, out: set[str], ext: Json, index: int) -> None:
        for name in ("valueCodeableConcept", "valueCoding"):
            if name in ext:
                self._concept_into(out, ext[name], f"extension[{index}].{name}")
                return
        for name in ("valueCode", "valueString"):
            value = ext.get(name)
            if type(value) is str and value.strip():
                out.add("text:" + value.strip().lower())
                return

    def extension_reference(self, urls: tuple[str, ...]) -> str | None:
        for ext in self.items(self.res, "extension", ""):
            if isinstance(ext, dict) and ext.get("url") in urls:
                key = self.ref(ext.get("valueReference"))
                if key:
                    return key
        return None

    def when(self, *candidates: tuple[Json, str, str]) -> datetime | None:
        """The first of the candidate times present; None when there is none (the pipeline
        rejects a timeless event only if it raises a signal: a booked one needs no time)."""
        for obj, name, path in candidates:
            raw = self.text(obj, name, path)
            if raw:
                parsed = parse_datetime(raw)
                if parsed is None:
                    reason = date_problem(raw) or "not a FHIR dateTime"
                    raise self.fail(f"{path}{name}", f"{reason}: {raw[:40]!r}")
                return parsed
        return None

    # -- records -----------------------------------------------------------------------------
    def contained_patients(self) -> Iterator[PatientFacts]:
        for i, item in enumerate(self.items(self.res, "contained", "")):
            if isinstance(item, dict) and item.get("resourceType") == "Patient":
                inner = _ResourceReader(item, "Patient", f"{self.origin} contained[{i}]",
                                        self.aliases, self.source, self.entry, self.sources)
                local_id = item.get("id")
                local = f"{self.key}#{local_id if isinstance(local_id, str) else ''}"
                inner.key = ""  # a contained id means nothing outside its container
                facts = inner.patient()
                yield PatientFacts((local, *facts.aliases), facts.nhs_number, facts.birth_date,
                                   facts.origin, facts.letter)

    def patient(self) -> PatientFacts:
        aliases = [self.key] if self.key else []
        if self.entry.conditional:  # a transaction's PUT/POST Patient?identifier=...
            aliases.append(self.entry.conditional)
        nhs = None
        identifiers = self.items(self.res, "identifier", "")
        if len(identifiers) > MAX_IDENTIFIERS:
            raise self.fail("identifier", f"{len(identifiers):,} identifiers: more than "
                            f"{MAX_IDENTIFIERS} is not one patient's")
        for i, ident in enumerate(identifiers):
            if not isinstance(ident, dict):
                raise self.fail(f"identifier[{i}]", f"expected an object, got {_kind(ident)}")
            key = identifier_key(ident)
            if key is None:
                continue
            if key.startswith("nhs:"):
                if not nhs_number_is_valid(key[4:]):
                    continue  # kept as given nowhere: an invalid NHS number must not merge children
                if nhs is not None and nhs != key[4:]:
                    raise IdentityConflictError(
                        f"{self.origin} ({self.rtype}.identifier[{i}])", "a second, different "
                        "NHS number: one record is not two children's, and which is right is "
                        "for a person to decide (identity conflict: not merged)")
                nhs = key[4:]
            aliases.append(key)
        birth = self.text(self.res, "birthDate", "")
        if birth and date_problem(birth):
            birth = None  # a placeholder year: an unknown age, treated as a child's (hl7v2._v2_date)
        return PatientFacts(tuple(dict.fromkeys(a for a in aliases if a)), nhs, birth, self.origin,
                            letter_facts(self.res))

    def related_person(self) -> PatientFacts | None:
        """A RelatedPerson as a contact of the patient it names (for the WNB letter only)."""
        patient = self.ref(self.res.get("patient"))
        contact = contact_of_related_person(self.res, self.key) if self.key else None
        if not patient or contact is None:
            return None
        return PatientFacts((patient,), None, None, self.origin, LetterFacts(contacts=(contact,)))

    def status_fact(self, status_codes: frozenset[str]) -> StatusFact | None:
        codes = frozenset(self.concept(self.res.get("code"), "code"))
        if codes.isdisjoint(status_codes):
            return None
        patient = self.ref(self.obj(self.res, "subject", ""))
        if patient is None:
            raise self.fail("subject", "a status Flag/Condition must name its patient")
        if self.rtype == "Flag":
            period = self.obj(self.res, "period", "")
            start, end = self._bound(period, "start", "period."), self._bound(period, "end", "period.")
            active = self.text(self.res, "status", "") == "active"
        else:
            start = self._bound(self.res, "onsetDateTime", "") or self._bound(
                self.obj(self.res, "onsetPeriod", ""), "start", "onsetPeriod.") or self._bound(
                self.res, "recordedDate", "")
            end = self._bound(self.res, "abatementDateTime", "") or self._bound(
                self.obj(self.res, "abatementPeriod", ""), "end", "abatementPeriod.")
            clinical = self.concept(self.res.get("clinicalStatus"), "clinicalStatus")
            active = not clinical or any(c.endswith(("|active", "|recurrence", "|relapse"))
                                         for c in clinical)
        return StatusFact(self.key or self.origin, patient, codes, start, end, active)

    def _bound(self, obj: Json, name: str, path: str) -> datetime | None:
        """A status period's bound. A placeholder year (0001, 9999-12-31 for "no end") is an open
        bound, not a refusal: refusing the Flag would drop a child's protection status."""
        raw = self.text(obj, name, path)
        return parse_datetime(raw) if raw else None

    def _optional_time(self, obj: Json, name: str, path: str) -> datetime | None:
        """An optional time: unreadable text is no time, a year out of range refuses the record."""
        raw = self.text(obj, name, path)
        parsed = parse_datetime(raw) if raw else None
        if raw and parsed is None and (problem := date_problem(raw)):
            raise self.fail(f"{path}{name}", problem)
        return parsed

    def event(self, extensions: Mapping[str, tuple[str, ...]], services: tuple[str, ...]) -> Event:
        if not self.key:
            raise self.fail("id", "an event resource needs an id to be recognised when re-sent")
        status = self.text(self.res, "status", "")
        if not status:
            raise self.fail("status", "missing: cannot tell what happened")
        slots = {"status": {f"{STATUS_SYSTEMS[self.rtype]}|{status}"}}
        self._extension_slots(slots, extensions)
        reader = _EVENT_READERS[self.rtype]
        occurred, patient_ref, provider, service, performer = reader(self, slots, services)
        meta = self.obj(self.res, "meta", "")
        version = self.text(meta, "lastUpdated", "meta.") or self.text(meta, "versionId", "meta.")
        if "provider" in extensions:  # the booking organisation outranks where it took place
            provider = self.extension_reference(extensions["provider"]) or provider
        config = self.sources.config(self.namespace)
        if config is not None and config.ods:  # a configured source is one provider, by ODS code
            provider = config.ods
        return Event(
            key=self.key,
            resource_type=self.rtype,
            occurred=occurred,
            patient=self.ref(patient_ref),
            subject=_clean_reference(patient_ref),
            slots={k: frozenset(v) for k, v in slots.items() if v},
            origin=self.origin,
            source=self.source,
            provider=provider,
            service=service,
            performer=self.portable(_clean_reference(performer)),
            version=version or "",
            raw=self.entry.raw if self.entry.raw is not None else resource_json(self.res),
            focus=self.focus(),
            identifiers=self._identifier_values(),
        )

    def _server(self) -> str | None:
        """The base URL of this resource's own server, where one is known."""
        if self.namespace.startswith(("http://", "https://")):
            return self.namespace
        config = self.sources.config(self.namespace)
        return config.servers[0].rstrip("/") if config and config.servers else None

    def portable(self, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        """A Reference that means the same on the server outputs go to: a relative one made
        absolute on its own server, or, with no server known, its identifier and display only."""
        if ref is None or self.namespace == HOME:
            return ref
        text = ref.get("reference")
        if not isinstance(text, str) or "?" in text or base_and_path(text) is not None:
            return ref  # none, conditional or absolute: the same on every server
        rest = {k: v for k, v in ref.items() if k != "reference"}
        server = self._server()
        if server and not text.startswith(("#", "urn:")):
            return {**rest, "reference": f"{server}/{text}"}
        return rest if set(rest) - {"type"} else None

    def focus(self) -> dict[str, Any] | None:
        """What a Task's focus names when this event is not the target server's own resource:
        its identifier in its source's system, else its absolute URL, else a description."""
        if self.namespace == HOME:
            return None
        config = self.sources.config(self.namespace)
        idents = [i for i in self.items(self.res, "identifier", "") if type(i) is dict
                  and type(i.get("system")) is str and type(i.get("value")) is str]
        wanted = config.identifier_system if config else None
        chosen = next((i for i in idents if i["system"] == wanted), idents[0] if idents else None)
        if chosen is not None:
            return {"type": self.rtype,
                    "identifier": {"system": chosen["system"], "value": chosen["value"]}}
        path, server = self.key.partition("@")[0], self._server()
        if server and not path.split("/", 1)[1].startswith("urn:"):
            return {"type": self.rtype, "reference": f"{server}/{path}"}
        return {"type": self.rtype, "display": f"{path} at {self.namespace}"}

    def _identifier_values(self) -> tuple[str, ...]:
        values = []
        for ident in self.items(self.res, "identifier", ""):
            value = ident.get("value") if type(ident) is dict else None
            if type(value) is str and value:
                values.append(value)
        return tuple(values)


def _appointment(
    ctx: _ResourceReader, slots: dict[str, set[str]], services: tuple[str, ...]
) -> tuple[Any, ...]:
    res = ctx.res
    reason = res.get("cancelationReason", res.get("cancellationReason"))
    slots["cancellation-reason"] = ctx.concept(reason, "cancelationReason")
    visit = ctx.concept(res.get("appointmentType"), "appointmentType")
    for name in ("serviceType", "serviceCategory", "specialty", "class"):
        ctx.concepts_into(visit, res, name)
    slots["visit"] = visit
    slots["priority"] = _priority(ctx)
    patient, performer, place = _appointment_actors(ctx)
    if patient is None and isinstance(res.get("subject"), dict):
        patient = res["subject"]
    occurred = ctx.when((res, "start", ""), (res, "cancellationDate", ""),
                        (ctx.obj(res, "meta", ""), "lastUpdated", "meta."))
    return occurred, patient, place, _service(ctx, services), performer


def _appointment_actors(ctx: _ResourceReader) -> tuple[Any, Any, str | None]:
    patient = performer = place = None
    first: dict[str, Json] = {}
    for i, part in enumerate(ctx.items(ctx.res, "participant", "")):
        if not isinstance(part, dict):
            raise ctx.fail(f"participant[{i}]", f"expected an object, got {_kind(part)}")
        actor = part.get("actor")
        if type(actor) is not dict:  # absent, or the fault to name (the path built only then)
            actor = ctx.obj(part, "actor", f"participant[{i}].")
        kind = _actor_type(actor, ctx)
        if actor:
            first.setdefault(kind, actor)
        if kind == "Patient" and patient is None:
            patient = actor
        elif kind in ("HealthcareService", "Location") and place is None:
            place = ctx.ref(actor)
        elif kind.startswith("Practitioner") and performer is None:
            performer = actor
    ctx.actors_by_type = first  # for the service's participant:<type>, without a second walk
    return patient, performer, place


def _actor_type(actor: Json, ctx: _ResourceReader) -> str:
    declared = actor.get("type")
    if isinstance(declared, str):
        return declared
    ref = actor.get("reference")
    if not isinstance(ref, str):
        ident = actor.get("identifier")
        nhs = isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM
        return "Patient" if nhs else ""  # an NHS number names a patient even without a type
    if ref.startswith("#"):
        return ctx.contained_type(ref[1:])
    key = ctx.aliases.get(ref, ref) if ref.startswith("urn:") else ref
    if "?" in key:
        return key.split("?", 1)[0].rsplit("/", 1)[-1]
    head, slash, tail = key.partition("/")
    if slash and head and tail and "/" not in tail and "_history" not in (head, tail):
        return head  # the usual Type/id, without splitting it into a list
    parts = [p for p in key.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 else ""


def _encounter(
    ctx: _ResourceReader, slots: dict[str, set[str]], services: tuple[str, ...]
) -> tuple[Any, ...]:
    res = ctx.res
    slots["class"] = ctx.concepts(res, "class")
    kinds = ctx.concepts(res, "type")
    ctx.concepts_into(kinds, res, "serviceType")
    slots["type"] = kinds
    stay = ctx.obj(res, "hospitalization", "") or ctx.obj(res, "admission", "")
    slots.setdefault("discharge", set()).update(
        ctx.concept(stay.get("dischargeDisposition"), "hospitalization.dischargeDisposition"))
    slots["subject-status"] = ctx.concept(res.get("subjectStatus"), "subjectStatus")
    slots["priority"] = _priority(ctx)
    period = ctx.obj(res, "period", "") or ctx.obj(res, "actualPeriod", "")
    occurred = ctx.when((period, "end", "period."), (period, "start", "period."),
                        (ctx.obj(res, "meta", ""), "lastUpdated", "meta."))
    provider = ctx.ref(ctx.obj(res, "serviceProvider", ""))
    performer = None
    for part in ctx.items(res, "participant", ""):
        if isinstance(part, dict):
            performer = part.get("individual") or part.get("actor")
            if isinstance(performer, dict):
                break
    return occurred, ctx.obj(res, "subject", ""), provider, _service(ctx, services), performer


def _procedure(
    ctx: _ResourceReader, slots: dict[str, set[str]], _services: tuple[str, ...]
) -> tuple[Any, ...]:
    res = ctx.res
    slots["status-reason"] = ctx.concept(res.get("statusReason"), "statusReason")
    performed = ctx.obj(res, "performedPeriod", "") or ctx.obj(res, "occurrencePeriod", "")
    occurred = ctx.when((res, "performedDateTime", ""), (res, "occurrenceDateTime", ""),
                        (performed, "start", "performedPeriod."),
                        (ctx.obj(res, "meta", ""), "lastUpdated", "meta."))
    return occurred, ctx.obj(res, "subject", ""), None, _first_code(ctx.concept(
        res.get("code"), "code")), None


def _service_request(
    ctx: _ResourceReader, slots: dict[str, set[str]], _services: tuple[str, ...]
) -> tuple[Any, ...]:
    res = ctx.res
    slots["priority"] = _priority(ctx)
    occurred = ctx.when((res, "occurrenceDateTime", ""), (res, "authoredOn", ""),
                        (ctx.obj(res, "meta", ""), "lastUpdated", "meta."))
    requester = res.get("requester") if isinstance(res.get("requester"), dict) else None
    return occurred, ctx.obj(res, "subject", ""), None, _first_code(ctx.concept(
        res.get("code"), "code")), requester


def _episode_of_care(
    ctx: _ResourceReader, slots: dict[str, set[str]], services: tuple[str, ...]
) -> tuple[Any, ...]:
    """An episode of care at a service (rules.md s.8, "an episode ended"): its end is the time of
    the discharge it records. Before it ends it has no time of its own that means anything here,
    so an open episode falls back to when it was last changed."""
    res = ctx.res
    slots["type"] = ctx.concepts(res, "type")
    period = ctx.obj(res, "period", "")
    occurred = ctx.when((period, "end", "period."),
                        (ctx.obj(res, "meta", ""), "lastUpdated", "meta."))
    provider = ctx.ref(ctx.obj(res, "managingOrganization", ""))
    manager = res.get("careManager") if isinstance(res.get("careManager"), dict) else None
    return occurred, ctx.obj(res, "patient", ""), provider, _service(ctx, services), manager


def _priority(ctx: _ResourceReader) -> set[str]:
    """How urgent the contact is (rules.md s.8, clinical risk): R5 Appointment and Encounter
    priority (a CodeableConcept, v3 ActPriority), or a ServiceRequest's request-priority code.
    R4's Appointment.priority is a bare number with no agreed meaning, so it is not read."""
    value = ctx.res.get("priority")
    if isinstance(value, str) and value:
        return {f"http://hl7.org/fhir/request-priority|{value}"}
    if isinstance(value, dict):
        return ctx.concept(value, "priority")
    return set()


def _service(ctx: _ResourceReader, order: tuple[str, ...]) -> str | None:
    """The event's service: the first element of ``order`` that the resource gives (rules.md s.7).

    No element, no service: the "2 consecutive for the same service" rule then cannot apply, which
    is safer than guessing one from a category, a practitioner or the whole provider.
    """
    for element in order:
        key = _SERVICE_READERS[element](ctx)
        if key:
            return key
    return None


def _participant(kind: str) -> Any:
    def read(ctx: _ResourceReader) -> str | None:
        if ctx.actors_by_type is not None:  # the participants were read already
            actor = ctx.actors_by_type.get(kind)
            return ctx.ref(actor) if actor else None
        for i, part in enumerate(ctx.items(ctx.res, "participant", "")):
            actor = ctx.obj(part, "actor", f"participant[{i}].") if isinstance(part, dict) else {}
            if actor and _actor_type(actor, ctx) == kind:
                return ctx.ref(actor)
        return None
    return read


def _service_type_reference(ctx: _ResourceReader) -> str | None:
    """R5 serviceType is a CodeableReference(HealthcareService): its reference is the service."""
    for item in ctx.items(ctx.res, "serviceType", ""):
        if isinstance(item, dict) and isinstance(item.get("reference"), dict):
            key = ctx.ref(item["reference"])
            if key:
                return key
    return None


def _encounter_location(ctx: _ResourceReader) -> str | None:
    for i, item in enumerate(ctx.items(ctx.res, "location", "")):
        place = ctx.obj(item, "location", f"location[{i}].") if isinstance(item, dict) else {}
        key = ctx.ref(place)
        if key:
            return key
    return None


def _first_coding(name: str) -> Any:
    def read(ctx: _ResourceReader) -> str | None:
        """The first ``system|code`` coding of the first concept that has one, in document order:
        one deterministic choice, so the same clinic keeps the same key (never alphabetical)."""
        for i, item in enumerate(ctx.items(ctx.res, name, "")):
            concept = item.get("concept", item) if isinstance(item, dict) else item
            if name in ctx.checked and type(concept) is dict and "concept" not in concept:
                # Read whole by concepts() already: type-checked, so only the first coding
                # with a system and a code is looked for (what the codes below would show).
                coded = _first_system_code(concept)
                if coded is not None:
                    return coded
                continue
            codes = ctx.concept(concept, f"{name}[{i}]")  # type-checks the whole concept
            if not any(not c.startswith("text:") for c in codes):
                continue
            for coding in concept.get("coding") or [concept]:
                if isinstance(coding.get("system"), str) and isinstance(coding.get("code"), str):
                    return f"{coding['system']}|{coding['code'].strip()}"
        return None
    return read


def _first_system_code(concept: Json) -> str | None:
    """``system|code`` of a well-formed concept's first Coding with both, as _concept_into
    reads them: its ``coding`` list, or the concept itself when it is a bare Coding."""
    codings = concept.get("coding")
    if codings is None:
        codings = (concept,) if "code" in concept else ()
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        if type(system) is str and type(code) is str:
            return f"{system}|{code.strip()}"
    return None


_SERVICE_READERS = {
    "participant:HealthcareService": _participant("HealthcareService"),
    "participant:Location": _participant("Location"),
    "serviceType.reference": _service_type_reference,
    "location": _encounter_location,
    "specialty": _first_coding("specialty"),
    "serviceType": _first_coding("serviceType"),
    "type": _first_coding("type"),
}

_EVENT_READERS = {
    "Appointment": _appointment,
    "Encounter": _encounter,
    "Procedure": _procedure,
    "ServiceRequest": _service_request,
    "EpisodeOfCare": _episode_of_care,
}


def _item(path: str, index: int | None) -> str:
    return path if index is None else f"{path}[{index}]"


def _at(path: str, index: int | None) -> str:
    return path if index is None else f"{path}.coding[{index}]"


def _first_code(codes: set[str]) -> str | None:
    coded = sorted(c for c in codes if not c.startswith("text:"))
    return coded[0] if coded else None


def _clean_reference(ref: Any) -> dict[str, Any] | None:
    if not isinstance(ref, dict):
        return None
    out = {k: ref[k] for k in ("reference", "type", "identifier", "display") if k in ref}
    return out or None


def _meta_source(res: Json) -> str:
    meta = res.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    return source if isinstance(source, str) else ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")
