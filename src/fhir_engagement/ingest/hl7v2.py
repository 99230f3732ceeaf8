"""One HL7 v2 message -> the same records a FHIR twin gives (PatientFacts + Event).

The mapping for the message type (mappings/hl7v2/) names the fields; this module only reads them.
A message type with no mapping is acknowledged and ignored: most of a PAS feed is ADT updates the
guidance has nothing to say about. Reading is linear in the message's size (each field's
repetitions are split once) and every fault is a MessageError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from fhir_engagement.config import SourceConfig
from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.ingest.fhirtime import date_problem, parse_datetime
from fhir_engagement.ingest.references import MAX_IDENTIFIERS, ODS_SYSTEM, nhs_number_is_valid
from fhir_engagement.ingest.sources import Sources
from fhir_engagement.ingest.v2map import V2Mapping, V2Mappings
from fhir_engagement.ingest.v2parse import V2Message
from fhir_engagement.model import Event, PatientFacts, scoped

__all__ = ["LOCAL_SYSTEM", "read_v2", "v2_time"]

# The store's own name for a PID-3 id whose system no source declares: it joins records only
# within its assigning authority (rules.md s.7) and is never written to an output.
LOCAL_SYSTEM = "urn:hl7v2:"

_NHS_TYPES = frozenset({"NH", "HN", "NHS"})
_TS = re.compile(r"^([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?(\.[0-9]+)?"
                 r"([+-][0-9]{4})?$")
_DIGITS = frozenset("0123456789")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def read_v2(
    message: V2Message, mappings: V2Mappings, origin: str, sources: Sources | None = None
) -> list[Record]:
    """The records in one message; [] for a type the mappings ignore. Raises MessageError."""
    mapping = mappings.for_type(message.message_type)
    if mapping is None:
        return []
    sender = _Sender.of(message, sources or Sources())
    patient = _patient(message, origin, sender)
    return [patient, _event(message, mapping, patient, origin, sender)]


@dataclass(frozen=True, slots=True)
class _Sender:
    """The sending system (MSH-3/MSH-4) as the configured sources know it."""

    application: str
    facility: str
    namespace: str
    config: SourceConfig | None

    @classmethod
    def of(cls, message: V2Message, sources: Sources) -> _Sender:
        app, fac = message.get("MSH-3.1"), message.get("MSH-4.1")
        namespace = sources.for_facility(app, fac)
        return cls(app, fac, namespace, sources.config(namespace))

    def patient_system(self, authority: str) -> str:
        """A PID-3 id's system: the source's declared one for its own ids, else the store's."""
        own = not authority or authority.upper() in {f.upper() for f in self._facilities()}
        if own and self.config and self.config.patient_identifier_system:
            return self.config.patient_identifier_system
        return f"{LOCAL_SYSTEM}{authority or self.facility or 'local'}"

    def _facilities(self) -> tuple[str, ...]:
        names = self.config.facilities if self.config else ()
        return (self.facility, *(n.rsplit("^", 1)[-1] for n in names))

    def identifier(self, value: str) -> dict[str, object]:
        """An appointment/visit id as the source declares it; never an invented system."""
        ident: dict[str, object] = {"value": value}
        if self.config and self.config.identifier_system:
            ident["system"] = self.config.identifier_system
        if self.config and self.config.ods:
            ident["assigner"] = {"identifier": {"system": ODS_SYSTEM, "value": self.config.ods}}
        elif self.facility:
            ident["assigner"] = {"display": self.facility}
        return ident


def _patient(message: V2Message, origin: str, sender: _Sender) -> PatientFacts:
    if not message.has("PID"):
        raise MessageError("PID", "no PID segment: the message names no patient", code=100)
    national: list[str] = []  # NHS numbers come first: the alias a child is known by
    local: list[str] = []
    nhs = None
    for field in ("PID-3", "PID-2"):
        if message.repetitions(field) > MAX_IDENTIFIERS:
            raise MessageError(field, f"{message.repetitions(field):,} identifiers: more than "
                               f"{MAX_IDENTIFIERS} is not one patient's")
        for rep in range(message.repetitions(field)):
            value = message.get(f"{field}.1", rep).replace(" ", "")
            if not value:
                continue
            authority = message.get(f"{field}.4.1", rep) or message.get(f"{field}.4", rep)
            kind = message.get(f"{field}.5", rep).upper()
            if kind in _NHS_TYPES or authority.upper() == "NHS":
                if nhs_number_is_valid(value):
                    if nhs is not None and nhs != value:
                        raise MessageError(field, "a second, different NHS number: one record "
                                           "is not two children's (identity conflict: not "
                                           "merged; a person must decide)", code=207)
                    nhs = value
                    national.append(f"nhs:{value}")
                continue  # an invalid NHS number must never join children's records
            local.append(f"id:{sender.patient_system(authority)}|{value}")
    if not national and not local:
        raise MessageError("PID-3", "no usable patient identifier", code=101)
    birth = _v2_date(message.get("PID-7.1"))
    aliases = dict.fromkeys([*national, *local])
    return PatientFacts(tuple(aliases), nhs, birth, origin)


def _event(
    message: V2Message, mapping: V2Mapping, patient: PatientFacts, origin: str, sender: _Sender
) -> Event:
    ident = _first(message, mapping.id_fields)
    if not ident:
        raise MessageError("/".join(mapping.id_fields), f"{message.message_type} carries no "
                           "appointment or visit id to recognise it when re-sent", code=101)
    facility = message.get("MSH-4.1")
    occurred = _time(message, mapping)
    slots: dict[str, frozenset[str]] = {}
    for source in mapping.slots:
        code = source.codes(message.get(source.field) if source.field else "", facility)
        if code:
            slots[source.slot] = frozenset({code})
    path = f"{mapping.resource}/v2.{_UNSAFE.sub('-', facility)}.{_UNSAFE.sub('-', ident)}"[:64]
    ods = sender.config.ods if sender.config else None
    return Event(
        key=scoped(path, sender.namespace),
        resource_type=mapping.resource,
        occurred=occurred,
        patient=patient.aliases[0],
        subject=None,
        slots=slots,
        origin=origin,
        source=f"urn:hl7v2:{message.get('MSH-3.1')}:{facility}",
        provider=ods or (f"Organization/v2.{_UNSAFE.sub('-', facility)}" if facility else None),
        service=_first(message, mapping.service_fields) or None,
        performer=_performer(message, mapping.performer),
        version=_version(message),
        focus={"type": mapping.resource, "identifier": sender.identifier(ident)},
        identifiers=(ident,),
    )


def _time(message: V2Message, mapping: V2Mapping) -> datetime | None:
    for ref in mapping.time_fields:
        raw = message.get(ref)
        if raw:
            moment = v2_time(raw)
            if moment is None:
                reason = date_problem(raw) or "not an HL7 v2 timestamp"
                raise MessageError(ref, f"{reason}: {raw[:40]!r}", code=102)
            return moment
    return None


def v2_time(value: str) -> datetime | None:
    """``YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ]`` -> aware UTC datetime (local London when no offset)."""
    match = _TS.match(value.strip())
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, tz = match.groups()
    iso = f"{y}-{mo or '01'}-{d or '01'}T{h or '00'}:{mi or '00'}:{s or '00'}{(frac or '')[:7]}"
    if tz:
        iso += f"{tz[:3]}:{tz[3:]}"
    return parse_datetime(iso)


def _v2_date(value: str) -> str | None:
    """PID-7 -> a FHIR date, keeping its precision (``2012``, ``2012-05``, ``2012-05-01``).

    A year out of range (python-hl7's samples hold ``10131113``) makes the birth date unknown,
    not the message unreadable: an unknown age is treated as a child's, the safe side, whereas
    refusing the message would lose the appointment for a fault in a demographic field.
    """
    digits = value.strip()[:8]
    if not _DIGITS.issuperset(digits) or len(digits) not in (4, 6, 8):
        return None
    text = "-".join(p for p in (digits[:4], digits[4:6], digits[6:8]) if p)
    return None if date_problem(text) else text


def _first(message: V2Message, refs: tuple[str, ...]) -> str:
    for ref in refs:
        value = message.get(ref).strip()
        if value:
            return value
    return ""


def _performer(message: V2Message, ref: str | None) -> dict[str, object] | None:
    if not ref or not message.get(f"{ref}.1"):
        return None
    name = " ".join(p for p in (message.get(f"{ref}.6"), message.get(f"{ref}.3"),
                                message.get(f"{ref}.2")) if p)
    # XCN.1 with no system: a v2 feed rarely says which register (GMC, NMC, local) it is from,
    # and an invented system would be wrong on every server.
    performer: dict[str, object] = {
        "type": "Practitioner", "identifier": {"value": message.get(f"{ref}.1")}}
    if name:
        performer["display"] = name
    return performer


def _version(message: V2Message) -> str:
    moment = v2_time(message.get("MSH-7.1"))
    return moment.isoformat() if moment else ""
