"""ACKs that conform to each sender's own HL7 version, read by hl7apy (strict) and python-hl7.

Every message of every ``.hl7`` file in fixtures/, shared/realdata/hl7v2 and the fuzz corpus is
read the way the MLLP inbox reads it (ingest/records.py): AA for what is accepted, AE with the
rejection's code and location for what is refused, and an AR (store unavailable) simulated for
every message with a header. Each ACK must:

* pass hl7apy's strict parse *and* validation in the sender's version (the nearest hl7apy models
  when it has not that one: see ``hl7apy_version``). hl7apy finds a message's structure from
  MSH-9.3, which v2.3 does not have (MSH-9 is type^trigger there), so v2.3 ACKs are read with the
  ACK structure named, as ``hl7apy.parser.parse_message`` does once it knows it;
* read in python-hl7 with MSH-3..6 swapped whole, MSH-11/MSH-12 echoed, MSA-2 = MSH-10, and an
  MSH-10 of at most 20 characters (the v2.1-v2.5.1 length);
* for AE/AR, carry an ERR of its version: ERR-1 (ELD) up to v2.4; ERR-2 (ERL), ERR-3 (table 0357),
  ERR-4 ``E`` and ERR-8 from v2.5.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message as hl7apy_parse
from hl7apy.parser import parse_segments

from fhir_engagement.config import Settings
from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.ack import CONDITIONS, _check, build_ack, hl7apy_version
from fhir_engagement.ingest.records import Kind, RawItem, Readers
from fhir_engagement.ingest.v2parse import V2Message, parse_message, split_messages
from fhir_engagement.live.v2_inbox import UNAVAILABLE, V2Inbox
from fhir_engagement.pipeline import Engine, Pipeline, load_engine
from fhir_engagement.store import SqliteStore
from tests.conftest import FIXTURES, MAPPINGS, REALDATA
from tests.hl7v2.messages import nhs_number, siu

FUZZ_CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
MAX_CONTROL_ID = 20  # MSH-10 (ST) in v2.1-v2.5.1; v2.6+ allow 199
STRICT = VALIDATION_LEVEL.STRICT


def _files() -> list[tuple[str, Path]]:
    found = [(f"fixtures/{p.relative_to(FIXTURES)}", p) for p in sorted(FIXTURES.rglob("*.hl7"))]
    found += [(f"realdata/{p.relative_to(REALDATA)}", p)
              for p in sorted((REALDATA / "hl7v2").rglob("*.hl7"))]
    found += [(f"fuzz-corpus/{p.name}", p) for p in sorted(FUZZ_CORPUS.glob("v2-*.hl7"))]
    return found


def _messages() -> list[tuple[str, bytes]]:
    return [(f"{name}#{n}", raw) for name, path in _files()
            for n, raw in enumerate(split_messages(path.read_bytes()), 1)]


MESSAGES = _messages()


@cache
def _readers() -> Readers:
    return load_engine(Settings(mappings_dir=MAPPINGS)).records


def _answer(raw: bytes) -> tuple[V2Message | None, bytes, str, int | None]:
    """The inbox's answer to one message: (header, ACK, the reason refused, its table 0357 code)."""
    read = _readers().read(RawItem(Kind.V2, raw, "test"))
    if not read.rejected:
        return read.message, build_ack(read.message, "AA"), "", None
    error = read.rejected[0]
    assert isinstance(error, MessageError)  # v2 input is refused only as a MessageError
    return read.message, build_ack(read.message, "AE", error.reason, read.location, error.code), \
        error.reason, error.code


def strict_hl7apy(ack: bytes) -> Message:
    """hl7apy's strict parse and validation of one ACK in its MSH-12 version (or the nearest)."""
    text = ack.decode("utf-8")
    version = text.split("\r", 1)[0].split(text[3])[11].split(text[4])[0]
    nearest = hl7apy_version(version)
    if nearest == version and text.split("\r", 1)[0].split(text[3])[8].count(text[4]) == 2:
        parsed = hl7apy_parse(text, validation_level=STRICT)
    else:  # no MSH-9.3 (v2.3) or a version hl7apy lacks: name the structure and the version
        chars = {"FIELD": text[3], "COMPONENT": text[4], "REPETITION": text[5], "ESCAPE": text[6],
                 "SUBCOMPONENT": text[7], "SEGMENT": "\r"}
        parsed = Message("ACK", version=nearest, validation_level=STRICT, encoding_chars=chars)
        parsed.children = parse_segments(text, nearest, chars, STRICT, parsed.reference,
                                         find_groups=True)
    assert parsed.name == "ACK"
    assert parsed.version == nearest
    parsed.validate()
    return parsed


def _ours_python_hl7(ack: bytes) -> hl7.Message:
    return hl7.parse(ack.decode("utf-8"))


def _original_python_hl7(message: V2Message) -> hl7.Message:
    return hl7.parse(message.text.replace("\r\n", "\r").replace("\n", "\r"))


def _check_header(message: V2Message, ack: hl7.Message) -> None:
    original = _original_python_hl7(message).segment("MSH")
    msh = ack.segment("MSH")
    # Sending application/facility are the original's receiving ones, whole, and the other way round.
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == [str(original[n]) for n in (5, 6, 3, 4)]
    assert str(msh[11]) == (str(original[11]) or "P")
    assert str(msh[12]) == (str(original[12]) or "2.5")
    assert 0 < len(str(msh[10])) <= MAX_CONTROL_ID
    assert str(ack.segment("MSA")[2]) == str(original[10])


def _check_err(ack: hl7.Message, version: str, code: int, reason: str) -> None:
    err = ack.segment("ERR")
    if tuple(int(p) for p in version.split(".")) < (2, 5):
        assert ack.extract_field("ERR", 1, 1, 1, 4) == str(code)  # ELD-4: a CE, code&text&system
        assert ack.extract_field("ERR", 1, 1, 1, 4, 3) == "HL70357"
        return
    assert not str(err[1])
    assert str(err(3)[0][0]) == str(code)
    assert str(err(3)[0][2]) == "HL70357"
    assert str(err[4]) == "E"
    assert ack.unescape(str(err[8])) == reason[:80].replace("\r", " ").replace("\n", " ")


@pytest.mark.parametrize(("name", "raw"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_every_ack_conforms_in_its_version(name: str, raw: bytes) -> None:
    message, ack, reason, code = _answer(raw)
    if message is None:  # no usable MSH: no version, sender or control id to echo
        _check_headerless(ack, code, reason)
        return
    version = message.get("MSH-12.1")
    strict_hl7apy(ack)
    answer = _ours_python_hl7(ack)
    _check_header(message, answer)
    assert str(answer.segment("MSA")[1]) == ("AA" if code is None else "AE")
    if code is not None:
        _check_err(answer, version, code, reason)
    refused = build_ack(message, "AR", UNAVAILABLE)  # what a store outage answers
    strict_hl7apy(refused)
    _check_header(message, _ours_python_hl7(refused))
    _check_err(_ours_python_hl7(refused), version, 207, UNAVAILABLE)


def _check_headerless(ack: bytes, code: int | None, reason: str) -> None:
    """An ACK to bytes with no usable MSH (none, or separators that cannot be split on): v2.5, AE,
    100 or 102. MSA-2 (required) must stay empty: there is no control id to echo, and that is the
    one thing hl7apy's validation finds missing."""
    assert code in (100, 102)
    with pytest.raises(ValidationError, match=r"MSA\.MSA_2"):
        strict_hl7apy(ack)
    answer = _ours_python_hl7(ack)
    assert str(answer.segment("MSA")[1]) == "AE"
    _check_err(answer, "2.5", code, reason)


def test_the_corpus_holds_the_versions_nhs_feeds_send_and_refusals_of_each_kind() -> None:
    """The corpus test above is only worth what it covers: v2.3/2.4 and v2.5.1 senders, refusals."""
    versions, codes = set(), set()
    for _, raw in MESSAGES:
        message, _, _, code = _answer(raw)
        versions.add(message.get("MSH-12.1") if message else None)
        codes.add(code)
    assert {"2.3", "2.4", "2.5", "2.5.1"} <= versions
    assert {None, 100, 101, 102} <= codes


HD_MESSAGE = ("MSH|^~\\&|PAS^1.2.3^ISO|RXQ^2.16.840.1.113883.3.1^ISO|FE^4.5.6^ISO|HSCP^7.8^ISO|"
              "20260304120000||SIU^S26^SIU_S12|ctl-1|T|{version}\r"
              "SCH|A1-P|A1||||||||60|MIN|^^60^20260302100000^20260302100000\r")


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1"])
@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_hd_components_are_swapped_whole_and_t_is_echoed(version: str, code: str) -> None:
    message = parse_message(HD_MESSAGE.format(version=version).encode())
    ack = build_ack(message, code, "" if code == "AA" else "no PID segment", "PID", 100)
    fields = ack.decode().split("\r", 1)[0].split("|")
    assert fields[2:6] == ["FE^4.5.6^ISO", "HSCP^7.8^ISO", "PAS^1.2.3^ISO",
                           "RXQ^2.16.840.1.113883.3.1^ISO"]
    assert fields[10:12] == ["T", version]
    assert fields[8] == ("ACK^S26" if version == "2.3" else "ACK^S26^ACK")
    strict_hl7apy(ack)
    _check_header(message, _ours_python_hl7(ack))


@pytest.mark.parametrize(("version", "err"), [
    ("2.3", "ERR|SCH^1^11^102&Data type error&HL70357"),
    ("2.4", "ERR|SCH^1^11^102&Data type error&HL70357"),
    ("2.5.1", "ERR||SCH^1^11^1^4|102^Data type error^HL70357|E||||bad \\T\\ time"),
    ("2.8", "ERR||SCH^1^11^1^4|102^Data type error^HL70357|E||||bad \\T\\ time"),
])
def test_err_is_written_in_the_senders_version(version: str, err: str) -> None:
    message = parse_message(HD_MESSAGE.format(version=version).encode())
    ack = build_ack(message, "AE", "bad & time", "SCH-11.4", 102).decode().split("\r")
    assert ack[2] == err
    # MSA-3 (the reason) exists up to v2.6; v2.7 withdrew it, leaving ERR-8.
    assert ack[1] == ("MSA|AE|ctl-1" if version == "2.8" else "MSA|AE|ctl-1|bad \\T\\ time")


@pytest.mark.parametrize(("raw", "code", "location"), [
    (siu("S26", "c1", "A1", "20260302100000", nhs_number(1)).replace(b"\rPID", b"\rZZZ"), 100, "PID"),
    (siu("S26", "c2", "", "20260302100000", nhs_number(2)).replace(b"SCH|-P|", b"SCH||"), 101,
     "SCH-2.1/SCH-1.1"),
    (siu("S26", "c3", "A3", "20260302100000", nhs_number(3)).replace(b"TQ1|||||||20260302",
                                                                     b"TQ1|||||||20261332"),
     102, "TQ1-7.1"),
    (siu("S26", "c4", "A4", "20260302100000", "").replace(b"~L", b"~"), 101, "PID-3"),
    (b"MSH|^~\\&|PAS|RXQ|FE|HSCP|20260304||SIU^S26|\rSCH|1\r", 101, "MSH-10"),
    (b"MSH|^~\\&|PAS|RXQ|FE|HSCP|20260304|||c6|P|2.4\rSCH|1\r", 101, "MSH-9"),
    (b"EVN|A04|20060705000000\r", 100, "MSH"),
])
def test_each_refusal_carries_the_table_0357_code_for_what_was_wrong(
    raw: bytes, code: int, location: str
) -> None:
    read = _readers().read(RawItem(Kind.V2, raw, "test"))
    error = read.rejected[0]
    assert isinstance(error, MessageError)
    assert (error.code, read.location) == (code, location)
    assert code in CONDITIONS


async def test_the_inbox_answers_with_the_code_and_ar_with_207(
    engine: Engine, store: SqliteStore
) -> None:
    inbox = V2Inbox(Pipeline(engine, store, store.start_run("acks")))
    no_pid = siu("S26", "n1", "A1", "20260302100000", nhs_number(9)).replace(b"\rPID", b"\rZZZ")
    ack, fresh = await inbox.accept(no_pid, "mllp")
    assert not fresh
    assert ack.split(b"\r")[2] == (b"ERR||PID^1|100^Segment sequence error^HL70357|E||||"
                                   b"no PID segment: the message names no patient")
    too_big = inbox.refuse_oversize(siu("S26", "n2", "A2", "20260302100000", nhs_number(10)), 10)
    assert too_big.split(b"\r")[2].startswith(b"ERR|||207^Application internal error^HL70357|E|")


def test_control_ids_are_unique_and_at_most_20_characters() -> None:
    message = parse_message(HD_MESSAGE.format(version="2.4").encode())
    ids = [build_ack(message, "AA").split(b"|", 10)[9] for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert max(len(i) for i in ids) <= MAX_CONTROL_ID


def test_the_runtime_hl7apy_check_reports_an_ack_its_version_does_not_allow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """v2.2 had no HD type: MSH-3..6 are one ST, so a v2.2 sender's HD components, echoed back,
    are a fault hl7apy finds (logged, the ACK still sent); a v2.4 sender's are not."""
    with caplog.at_level(logging.WARNING, logger="fhir_engagement.ingest.ack"):
        build_ack(parse_message(HD_MESSAGE.format(version="2.4").encode()), "AE", "x", "PID", 100)
        assert not caplog.records
        ack = build_ack(parse_message(HD_MESSAGE.format(version="2.2").encode()), "AE", "x", "PID")
    assert [r.getMessage() for r in caplog.records] == [
        "an AE/AR ACK fails hl7apy's strict v2.2 check: MaxChildLimitReached"]
    assert b"MSA|AE|ctl-1|x" in ack


@pytest.mark.parametrize(("version", "nearest"), [
    ("2.3", "2.3"), ("2.3.1", "2.3.1"), ("2.5.2", "2.5.1"), ("2.7.1", "2.7"), ("2.9", "2.8.2"),
    ("2.0", "2.1"), ("not a version", "2.5"),
])
def test_a_version_hl7apy_lacks_is_checked_in_the_nearest_it_has(version: str, nearest: str) -> None:
    assert hl7apy_version(version) == nearest


def test_an_outage_answering_every_message_ar_checks_the_ack_shape_once() -> None:
    """hl7apy takes 5-15 ms a check: per message, an outage's ARs would stall the event loop."""
    _check.cache_clear()
    for i in range(50):  # other control ids and times, the same sender: one shape
        raw = HD_MESSAGE.format(version="2.4").replace("ctl-1", f"ctl-{i}").replace("1200", f"12{i:02d}")
        build_ack(parse_message(raw.encode()), "AR", UNAVAILABLE)
    assert (_check.cache_info().misses, _check.cache_info().hits) == (1, 49)
