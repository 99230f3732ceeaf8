"""The fast v2 parser (ingest/v2parse.py); test_oracle.py compares it with hl7apy field by field."""

from __future__ import annotations

import pytest

from fhir_engagement.errors import MessageError
from fhir_engagement.ingest.v2parse import parse_message, split_messages
from tests.conftest import REALDATA

V2_FILES = sorted(p for p in (REALDATA / "hl7v2").rglob("*.hl7") if "bad" not in p.name)


def test_files_with_lf_crlf_bom_and_batch_wrappers_split_into_messages() -> None:
    data = (b"\xef\xbb\xbfFHS|^~\\&|A\r\nBHS|^~\\&|A\r\nMSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.4\n"
            b"PID|1||X\r\nMSH|^~\\&|A|B|C|D|2026||ADT^A08^ADT_A01|2|P|2.4\rBTS|2\rFTS|1\r")
    messages = [parse_message(m) for m in split_messages(data)]
    assert [(m.message_type, m.control_id) for m in messages] == [("ADT^A08", "1"), ("ADT^A08", "2")]
    assert messages[0].get("PID-3") == "X"


def test_escapes_repetitions_components_and_explicit_null() -> None:
    raw = (b"MSH|^~\\&|A|B|C|D|2026||SIU^S26|9|P|2.5\r"
           b"PID|1||111^^^X^MR~9990001234^^^NHS^NH||Smith\\T\\Jones^Ann||\"\"|F\r")
    message = parse_message(raw)
    assert message.repetitions("PID-3") == 2
    assert message.get("PID-3.1", 1) == "9990001234"
    assert message.get("PID-3.5", 1) == "NH"
    assert message.get("PID-5.1") == "Smith&Jones"
    assert message.get("PID-7") == ""  # "" is the v2 explicit null, never a value


def test_latin1_message_is_decoded_not_rejected() -> None:
    raw = "MSH|^~\\&|A|B|C|D|2026||ADT^A08|7|P|2.4\rPID|1||1||Müller^Zoë\r".encode("latin-1")
    assert parse_message(raw).get("PID-5.2") == "Zoë"


@pytest.mark.parametrize(
    ("raw", "where"),
    [(b"EVN|A04|2026\r", "MSH"), (b"MSH|^~\\&|A|B|C|D|2026||||P|2.4\r", "MSH-9"),
     (b"MSH|^~\\&|A|B|C|D|2026||ADT^A04||P|2.4\r", "MSH-10")],
)
def test_unusable_messages_name_the_segment_or_field(raw: bytes, where: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_message(raw)
    assert caught.value.where == where


def test_every_realdata_file_is_read() -> None:
    assert len(V2_FILES) >= 60
    assert sum(len(split_messages(p.read_bytes())) for p in V2_FILES) >= len(V2_FILES)
