"""One HL7 v2 message -> the same records a FHIR twin gives (PatientFacts + Event), and its ACK.

The mapping for the message type (mappings/hl7v2/) names the fields; this module only reads them.
A message type with no mapping is acknowledged and ignored: most of a PAS feed is ADT updates the
guidance has nothing to say about. Reading is linear in the message's size (each field's
repetitions are split once) and every fault is a MessageError naming the field.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_segments

from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.fhir import Record
from fhir_engagement.ingest.fhirtime import date_problem, parse_datetime
from fhir_engagement.ingest.references import MAX_IDENTIFIERS, nhs_number_is_valid
from fhir_engagement.ingest.v2map import V2Mapping, V2Mappings
from fhir_engagement.ingest.v2parse import V2Message
from fhir_engagement.model import Event, PatientFacts

__all__ = ["CONDITIONS", "DEFAULT_VERSION", "INTERNAL_ERROR", "build_ack", "hl7apy_version", "read_v2",
           "v2_time"]

_LOG = logging.getLogger(__name__)
# HL7 table 0357 (message error condition codes): the ones an ACK from this adapter may carry.
CONDITIONS = {100: "Segment sequence error", 101: "Required field missing", 102: "Data type error",
              103: "Table value not found", 207: "Application internal error"}
INTERNAL_ERROR = 207
DEFAULT_VERSION = "2.5"  # an ACK for input with no readable MSH-12
DEFAULT_SEPARATORS = "|^~\\&"
_PROCESS_TAG = secrets.token_hex(1).upper()
_ACK_COUNTER = itertools.count()
_SHAPE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_CHECKED_SIZE = 2048  # a larger ACK echoes a pathological header: not worth hl7apy's time
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:-(\d{1,3})(?:\.(\d{1,2}))?)?$")

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


def build_ack(
    message: V2Message | None, code: str, text: str = "", where: str = "",
    error_code: int = INTERNAL_ERROR,
) -> bytes:
    """An ACK in the sender's own HL7 version: MSA-1 AA/AE/AR, MSA-2 echoing MSH-10, and for AE/AR
    an ERR segment naming ``where`` and the table 0357 ``error_code`` in that version's fields.

    Built as text: hl7apy takes 1.75 ms to build one, which alone would cap MLLP at ~570 msg/s.
    AE and AR are rare, so each is also checked against hl7apy's strict model of its version;
    a fault is logged (never the content) and the ACK is sent anyway: the sender needs an answer.
    ``message`` is None when the input has no usable MSH: the ACK is then v2.5, MSA-2 empty.
    """
    header = _header(message)
    now = datetime.now(UTC)
    ack = _ack(header, code, text, where, error_code, now, _control_id(now))
    if code != "AA" and message is not None:
        # The check sees the ACK's shape (fixed times, ids and text) so that one is kept per shape.
        fixed = _Header(header.separators, [*header.fields[:10], "1", *header.fields[11:]],
                        header.version)
        shape = _ack(fixed, code, "reason", where, error_code, _SHAPE_TIME, "1")
        if len(shape) <= _CHECKED_SIZE:
            _check(shape, header.version, header.separators)
    return ack.encode("utf-8")


def _ack(
    header: _Header, code: str, text: str, where: str, error_code: int, now: datetime, control: str
) -> str:
    segments = [_msh(header, now, control), _msa(header, code, text)]
    if code != "AA":
        segments.append(_err(header, error_code, text, where))
    return "\r".join(segments) + "\r"


@dataclass(frozen=True, slots=True)
class _Header:
    """The original's MSH as sent: ``fields[n]`` is MSH-n, still escaped in its separators."""

    separators: str
    fields: list[str]
    version: str  # MSH-12.1, which picks the ACK's field layout

    def raw(self, number: int) -> str:
        return self.fields[number] if number < len(self.fields) else ""


def _header(message: V2Message | None) -> _Header:
    if message is None:
        return _Header(DEFAULT_SEPARATORS, [], DEFAULT_VERSION)
    fields = message.segments["MSH"][0].split(message.separators[0])
    fields.insert(1, message.separators[0])  # MSH-1 is the field separator itself
    return _Header(message.separators, fields, message.get("MSH-12.1").strip() or DEFAULT_VERSION)


def _msh(header: _Header, now: datetime, control: str) -> str:
    """The ACK's MSH. Sending application/facility are the original's receiving ones and the
    other way round, swapped whole (an HD's namespace^universal id^type) as the sender wrote them;
    processing id (MSH-11, T for a test feed) and version (MSH-12) echo the original's."""
    f, c = header.separators[0], header.separators[1]
    trigger = header.raw(9).split(c)[1] if c in header.raw(9) else ""
    message_type = f"ACK{c}{trigger}"
    if _release(header.version) >= (2, 3, 1):  # MSH-9.3, the message structure, came in v2.3.1
        message_type += f"{c}ACK"
    return f.join(["MSH", header.separators[1:], header.raw(5), header.raw(6), header.raw(3),
                   header.raw(4), now.strftime("%Y%m%d%H%M%S+0000"), "", message_type,
                   control, header.raw(11) or "P", header.raw(12) or DEFAULT_VERSION])


def _control_id(now: datetime) -> str:
    """MSH-10 of an ACK, unique and within the 20 characters v2.1-v2.5.1 allow (v2.6+ allow 199).

    The second it was built (14 digits), this process's tag (2 hex digits, random at start, so
    that replicas differ) and a counter (4 hex digits): unique while one process sends fewer
    than 65,536 ACKs in one second. Readable: the time says when, in the sender's logs too.
    """
    return f"{now:%Y%m%d%H%M%S}{_PROCESS_TAG}{next(_ACK_COUNTER) % 0x10000:04X}"


def _msa(header: _Header, code: str, text: str) -> str:
    """MSA-1 the acknowledgment code, MSA-2 the original's control id as sent, MSA-3 the reason
    (v2.7 withdrew MSA-3: there the reason is only in ERR-8)."""
    fields = ["MSA", code, header.raw(10)]
    if text and _release(header.version) < (2, 7):
        fields.append(_escaper(header.separators)(text[:80]))
    return header.separators[0].join(fields)


def _err(header: _Header, error_code: int, text: str, where: str) -> str:
    """The ERR segment as the sender's version defines it.

    Up to v2.4 ERR-1 (ELD) is all there is: segment^sequence^field position^error code, the code
    a CE whose subcomponents are code&text&HL70357. From v2.5, ERR-2 (ERL) locates the fault,
    ERR-3 is the table 0357 code, ERR-4 the severity (E: error) and ERR-8 the user message.
    """
    f, c, sub = header.separators[0], header.separators[1], header.separators[4]
    condition = error_code if error_code in CONDITIONS else INTERNAL_ERROR
    name = CONDITIONS[condition]
    segment, field, component = _location(where)
    if _release(header.version) < (2, 5):
        eld = c.join([segment, "1" if segment else "", field,
                      sub.join([str(condition), name, "HL70357"])])
        return f.join(["ERR", eld])
    erl = c.join([segment, "1", field, "1" if component else "", component]).rstrip(c)
    return f.join(["ERR", "", erl if segment else "", c.join([str(condition), name, "HL70357"]),
                   "E", "", "", "", _escaper(header.separators)(text[:80])])


def _location(where: str) -> tuple[str, str, str]:
    """``PID-3``, ``SCH-11.4`` or ``PV1-19/SCH-1`` (the first named) -> segment, field, component;
    empty strings when ``where`` names no segment (an MLLP frame, an unforeseen failure)."""
    match = _LOCATION.match(where.split("/", 1)[0].strip())
    if match is None:
        return "", "", ""
    segment, field, component = match.groups()
    return segment, field or "", component or ""


def _release(text: str) -> tuple[int, ...]:
    """``2.5.1`` -> (2, 5, 1); what cannot be read is taken as the default version."""
    parts = text.split(".")
    if len(text) > 16 or not all(p.isascii() and p.isdigit() for p in parts):
        return _release(DEFAULT_VERSION)
    return tuple(int(p) for p in parts)


@functools.lru_cache(maxsize=256)
def _check(ack: str, version: str, separators: str) -> None:
    """hl7apy's strict reading of an AE/AR ACK in the nearest version it knows; faults are logged.

    hl7apy finds a message's structure from MSH-9.3, which v2.3 and earlier do not have, so the
    ACK structure is named here; only the exception's type is logged (no message content). Kept
    per ACK shape: a check takes 5-15 ms, and a store outage answers every message with AR.
    """
    nearest = hl7apy_version(version)
    chars = dict(zip(("FIELD", "COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT"), separators,
                     strict=True), SEGMENT="\r")
    try:
        ack_model = Message("ACK", version=nearest, validation_level=VALIDATION_LEVEL.STRICT,
                            encoding_chars=chars)
        ack_model.children = parse_segments(ack, nearest, chars, VALIDATION_LEVEL.STRICT,
                                            ack_model.reference, find_groups=True)
        ack_model.validate()
    except Exception as exc:  # a check only: the sender still gets its ACK
        _LOG.warning("an AE/AR ACK fails hl7apy's strict v%s check: %s", nearest,
                     type(exc).__name__)


def hl7apy_version(version: str) -> str:
    """The HL7 version hl7apy models that is nearest to ``version``: the latest not after it
    (a v2.9 or v2.5.2 sender is read as v2.8.2 or v2.5.1), else the earliest it has."""
    wanted = _release(version)
    known = sorted(SUPPORTED_LIBRARIES, key=_release)
    earlier = [v for v in known if _release(v) <= wanted]
    return earlier[-1] if earlier else known[0]


def _escaper(sep: str) -> Callable[[str], str]:
    table = {sep[3]: f"{sep[3]}E{sep[3]}", sep[0]: f"{sep[3]}F{sep[3]}",
             sep[1]: f"{sep[3]}S{sep[3]}", sep[2]: f"{sep[3]}R{sep[3]}",
             sep[4]: f"{sep[3]}T{sep[3]}"}

    def escape(value: str) -> str:
        return "".join(table.get(ch, ch) for ch in value.replace("\r", " ").replace("\n", " "))

    return escape

