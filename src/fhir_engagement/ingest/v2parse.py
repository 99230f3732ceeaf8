r"""HL7 v2 ER7 text -> a light message whose fields are read by name ("PID-3", "SCH-11.4", "OBX[2]-5").

Why not hl7apy or python-hl7 here: measured on this machine, hl7apy parses an SIU^S26 in 31 ms
and an 8.5 KB ADT in 108 ms, python-hl7 in 1 ms and 4 ms; a replay of a v2 archive needs thousands
a second. Most messages are ADT updates the adapter ignores, so the type is read from MSH-9 first
and only the segments a mapping names are ever split. hl7apy stays the oracle the tests compare
this parser with.

Tolerates what real feeds hold: CR, LF or CRLF separators, a UTF-8 BOM, ``""`` explicit nulls,
Z-segments, MSH-9 with 2 or 3 components, BHS/FHS batch wrappers, escape sequences, and MSH-18
character sets (UTF-8 by default, latin-1 when the bytes are not UTF-8).

Escape sequences (HL7 v2 section 2.7) are decoded only when the standard defines them: \F\ \S\
\R\ \E\ \T\ (and \P\, v2.7's truncation character, when MSH-2 declares one), \Xhh..\ as
bytes in the message's character set (MSH-18; UTF-8 when it says nothing, so \XC3A9\ is "é";
bytes that are not text in it are read as latin-1), formatting (.br, .sp, .ce a line break; the
others, \H\ \N\, \Z..\ local and \C..\ \M..\ character-set switches carry no text here).
Anything else is not an escape: the standard says a literal escape character must be sent as
\E\, but a feed that sends "C:\temp\x" means those characters, and keeping them loses nothing,
where dropping what lies between two backslashes (python-hl7 does) loses the text.

A segment that repeats (OBX, NK1, AIS...) is read by occurrence: ``OBX[2]-5`` is the second OBX
(1-based, as HL7 counts repetitions); a reference without one is the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from fhir_engagement.errors import MessageError

__all__ = ["V2Message", "parse_message", "split_messages"]

_BOM = b"\xef\xbb\xbf"
_WRAPPERS = (b"BHS", b"BTS", b"FHS", b"FTS")
_LATIN1 = frozenset({"8859/1", "ISO-8859-1", "ISO IR100", "ISO_IR 100", "LATIN1"})
# HL7 table 0211 (MSH-18) -> Python codecs: the ones whose meaning is unambiguous. Another value
# (or none) is read as UTF-8, the default the adapter documents.
_CHARSETS = {"ASCII": "ascii", "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8", "UTF-8": "utf-8",
             "GB 18030-2000": "gb18030", "BIG-5": "big5", "KS X 1001": "euc_kr",
             **{f"8859/{n}": f"iso8859-{n}" for n in (*range(1, 10), 15)},
             **dict.fromkeys(_LATIN1, "latin-1")}
_LINE_BREAKS = frozenset({".br", ".sp", ".ce"})
_FORMATTING = frozenset({".fi", ".nf", ".in", ".ti", ".sk"})  # may carry a number: ".in+4"
_HEX = frozenset("0123456789ABCDEFabcdef")
_SEPARATORS = frozenset("\r\n")  # segment ends cannot also separate fields
_FIELD_REF = re.compile(
    r"^([A-Z][A-Z0-9]{2})(?:\[(\d{1,4})\])?-(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")


def split_messages(data: bytes) -> list[bytes]:
    """The messages in a file or batch: segments end in CR, LF or CRLF; wrappers are dropped."""
    text = data.removeprefix(_BOM).replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    messages: list[list[bytes]] = []
    for segment in text.split(b"\r"):
        segment = segment.strip(b" \t\x0b\x1c")
        if not segment or segment[:3] in _WRAPPERS:
            continue
        if segment.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(segment)
    return [b"\r".join(m) + b"\r" for m in messages]


@dataclass(slots=True)
class V2Message:
    """One message: MSH values read eagerly, other segments split on first use."""

    raw: bytes
    text: str
    separators: str  # field, component, repetition, escape, subcomponent
    segments: dict[str, list[str]] = field(default_factory=dict)
    charset: str = "utf-8"  # the codec \X..\ bytes are text in (MSH-18)
    _split: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    # Each field's repetitions, split once: splitting per read made a 32,000-repetition PID-3
    # cost quadratic time (a hostile 288 KB message froze the process for over half a minute).
    _reps: dict[tuple[str, int, int], list[str]] = field(default_factory=dict)

    @property
    def message_type(self) -> str:
        """``SIU^S26`` from MSH-9 (its third component, the structure, is ignored)."""
        return f"{self.get('MSH-9.1')}^{self.get('MSH-9.2')}"

    @property
    def control_id(self) -> str:
        return self.get("MSH-10")

    @property
    def sender(self) -> str:
        """Sending application and facility, the scope in which MSH-10 is unique."""
        return f"{self.get('MSH-3.1')}|{self.get('MSH-4.1')}"

    def has(self, segment: str) -> bool:
        return segment in self.segments

    def get(self, ref: str, repetition: int = 0) -> str:
        """The unescaped value at ``SEG[k]-n[.c[.s]]``; empty when absent or the ``""`` null."""
        seg, occurrence, number, comp, sub = _parse_ref(ref)
        reps = self._repetitions(seg, occurrence, number)
        if repetition >= len(reps):
            return ""
        return self._component(reps[repetition], comp, sub)

    def repetitions(self, ref: str) -> int:
        """How many repetitions field ``SEG-n`` holds (PID-3 lists several identifiers)."""
        seg, occurrence, number, _, _ = _parse_ref(ref)
        reps = self._repetitions(seg, occurrence, number)
        return 0 if reps == [""] else len(reps)

    def occurrences(self, segment: str) -> int:
        """How many times ``segment`` occurs (every OBX, NK1...): ``SEG[1]`` to ``SEG[n]``."""
        return len(self.segments.get(segment, ()))

    def _repetitions(self, seg: str, occurrence: int, number: int) -> list[str]:
        key = (seg, occurrence, number)
        reps = self._reps.get(key)
        if reps is None:
            fields = self._fields(seg, occurrence)
            value = fields[number] if number < len(fields) else ""
            # MSH-2 holds the repetition separator itself: it is one value, not two.
            reps = value.split(self.separators[2]) if seg != "MSH" or number != 2 else [value]
            self._reps[key] = reps
        return reps

    def _fields(self, seg: str, occurrence: int) -> list[str]:
        fields = self._split.get((seg, occurrence))
        if fields is None:
            lines = self.segments.get(seg)
            if not lines or occurrence >= len(lines):
                return []
            fields = lines[occurrence].split(self.separators[0])
            if seg == "MSH":  # MSH-1 is the field separator itself
                fields.insert(1, self.separators[0])
            self._split[(seg, occurrence)] = fields
        return fields

    def _component(self, value: str, comp: int, sub: int) -> str:
        if comp:
            parts = value.split(self.separators[1])
            value = parts[comp - 1] if comp <= len(parts) else ""
            if sub:
                parts = value.split(self.separators[4])
                value = parts[sub - 1] if sub <= len(parts) else ""
        elif self.separators[1] in value:
            value = value.split(self.separators[1], 1)[0]
        if value == '""':
            return ""  # the v2 explicit null: "delete this value", never a value to map
        if self.separators[3] not in value:
            return value
        return _unescape(value, self.separators, self._truncation(), self.charset)

    def _truncation(self) -> str:
        """v2.7's truncation character (a fifth MSH-2 character), '' before v2.7."""
        msh2 = self._repetitions("MSH", 0, 2)[0]
        return msh2[4] if len(msh2) > 4 else ""


def parse_message(raw: bytes) -> V2Message:
    """Split one message into segments, reading MSH; raises MessageError naming what is wrong."""
    raw = raw.removeprefix(_BOM)
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise MessageError("MSH", "a message must start with an MSH segment", code=100)
    text, charset = _decode(raw)
    separators = text[3:8]
    if (len(separators) != 5 or len(set(separators)) != 5 or separators[0].isalnum()
            or not _SEPARATORS.isdisjoint(separators)):
        raise MessageError("MSH-1/MSH-2", f"unusable separators {separators!r}", code=102)
    segments: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if len(line) >= 3:  # a segment id is three characters
            segments.setdefault(line[:3], []).append(line)
    message = V2Message(raw, text, separators, segments, charset)
    if not message.get("MSH-9.1") or not message.get("MSH-9.2"):
        raise MessageError("MSH-9", "no message type and trigger event", code=101)
    if not message.control_id:
        raise MessageError("MSH-10", "no message control id: the ACK could not name it",
                           code=101)
    return message


def _decode(raw: bytes) -> tuple[str, str]:
    """The message's text and the codec its \\X..\\ bytes are read in (MSH-18)."""
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = first.split(first[3:4]) if len(first) > 3 else []
    declared = fields[17].decode("ascii", "replace").strip().upper() if len(fields) > 17 else ""
    # MSH-18 may repeat (the default set, then the alternate ones): the first is the message's.
    charset = _CHARSETS.get(declared.split(first[5:6].decode("latin-1") or "~")[0], "utf-8")
    if charset != "utf-8":
        try:
            return raw.decode(charset), charset
        except UnicodeDecodeError:
            pass  # a feed that says ASCII and sends more: read as below
    try:
        return raw.decode("utf-8"), charset
    except UnicodeDecodeError:
        return raw.decode("latin-1"), charset  # many PAS feeds send latin-1 and say nothing


@cache
def _parse_ref(ref: str) -> tuple[str, int, int, int, int]:
    """(segment, occurrence from 0, field, component, subcomponent); a few dozen refs, cached."""
    match = _FIELD_REF.match(ref)
    if match is None:
        raise ValueError(f"not a v2 field reference: {ref!r}")
    seg, occurrence, number, comp, sub = match.groups()
    if occurrence is not None and int(occurrence) < 1:
        raise ValueError(f"segment occurrences count from 1: {ref!r}")
    return seg, int(occurrence or 1) - 1, int(number), int(comp or 0), int(sub or 0)


def _unescape(value: str, separators: str, truncation: str = "", charset: str = "utf-8") -> str:
    """Decode the escape sequences HL7 v2 section 2.7 defines; keep anything else as it is."""
    esc = separators[3]
    table = {"F": separators[0], "S": separators[1], "R": separators[2], "E": esc,
             "T": separators[4]}
    if truncation:
        table["P"] = truncation
    out: list[str] = []
    pending = bytearray()  # consecutive \X..\ bytes: a character may span two of them
    i = 0
    while i < len(value):
        end = value.find(esc, i + 1) if value[i] == esc else -1
        if end > i:
            code = value[i + 1:end]
            if code[:1] == "X" and len(code) % 2 == 1 and _HEX.issuperset(code[1:]) and code[1:]:
                pending += bytes.fromhex(code[1:])
                i = end + 1
                continue
            text = _code_text(code, table)
            if text is not None:
                _flush(out, pending, charset)
                out.append(text)
                i = end + 1
                continue
        _flush(out, pending, charset)
        out.append(value[i])  # not an escape: the character is data
        i += 1
    _flush(out, pending, charset)
    return "".join(out)


def _code_text(code: str, table: dict[str, str]) -> str | None:
    """The text an escape code stands for; None when it is no escape the standard defines."""
    found = table.get(code)
    if found is not None:
        return found
    if code in ("H", "N") or code[:3] in _FORMATTING:
        return ""  # highlighting and layout: no text
    if code in _LINE_BREAKS or (code[:3] in _LINE_BREAKS and _signed_number(code[3:])):
        return "\n"
    if code[:1] in ("Z", "C", "M") and len(code) > 1 and code.isalnum():
        return ""  # local escapes and character-set switches: nothing this adapter can apply
    return None


def _signed_number(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _flush(out: list[str], pending: bytearray, charset: str) -> None:
    if pending:
        try:
            out.append(pending.decode(charset))
        except (UnicodeDecodeError, LookupError):
            out.append(pending.decode("latin-1"))  # not text in the declared set: byte by byte
        pending.clear()
