"""The HL7 v2 ACK for one message, in the sender's own version: AA, AE or AR.

AA is built as text (hl7apy takes 1.75 ms to build one, which alone would cap MLLP at ~570 msg/s);
AE and AR, rare, are also checked with hl7apy's strict parser in the nearest version it knows.
The sending and receiving application/facility are swapped whole; MSH-11 and MSH-12 are echoed;
ERR follows the version (ERR-1 up to v2.4, ERR-2..4 and 8 from v2.5) with a table 0357 code.
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

from fhir_engagement.ingest.v2parse import V2Message

__all__ = ["CONDITIONS", "DEFAULT_VERSION", "INTERNAL_ERROR", "build_ack", "hl7apy_version"]

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

