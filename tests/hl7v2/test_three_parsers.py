r"""v2parse against hl7apy and python-hl7: every mapped field, in every occurrence of its segment.

test_oracle.py compares the first occurrence of each segment with hl7apy. Here every occurrence
is compared (``SCH[1]``..``SCH[n]``, and OBX and NK1, which repeat in most ADT messages), with
both libraries, on every v2 file in fixtures/ and shared/realdata/hl7v2. Each library is asked
the question the way it reads:

- hl7apy (through test_oracle's Oracle: its own model, escapes decoded from the standard's
  table): the k-th occurrence is read from a message of MSH and that segment alone, since the
  Oracle holds the first segment of each name;
- python-hl7 (``message["OBX2.F5.R1.C1.S1"]``, which decodes escapes itself): it answers a
  component asked for without a subcomponent with the first subcomponent, so each reference is
  compared as ``SEG[k]-n.c.s`` with c and s at least 1, and ``""`` (the explicit null) is no value.

Where they differ on escape sequences, HL7 v2 section 2.7 decides; test_escapes_who_is_right
records each library's answer on the cases where they part, with the standard's, worked by hand.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import cache

import hl7
import pytest

from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.v2parse import V2Message, parse_message
from tests.hl7v2.test_oracle import IDENTIFIERS, MESSAGES, Oracle, _oracle, mapped_refs

# Read in every occurrence as well: repeated in most ADT messages, named by no mapping yet.
REPEATED = ("OBX-3.1", "OBX-5.1", "OBX-11.1", "NK1-2.1", "NK1-3.1", "NK1-4.1")
_REF = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")


@cache
def _by_segment() -> dict[str, tuple[str, ...]]:
    """The compared references, grouped by their segment."""
    groups: dict[str, list[str]] = {}
    for ref in (*mapped_refs(), *REPEATED):
        groups.setdefault(ref[:3], []).append(ref)
    return {seg: tuple(refs) for seg, refs in groups.items()}


def _parts(ref: str) -> tuple[str, int, int, int]:
    seg, number, comp, sub = _REF.match(ref).groups()  # type: ignore[union-attr]
    return seg, int(number), int(comp or 1), int(sub or 1)


def python_hl7(message: hl7.Message, seg: str, k: int, ref: str, rep: int = 0) -> str:
    """python-hl7's value of the k-th (from 0) segment's field, as its accessor reads it."""
    _, number, comp, sub = _parts(ref)
    try:
        value = str(message[f"{seg}{k + 1}.F{number}.R{rep + 1}.C{comp}.S{sub}"])
    except (IndexError, KeyError):
        return ""  # no such segment, repetition or component
    return "" if value == '""' else value


def ours_at(ours: V2Message, seg: str, k: int, ref: str, rep: int = 0) -> str:
    _, number, comp, sub = _parts(ref)
    return ours.get(f"{seg}[{k + 1}]-{number}.{comp}.{sub}", rep)


def hl7apy_at(raw: bytes, seg: str, k: int) -> Oracle:
    """hl7apy's reading of the k-th occurrence of ``seg`` (the whole message for the first)."""
    if k == 0:
        return _oracle(raw)
    lines = [line for line in raw.decode("utf-8", "replace").split("\r") if line]
    nth = [line for line in lines if line[:3] == seg][k]
    return Oracle(f"{lines[0]}\r{nth}\r")


def differences(raw: bytes) -> Iterator[str]:
    ours = parse_message(raw)
    theirs = hl7.parse(ours.text)
    for seg, refs in _by_segment().items():
        count = ours.occurrences(seg)
        try:
            their_count = len(theirs.segments(seg))
        except KeyError:
            their_count = 0
        if count != their_count:
            yield f"{seg}: ours {count} occurrences, python-hl7 {their_count}"
        for k in range(count):
            apy = hl7apy_at(raw, seg, k)
            for ref in refs:
                mine = ours.get(ref.replace(f"{seg}-", f"{seg}[{k + 1}]-", 1))
                if k > 0 and seg != "MSH" and mine != apy.get(ref):
                    yield f"{seg}[{k + 1}] {ref}: ours {mine!r}, hl7apy {apy.get(ref)!r}"
                if ours_at(ours, seg, k, ref) != python_hl7(theirs, seg, k, ref):
                    yield (f"{seg}[{k + 1}] {ref}: ours {ours_at(ours, seg, k, ref)!r}, "
                           f"python-hl7 {python_hl7(theirs, seg, k, ref)!r}")
    for ref in IDENTIFIERS:
        field = ref.split(".")[0]
        for rep in range(ours.repetitions(field)):
            if ours_at(ours, "PID", 0, ref, rep) != python_hl7(theirs, "PID", 0, ref, rep):
                yield (f"{ref}~{rep + 1}: ours {ours_at(ours, 'PID', 0, ref, rep)!r}, "
                       f"python-hl7 {python_hl7(theirs, 'PID', 0, ref, rep)!r}")


READABLE = [(name, raw) for name, raw in MESSAGES if raw.startswith(b"MSH")]


@pytest.fixture(autouse=True)
def _quiet_python_hl7() -> Iterator[None]:
    """python-hl7 logs each escape it cannot decode, with the field's content: not in our logs."""
    logger = logging.getLogger("hl7")
    level, logger.level = logger.level, logging.CRITICAL + 1
    yield
    logger.setLevel(level)


@pytest.mark.parametrize(("name", "raw"), READABLE, ids=[n for n, _ in READABLE])
def test_every_occurrence_of_every_mapped_field_matches_both_libraries(name: str, raw: bytes) -> None:
    try:
        parse_message(raw)
    except MessageError:
        pytest.skip("not a message (test_oracle checks hl7apy refuses it too)")
    assert list(differences(raw)) == []


def test_repeated_segments_are_compared() -> None:
    """So the comparison above is not only of first occurrences: real files repeat segments."""
    repeated = {seg for _, raw in READABLE for seg in ("OBX", "NK1", "AIS", "AIP", "AIL", "PV1")
                if raw.count(f"\r{seg}|".encode()) > 1}
    assert {"OBX", "NK1"} <= repeated, repeated


# (field as sent, what the adapter makes of it, python-hl7's answer, hl7apy's, case).
# MSH-2 ^~\&, MSH-18 empty. hl7apy's answer is its value with the delimiter escapes decoded
# (Oracle.get): it decodes only those, and takes any other backslash as data (its to_er7
# writes it back as \E\). Section 2.7 says a field of type ST allows only the delimiter escapes
# (\F\ \S\ \T\ \R\ \E\ \P\); hex (2.7.5), highlighting (2.7.3) and formatting (2.7.6) are defined
# for TX, FT and CF. hl7apy, which knows each field's type, follows that letter. The adapter has
# no type model on its hot path and reads them in any field: feeds do send \X..\ in names and
# comments (ST, XPN), and the issue asks for "é", not "\XC3A9\". Verdicts, case by case:
ESCAPES = [
    # \Xdddd..\ is hexadecimal data in the message's character set (MSH-18 empty: UTF-8, the
    # adapter's documented default). C3 A9 is "é" in UTF-8. python-hl7 makes one character of
    # each byte (latin-1): "Ã©", wrong in any field. hl7apy keeps it as text: right for ST by
    # the letter, wrong for TX/FT.
    ("caf\\XC3A9\\", "café", "cafÃ©", "caf\\XC3A9\\", "hex in UTF-8"),
    # A character split over two hex escapes is still one character.
    ("caf\\XC3\\\\XA9\\", "café", "cafÃ©", "caf\\XC3\\\\XA9\\", "hex across escapes"),
    # "\temp\" is no escape the standard defines; a literal backslash should have been sent as
    # \E\, so the input is malformed, and keeping the characters (hl7apy and the adapter) loses
    # nothing. python-hl7 drops "temp", the lone backslash and the text after it: "C:x", wrong.
    ("C:\\temp\\x", "C:\\temp\\x", "C:x", "C:\\temp\\x", "not an escape"),
    # \E\ is the escape character itself (2.7.4): all three agree.
    ("C:\\E\\temp\\E\\x", "C:\\temp\\x", "C:\\temp\\x", "C:\\temp\\x", "escaped escape"),
    # \T\ is the subcomponent separator as data (2.7.4): all three agree.
    ("Smith \\T\\ Sons", "Smith & Sons", "Smith & Sons", "Smith & Sons", "separator as data"),
    # \.br\ is a line break in FT (2.7.6). python-hl7 gives a CR (the segment separator in ER7);
    # the adapter "\n"; hl7apy keeps it as text (right for ST).
    ("line1\\.br\\line2", "line1\nline2", "line1\rline2", "line1\\.br\\line2", "line break"),
    # \H\ and \N\ start and end highlighting (2.7.3): no text. python-hl7 writes "_" for each.
    ("\\H\\urgent\\N\\", "urgent", "_urgent_", "\\H\\urgent\\N\\", "highlighting"),
]


@pytest.mark.parametrize(("sent", "adapter", "theirs", "apy", "case"), ESCAPES,
                         ids=[c[4] for c in ESCAPES])
def test_escapes_who_is_right(sent: str, adapter: str, theirs: str, apy: str, case: str) -> None:
    text = f"MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|2.5\rSCH|{sent}|F-1\r"
    assert parse_message(text.encode()).get("SCH-1.1") == adapter
    assert str(hl7.parse(text)["SCH1.F1.R1.C1.S1"]) == theirs  # python-hl7, as recorded
    assert Oracle(text).get("SCH-1.1") == apy  # hl7apy, as recorded


def test_msh18_names_the_set_hex_is_read_in() -> None:
    """8859/1: E9 is "é"; UTF-8 (UNICODE UTF-8): C3 A9 is; bytes not UTF-8 fall back to latin-1."""
    def sch1(charset: str, field: str) -> str:
        head = f"MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|2.5||||||{charset}"
        return parse_message(f"{head}\rSCH|{field}|F\r".encode()).get("SCH-1")

    assert sch1("8859/1", "caf\\XE9\\") == "café"
    assert sch1("UNICODE UTF-8", "caf\\XC3A9\\") == "café"
    assert sch1("", "caf\\XE9\\") == "café"  # E9 alone is not UTF-8: read byte by byte
    assert sch1("8859/7", "\\XE1\\") == "α"  # Greek: E1 is alpha, not "á"
    assert sch1("", "\\XZZ\\") == "\\XZZ\\"  # not hex: not an escape, kept


def test_occurrences_are_addressed_from_one() -> None:
    message = parse_message(b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|9|P|2.5\r"
                            b"NK1|1|Mum^A\rNK1|2|Dad^B\rPID|||1\r")
    assert message.occurrences("NK1") == 2
    assert [message.get(f"NK1[{k}]-2.1") for k in (1, 2, 3)] == ["Mum", "Dad", ""]
    assert message.get("NK1-2.1") == message.get("NK1[1]-2.1") == "Mum"
    with pytest.raises(ValueError, match="from 1"):
        message.get("NK1[0]-2.1")


def test_the_comparison_can_fail() -> None:
    """A difference in a second occurrence is found and named, by each library."""
    raw = (b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|9|P|2.5\rPID|||1\r"
           b"OBX|1|ST|X||plain\rOBX|2|ST|X||caf\\XC3A9\\\r")
    # OBX-5 is typed by OBX-2 (ST here): hl7apy keeps hex as text in ST (see ESCAPES).
    assert list(differences(raw)) == [
        "OBX[2] OBX-5.1: ours 'café', hl7apy 'caf\\\\XC3A9\\\\'",
        "OBX[2] OBX-5.1: ours 'café', python-hl7 'cafÃ©'"]
