"""The fast v2 parser against hl7apy, field by field, on every v2 message the project holds.

Compared: every field reference the shipped v2 mappings name (id, time, service, slot fields, and
the performer with the components ingest/hl7v2.py reads from it), the MSH fields that identify a
message, and every repetition of the patient identifiers (PID-3, PID-2) with the components read
from each. Each message of every ``.hl7`` file in fixtures/ and shared/realdata/hl7v2 is one test.

hl7apy is read through its own model (segments, fields by name, components by position), so the
oracle shares no splitting code with v2parse. Three rules make the two answer the same question:
``""`` (the v2 explicit null) is no value; a field asked for without a component is its first
component, as ingest reads it; hl7apy keeps escape sequences, so they are decoded here from the
standard table (HL7 v2 section 2.7). Where hl7apy cannot answer, the test says so in the run's
notes and compares the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from hl7apy.core import Element, Segment
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message as hl7apy_message
from hl7apy.parser import parse_segment as hl7apy_segment

from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.v2map import load_v2_mappings
from fhir_engagement.ingest.v2parse import V2Message, parse_message, split_messages
from tests.conftest import FIXTURES, MAPPINGS, REALDATA

# What identifies a message (type, control id, sender, version) and the patient (ids, birth date).
ALWAYS_READ = ("MSH-3", "MSH-3.1", "MSH-4", "MSH-4.1", "MSH-7.1", "MSH-9", "MSH-9.1", "MSH-9.2",
               "MSH-10", "MSH-12", "MSH-12.1", "PID-7", "PID-7.1")
# Read in every repetition (ingest/hl7v2.py walks them for NHS numbers and local ids).
IDENTIFIERS = ("PID-3", "PID-3.1", "PID-3.4", "PID-3.4.1", "PID-3.5",
               "PID-2", "PID-2.1", "PID-2.4", "PID-2.4.1", "PID-2.5")
PERFORMER_COMPONENTS = (1, 2, 3, 6)  # id, family, given, prefix: what hl7v2._performer reads
# v2.7+ withdrew fields feeds still send (SCH-11 timing, PID-2 patient id); hl7apy leaves them
# unnamed in those versions, so such a segment is read again as v2.5, where they are defined.
FALLBACK_VERSION = "2.5"

# Where the two differ on purpose: (file relative to its root, field) -> why ours answers differently.
# Empty today: every difference seen so far was a reading difference the rules above settle.
ALLOWED: dict[tuple[str, str], str] = {}

_REF = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\.(\d{1,2}))?(?:\.(\d{1,2}))?$")
_POSITION = re.compile(r"_(\d+)$")


def mapped_refs() -> tuple[str, ...]:
    """Every field reference the v2 mappings use, plus the message and patient fields always read."""
    refs = set(ALWAYS_READ)
    for mapping in load_v2_mappings(MAPPINGS / "hl7v2").by_type.values():
        refs.update(mapping.id_fields, mapping.time_fields, mapping.service_fields)
        refs.update(s.field for s in mapping.slots if s.field)
        if mapping.performer:
            refs.add(mapping.performer)
            refs.update(f"{mapping.performer}.{c}" for c in PERFORMER_COMPONENTS)
    return tuple(sorted(refs))


def v2_files() -> list[tuple[str, Path]]:
    """(name, path) of every v2 file; renalware's .hl7.erb Ruby templates are not messages."""
    found = [(f"fixtures/{p.relative_to(FIXTURES)}", p) for p in sorted(FIXTURES.rglob("*.hl7"))]
    found += [(f"realdata/{p.relative_to(REALDATA)}", p)
              for p in sorted((REALDATA / "hl7v2").rglob("*.hl7"))]
    return found


def _messages() -> list[tuple[str, bytes]]:
    return [(f"{name}#{n}", raw) for name, path in v2_files()
            for n, raw in enumerate(split_messages(path.read_bytes()), 1)]


class Oracle:
    """hl7apy's reading of one message: the first segment of each name, as v2parse reads."""

    def __init__(self, text: str) -> None:
        self.problems: list[str] = []  # what hl7apy could not read, for the run's notes
        self.segments: dict[str, Segment] = {}
        self.encoding: dict[str, str] = {}
        self.lines: dict[str, str] = {}  # the first line of each segment, to read it again
        for line in text.split("\r"):
            if len(line) >= 3:
                self.lines.setdefault(line[:3], line)
        try:
            message = hl7apy_message(text, find_groups=False, validation_level=2)
        except HL7apyException as exc:
            self.problems.append(f"hl7apy cannot parse the message ({type(exc).__name__}); "
                                 "compared segment by segment")
            self._parse_segments(text)
            return
        self.version = message.version
        self.encoding = message.encoding_chars
        for segment in message.children:
            self.segments.setdefault(segment.name, segment)

    def _parse_segments(self, text: str) -> None:
        self.version = FALLBACK_VERSION
        # MSH-1 and MSH-2 as the standard lays them out: |^~\& after "MSH".
        names = ("FIELD", "COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT")
        self.encoding = dict(zip(names, text[3:8], strict=True))
        for line in self.lines.values():
            try:
                self.segments[line[:3]] = hl7apy_segment(
                    line, version=self.version, encoding_chars=self.encoding, validation_level=2)
            except HL7apyException as exc:
                self.problems.append(f"hl7apy cannot parse segment {line[:3]} "
                                     f"({type(exc).__name__}); not compared")

    def fields(self, seg: str, number: int) -> list[Element]:
        """The repetitions of SEG-n (none when the segment or the field is absent)."""
        segment = self.segments.get(seg)
        if segment is None:
            return []
        found = [f for f in segment.children if f.name == f"{seg}_{number}"]
        if found or all(f.name for f in segment.children) or self.version == FALLBACK_VERSION:
            return found
        # Not segment.to_er7(): hl7apy writes unnamed fields out of place.
        older = hl7apy_segment(self.lines[seg], version=FALLBACK_VERSION, validation_level=2,
                               encoding_chars=self.encoding or None)
        return [f for f in older.children if f.name == f"{seg}_{number}"]

    def get(self, ref: str, repetition: int = 0) -> str:
        """The value at ``SEG-n[.c[.s]]`` as ingest reads it (see the module docstring)."""
        seg, number, comp, sub = _parse_ref(ref)
        reps = self.fields(seg, number)
        if repetition >= len(reps):
            return ""
        component = _child(reps[repetition], comp or 1)
        if component is not None and sub:
            component = _child(component, sub)
        value = component.to_er7() if component is not None else ""
        return "" if value == '""' else _unescape(value, self.encoding)


def _parse_ref(ref: str) -> tuple[str, int, int, int]:
    seg, number, comp, sub = _REF.match(ref).groups()  # type: ignore[union-attr]
    return seg, int(number), int(comp or 0), int(sub or 0)


def _child(element: Element, position: int) -> Element | None:
    """The component or subcomponent at ``position``: by its name (CX_4), else by its place.

    A primitive field has one unnumbered child (ST); a field hl7apy does not know (varies,
    withdrawn) has unnumbered children in order.
    """
    children = list(element.children)
    for child in children:
        match = _POSITION.search(child.name or "")
        if match and int(match.group(1)) == position:
            return child
    if any(_POSITION.search(c.name or "") for c in children):
        return None
    return children[position - 1] if position <= len(children) else None


def _unescape(value: str, encoding: dict[str, str]) -> str:
    esc = encoding.get("ESCAPE", "\\")
    if esc not in value:
        return value
    table = {"F": "FIELD", "S": "COMPONENT", "T": "SUBCOMPONENT", "R": "REPETITION"}
    for code, name in table.items():
        value = value.replace(f"{esc}{code}{esc}", encoding.get(name, ""))
    return value.replace(f"{esc}E{esc}", esc)


@cache
def _refs() -> tuple[str, ...]:
    return mapped_refs()


@cache
def _oracle(raw: bytes) -> Oracle:
    """hl7apy's reading, once per message (it takes 30-110 ms a message)."""
    return Oracle(raw.decode("utf-8", "replace"))  # every file here is UTF-8; ours decodes itself


def differences(name: str, ours: V2Message, theirs: Oracle) -> list[str]:
    """Each (field, repetition) where the two disagree and no allow-list entry says why."""
    file = name.split("#")[0]
    found = []
    for ref in _refs():
        if (file, ref) not in ALLOWED and ours.get(ref) != theirs.get(ref):
            found.append(f"{ref}: ours {ours.get(ref)!r}, hl7apy {theirs.get(ref)!r}")
    for ref in IDENTIFIERS:
        count = max(ours.repetitions(ref.split(".")[0]), len(theirs.fields(*_parse_ref(ref)[:2])))
        for rep in range(count):
            if (file, ref) not in ALLOWED and ours.get(ref, rep) != theirs.get(ref, rep):
                found.append(f"{ref}~{rep + 1}: ours {ours.get(ref, rep)!r}, "
                             f"hl7apy {theirs.get(ref, rep)!r}")
    return found


MESSAGES = _messages()


@pytest.mark.parametrize(("name", "raw"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_every_mapped_field_matches_hl7apy(name: str, raw: bytes, note: Callable[[str], None]) -> None:
    try:
        ours = parse_message(raw)
    except MessageError as exc:
        # python-hl7's sample_bad_* files: segments before any MSH. hl7apy must refuse them too.
        with pytest.raises(HL7apyException):
            hl7apy_message(raw.decode("utf-8", "replace"), find_groups=False, validation_level=2)
        note(f"not a message for either parser: {exc}")
        return
    theirs = _oracle(raw)
    for problem in theirs.problems:
        note(problem)
    assert differences(name, ours, theirs) == []


def test_the_oracle_covers_every_file_and_every_mapped_field() -> None:
    names = {name for name, _ in v2_files()}
    assert "fixtures/scenarios/24-hl7v2-feed/feed.hl7" in names
    assert sum(n.startswith("realdata/hl7v2/") for n in names) >= 100
    refs = mapped_refs()
    for expected in ("SCH-2.1", "SCH-11.4", "PV1-36.1", "ZU3-3.1", "AIP-3.6", "PV1-9.1", "MSH-10"):
        assert expected in refs


def test_hl7apy_reads_a_value_for_every_mapped_field_in_some_message() -> None:
    """So no field is compared only as empty against empty."""
    unread = set(_refs())
    for _, raw in MESSAGES:
        if raw.startswith(b"MSH"):
            oracle = _oracle(raw)
            unread -= {ref for ref in unread if oracle.get(ref)}
    assert unread == set()


def test_allow_list_names_only_files_and_fields_that_exist() -> None:
    names = {name for name, _ in v2_files()}
    for (file, ref), reason in ALLOWED.items():
        assert file in names, file
        assert ref in _refs() + IDENTIFIERS, ref
        assert reason


def test_the_oracle_can_fail() -> None:
    theirs = Oracle("MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|2.5\rSCH|A\\T\\1|B\r")
    assert theirs.get("SCH-1.1") == "A&1"  # the escape table applied
    ours = parse_message(b"MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|2.5\rSCH|A\\T\\1|C\r")
    assert differences("planted#1", ours, theirs) == ["SCH-2.1: ours 'C', hl7apy 'B'"]


def test_a_message_hl7apy_refuses_is_compared_segment_by_segment() -> None:
    text = "MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|9.9\rSCH|S-1|F-1\r"  # a version hl7apy does not know
    theirs = Oracle(text)
    assert theirs.problems == ["hl7apy cannot parse the message (UnsupportedVersion); "
                               "compared segment by segment"]
    assert theirs.get("SCH-1.1") == "S-1"
    assert theirs.get("MSH-10") == "9"
