"""One HL7 v2 message -> the same records a FHIR twin gives (PatientFacts + Event).

The mapping for the message type (mappings/hl7v2/) names the fields; this module only reads them.
A message type with no mapping is acknowledged and ignored: most of a PAS feed is ADT updates the
guidance has nothing to say about. Reading is linear in the message's size (each field's
repetitions are split once) and every fault is a MessageError naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime

from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.ingest.fhirtime import date_problem, parse_datetime
from fhir_engagement.ingest.references import MAX_IDENTIFIERS, nhs_number_is_valid
from fhir_engagement.ingest.v2map import V2Mapping, V2Mappings
from fhir_engagement.ingest.v2parse import V2Message
from fhir_engagement.model import Event, PatientFacts

__all__ = ["read_v2", "v2_time"]

_NHS_TYPES = frozenset({"NH", "HN", "NHS"})
_TS = re.compile(r"^([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?(\.[0-9]+)?"
                 r"([+-][0-9]{4})?$")
_DIGITS = frozenset("0123456789")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def read_v2(message: V2Message, mappings: V2Mappings, origin: str) -> list[Record]:
    """The records in one message; [] for a type the mappings ignore. Raises MessageError."""
    mapping = mappings.for_type(message.message_type)
    if mapping is None:
        return []
    patient = _patient(message, origin)
    return [patient, _event(message, mapping, patient, origin)]


def _patient(message: V2Message, origin: str) -> PatientFacts:
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
                    nhs = value
                    national.append(f"nhs:{value}")
                continue  # an invalid NHS number must never join children's records
            local.append(f"id:urn:hl7v2:{authority or message.get('MSH-4.1') or 'local'}|{value}")
    if not national and not local:
        raise MessageError("PID-3", "no usable patient identifier", code=101)
    birth = _v2_date(message.get("PID-7.1"))
    aliases = dict.fromkeys([*reversed(national), *local])  # the last NHS number given wins
    return PatientFacts(tuple(aliases), nhs, birth, origin)


def _event(message: V2Message, mapping: V2Mapping, patient: PatientFacts, origin: str) -> Event:
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
    system = f"urn:hl7v2:{facility or 'local'}:{mapping.resource.lower()}"
    return Event(
        key=f"{mapping.resource}/v2.{_UNSAFE.sub('-', facility)}.{_UNSAFE.sub('-', ident)}"[:64],
        resource_type=mapping.resource,
        occurred=occurred,
        patient=patient.aliases[0],
        subject=None,
        slots=slots,
        origin=origin,
        source=f"urn:hl7v2:{message.get('MSH-3.1')}:{facility}",
        provider=f"Organization/v2.{_UNSAFE.sub('-', facility)}" if facility else None,
        service=_first(message, mapping.service_fields) or None,
        performer=_performer(message, mapping.performer),
        version=_version(message),
        focus={"type": mapping.resource, "identifier": {"system": system, "value": ident}},
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
    performer: dict[str, object] = {
        "type": "Practitioner",
        "identifier": {"system": f"urn:hl7v2:{message.get('MSH-4.1') or 'local'}:practitioner",
                       "value": message.get(f"{ref}.1")}}
    if name:
        performer["display"] = name
    return performer


def _version(message: V2Message) -> str:
    moment = v2_time(message.get("MSH-7.1"))
    return moment.isoformat() if moment else ""
