"""The fuzz properties and input generators, shared by tests/fuzz/ and bench/fuzz_bench.py.

A property runs one parser on one input and returns how it ended ("records", "ignored" or the
InputError subclass's name). Anything else it lets escape is a crash; the caller times it.
Records that come out must also be safe for later stages: times and birth dates inside the
range dates are read in, NHS numbers of ASCII digits.

Generators take a ``random.Random``: the tests pass Hypothesis's (``st.randoms()``, so failures
shrink and replay), the benchmark a seeded one (so 100,000 cases are cheap and repeatable).
Seeds are realistic documents: the scenario fixtures and ../shared/realdata (read, never copied).
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhir_engagement.config import Settings
from fhir_engagement.errors import FramingError, InputError
from fhir_engagement.ingest.ack import build_ack
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.ingest.fhirtime import MAX_YEAR, MIN_YEAR, latest_date
from fhir_engagement.ingest.hl7v2 import read_v2
from fhir_engagement.ingest.mllp import END, START, next_frame
from fhir_engagement.ingest.notifications import MAX_EVENT_NUMBER, classify
from fhir_engagement.ingest.v2map import V2Mappings
from fhir_engagement.ingest.v2parse import parse_message, split_messages
from fhir_engagement.model import Event, PatientFacts
from fhir_engagement.pipeline import load_engine
from tests.conftest import FIXTURES, MAPPINGS, REALDATA

MAX_FRAME = 4096  # small, so generated streams cross it often

# Values real exports and hostile testers put where a date, a number or an id goes.
HOSTILE_TEXT = [
    "0001-01-01", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31",
    "00010101", "99991231235959-1200", "1899-12-31", "2201-01-01", "2026-02-30", "2026-13-01",
    "²²²²-01-01", "٢٠٢٦-٠١-٠١", "999²001234", "９９９０００１２３４", "9990001234", "", " ", '""',
    "-1", "18446744073709551616", "9223372036854775808", "1e308", "NaN", "1.5", "0x10",
    "\\F\\\\S\\\\R\\", "\\X0D0A\\", "\\", "^~\\&", "#x", "urn:uuid:", "Patient?identifier=|",
    "https://x/fhir/Appointment/1/_history/2", "\x00\x0b\x1c\r\n", "\ud800",
]
HOSTILE_VALUES: list[Any] = [
    *HOSTILE_TEXT, None, True, False, 0, -1, 2**63, -(2**63) - 1, 2**64, 1.5, 1e308, -0.0, [], {},
    [None], {"": None}, {"reference": 5}, {"coding": {}}, {"concept": {"concept": {}}},
]


# -- seeds ----------------------------------------------------------------------------------------
@cache
def fhir_seeds() -> tuple[dict[str, Any], ...]:
    """Realistic FHIR documents: scenario Bundles and NDJSON lines, HL7 and UK Core examples."""
    paths = sorted(FIXTURES.rglob("*.json"))
    for folder, kinds in ((REALDATA / "fhir-r4-core-examples", ("Appointment", "Encounter",
                                                                  "Patient", "Bundle", "Flag")),
                          (REALDATA / "uk-core" / "examples-json", ("UKCore-Appointment",
                                                                     "UKCore-Encounter",
                                                                     "UKCore-Patient",
                                                                     "UKCore-Bundle"))):
        paths += sorted(p for p in folder.glob("*.json") if p.name.startswith(kinds)
                        and p.stat().st_size < 60_000)
    docs = [orjson.loads(p.read_bytes().removeprefix(b"\xef\xbb\xbf")) for p in paths]
    for path in sorted(FIXTURES.rglob("*.ndjson")):
        docs += [orjson.loads(line) for line in path.read_bytes().splitlines()[:20] if line.strip()]
    return tuple(d for d in docs if isinstance(d, dict))


@cache
def v2_seeds() -> tuple[bytes, ...]:
    """Real HL7 v2 messages: the v2 scenario feed and ../shared/realdata/hl7v2."""
    paths = sorted(FIXTURES.rglob("*.hl7")) + sorted((REALDATA / "hl7v2").rglob("*.hl7"))
    return tuple(m for p in paths for m in split_messages(p.read_bytes())[:5])


@cache
def notification_seeds() -> tuple[dict[str, Any], ...]:
    """Real topic notifications (R4 backport, R4B, R5), handshakes and heartbeats."""
    paths = sorted((REALDATA / "subscriptions").rglob("*.json"))
    docs = [orjson.loads(p.read_bytes().removeprefix(b"\xef\xbb\xbf")) for p in paths]
    return tuple(d for d in docs if isinstance(d, dict))


@cache
def reader() -> Reader:
    return load_engine(Settings(mappings_dir=MAPPINGS)).reader


@cache
def v2_mappings() -> V2Mappings:
    return load_engine(Settings(mappings_dir=MAPPINGS)).v2


# -- generators -----------------------------------------------------------------------------------
def random_json(rng: random.Random, depth: int = 4) -> Any:
    """Any JSON-ish value: what a hostile client can send once the bytes parse."""
    roll = rng.random()
    if depth <= 0 or roll < 0.45:
        return _hostile(rng) if rng.random() < 0.5 else _scalar(rng)
    if roll < 0.7:
        return [random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    keys = ["resourceType", "id", "entry", "resource", "coding", "code", "system", "status",
            "start", "subject", "reference", "participant", "actor", "concept", "extension"]
    return {rng.choice(keys) if rng.random() < 0.7 else _text(rng): random_json(rng, depth - 1)
            for _ in range(rng.randrange(5))}


def _hostile(rng: random.Random) -> Any:
    """A copy: the list's own dicts and lists must never be mutated into (or into themselves)."""
    return copy.deepcopy(rng.choice(HOSTILE_VALUES))


def _scalar(rng: random.Random) -> Any:
    return rng.choice([None, rng.random() < 0.5, rng.randrange(-(2**64), 2**64),
                       rng.uniform(-1e12, 1e12), _text(rng)])


def _text(rng: random.Random) -> str:
    alphabet = "aZ09 -:T+.|^~\\&²٣\x00\r\n\x0b\x1c/#?=é😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def mutate_json(rng: random.Random, doc: Any, rounds: int = 3) -> Any:
    """A copy of ``doc`` with a few nodes replaced, removed, duplicated or nested deep."""
    doc = copy.deepcopy(doc)
    grown = False  # one repeat or deep nesting a document: several multiply its size
    for _ in range(rng.randrange(1, rounds + 1)):
        slots = _slots(doc)
        if not slots:
            return random_json(rng)
        parent, key = rng.choice(slots)
        grown = _mutate_slot(rng, parent, key, grown) or grown
    return doc


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in ``doc``, found without recursion."""
    out: list[tuple[Any, Any]] = []
    stack, seen = [doc], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # a repeated node is one place to mutate, not fifty
            continue
        seen.add(id(node))
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(pairs):
            out.append((node, key))
            if isinstance(child, dict | list):
                stack.append(child)
    return out


def _mutate_slot(rng: random.Random, parent: Any, key: Any, grown: bool) -> bool:
    """Change one place; True when the change grew the document (a repeat or deep nesting)."""
    roll = rng.random()
    if grown and 0.65 <= roll < 0.85:
        roll = rng.random() * 0.65
    if roll < 0.35:
        parent[key] = _hostile(rng)
    elif roll < 0.55:
        parent[key] = random_json(rng, 3)
    elif roll < 0.65 and isinstance(parent, dict):
        del parent[key]
    elif roll < 0.75:
        parent[key] = [parent[key]] * rng.randrange(2, 50)  # shared, not copied: reading never writes
        return True
    elif roll < 0.85:
        parent[key] = _deep(rng, parent[key])
        return True
    else:
        value = parent[key]
        parent[key] = value + _text(rng) if isinstance(value, str) else _scalar(rng)
    return False


def _deep(rng: random.Random, value: Any) -> Any:
    """``value`` wrapped hundreds deep, in the shapes the reader walks (concept, Bundle, list)."""
    for _ in range(rng.choice([50, 120, 500, 990])):
        value = rng.choice([{"concept": value}, [value],
                            {"resourceType": "Bundle", "entry": [{"resource": value}]}])
    return value


def mutate_v2(rng: random.Random, raw: bytes) -> bytes:
    """A real message with bytes, fields or segments changed the ways feeds and attackers do."""
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        pos = rng.randrange(len(data) + 1)
        if roll < 0.2:
            data[pos:pos] = random_bytes(rng, 8)
        elif roll < 0.35:
            del data[pos:pos + rng.randrange(1, 40)]
        elif roll < 0.55:
            data[pos:pos] = rng.choice(HOSTILE_TEXT).encode("utf-8", "surrogatepass")
        elif roll < 0.7:
            data[pos:pos] = bytes([rng.choice(b"|^~\\&\r\n")]) * rng.randrange(1, 300)
        elif roll < 0.85:
            data = bytearray(_replace_field(rng, bytes(data)))
        else:
            segments = bytes(data).split(b"\r")
            segments.insert(rng.randrange(len(segments) + 1), rng.choice(segments))
            data = bytearray(b"\r".join(segments))
    return bytes(data)


def _replace_field(rng: random.Random, raw: bytes) -> bytes:
    """One field of one segment set to a hostile value (a timestamp, NHS number, repetitions)."""
    segments = raw.split(b"\r")
    i = rng.randrange(len(segments))
    fields = segments[i].split(b"|")
    j = rng.randrange(1, len(fields)) if len(fields) > 1 else 0
    value = rng.choice(HOSTILE_TEXT).encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:
        value = b"~".join([value or b"1^^^NHS^NH"] * rng.randrange(2, 2000))
    fields[j] = value
    segments[i] = b"|".join(fields)
    return b"\r".join(segments)


def random_bytes(rng: random.Random, most: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, most)))


def json_body(doc: Any) -> bytes:
    """A body as a client might send it: big integers, NaN and lone surrogates included."""
    try:
        return json.dumps(doc).encode()
    except RecursionError:  # deeper than json can write: send the nesting as text
        return b'{"resourceType":"Bundle","entry":' + b"[" * 5000 + b"]" * 5000 + b"}"


def mllp_stream(rng: random.Random) -> bytes:
    """Frames, junk, stray start/end bytes, frames over the limit and unterminated ones."""
    parts: list[bytes] = []
    for _ in range(rng.randrange(1, 8)):
        size = rng.choice([0, 1, 10, MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, 3 * MAX_FRAME])
        payload = bytearray((b"MSH|^~\\&abc\r" * (size // 12 + 1))[:size])
        for _ in range(rng.randrange(3) if payload else 0):  # a stray start or end byte inside
            payload[rng.randrange(len(payload))] = rng.choice(b"\x0b\x1c")
        roll = rng.random()
        parts.append(rng.choice([b"", b"junk", START, END, b"\x1c"]) if roll < 0.3 else b"")
        parts.append(START + bytes(payload) + (END if roll < 0.9 else b""))
    return b"".join(parts)


# -- properties -----------------------------------------------------------------------------------
def check_reader(doc: Any) -> str:
    """Reader.read yields records or RecordErrors; what it yields is safe downstream."""
    outcome = "ignored"
    for item in reader().read(doc, "fuzz"):
        if isinstance(item, InputError):
            outcome = type(item).__name__
            continue
        _check_record(item)
        outcome = "records"
    return outcome


def check_v2(raw: bytes) -> str:
    """parse_message + read_v2 (+ the ACK) give records or a MessageError."""
    try:
        message = parse_message(raw)
        build_ack(message, "AE", "fuzz", "PID-3")
        records = read_v2(message, v2_mappings(), "fuzz")
    except InputError as error:
        build_ack(None, "AR", error.reason, error.where)
        return type(error).__name__
    for record in records:
        _check_record(record)
    return "records" if records else "ignored"


def check_split(data: bytes) -> str:
    """Arbitrary bytes as a v2 file: split, then each message through ``check_v2``."""
    outcomes = {check_v2(m) for m in split_messages(data)}
    return ",".join(sorted(outcomes)) or "ignored"


def check_classify(body: bytes) -> str:
    """classify gives a Notice with sane event numbers, or a NotificationError."""
    try:
        notice = classify(body)
    except InputError as error:
        return type(error).__name__
    for number in (*notice.event_numbers, notice.events_since_start or 0):
        if not 0 <= number <= MAX_EVENT_NUMBER:
            raise AssertionError(f"event number {number} let through")
    return notice.kind


def check_mllp(stream: bytes) -> str:
    """Frames off a byte stream: each at most MAX_FRAME, oversize ones a FramingError."""
    outcomes = set()
    for item in asyncio.run(_frames(stream)):
        if isinstance(item, FramingError):
            if len(item.raw) > 4096:
                raise AssertionError("an oversize frame kept more than its head")
            outcomes.add("FramingError")
        elif len(item) > MAX_FRAME:
            raise AssertionError(f"a {len(item)}-byte frame passed a {MAX_FRAME} limit")
        else:
            outcomes.add("frame")
    return ",".join(sorted(outcomes)) or "none"


def frames_of(stream: bytes) -> list[bytes]:
    """The payloads ``next_frame`` reads off a stream (oversize frames left out)."""
    return [f for f in asyncio.run(_frames(stream)) if isinstance(f, bytes)]


async def _frames(stream: bytes) -> list[bytes | FramingError]:
    reader = asyncio.StreamReader(limit=MAX_FRAME + len(END))
    reader.feed_data(stream)
    reader.feed_eof()
    out: list[bytes | FramingError] = []
    while True:
        try:
            out.append(await next_frame(reader, MAX_FRAME))
        except asyncio.IncompleteReadError:
            return out  # the end of the stream (inside a frame or not)
        except FramingError as error:
            out.append(error)


def _check_record(record: Any) -> None:
    if isinstance(record, Event) and record.occurred is not None and not (
            MIN_YEAR - 1 <= record.occurred.year <= MAX_YEAR):
        raise AssertionError(f"an event in year {record.occurred.year} let through")
    if isinstance(record, PatientFacts):
        if record.nhs_number is not None and not (record.nhs_number.isascii()
                                                  and record.nhs_number.isdigit()):
            raise AssertionError("a non-ASCII NHS number let through")
        if record.birth_date:
            latest_date(record.birth_date)  # must not raise: the pipeline calls it


PROPERTIES: dict[str, tuple[Callable[[random.Random], Any], Callable[[Any], str]]] = {
    "fhir-json": (random_json, check_reader),
    "fhir-mutated": (lambda rng: mutate_json(rng, rng.choice(fhir_seeds())), check_reader),
    "v2-mutated": (lambda rng: mutate_v2(rng, rng.choice(v2_seeds())), check_v2),
    "v2-bytes": (lambda rng: b"MSH" * rng.randrange(2) + random_bytes(rng, 300), check_split),
    "notifications": (lambda rng: json_body(mutate_json(rng, rng.choice(notification_seeds()))),
                      check_classify),
    "mllp": (mllp_stream, check_mllp),
}


def corpus_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")
