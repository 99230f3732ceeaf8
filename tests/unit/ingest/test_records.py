"""The one way in: files -> raw items -> records or named rejections, never an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_engagement.errors import MessageError, RecordError, UnreadableError
from fhir_engagement.ingest.fhir import Reader
from fhir_engagement.ingest.files import Skipped, iter_items
from fhir_engagement.ingest.records import Kind, RawItem, Readers
from fhir_engagement.ingest.sources import Sources
from fhir_engagement.ingest.v2map import load_v2_mappings
from fhir_engagement.model import Event, PatientFacts
from tests.conftest import MAPPINGS


@pytest.fixture(scope="module")
def readers() -> Readers:
    return Readers(Reader({}, frozenset()), load_v2_mappings(MAPPINGS / "hl7v2"))


def _appointment(rid: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": rid, "status": "noshow",
            "start": "2026-03-04T10:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}


def test_a_utf8_bom_is_skipped(tmp_path: Path, readers: Readers) -> None:
    path = tmp_path / "with-bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(_appointment("a1")))
    (item,) = iter_items([path])
    assert isinstance(item, RawItem)
    assert item.where == str(path)
    (event,) = readers.read(item).records
    assert isinstance(event, Event)
    assert event.key == "Appointment/a1"


def test_a_utf8_bom_on_ndjson_is_skipped_and_lines_are_numbered(
    tmp_path: Path, readers: Readers
) -> None:
    path = tmp_path / "export.ndjson"
    lines = [orjson.dumps(_appointment(f"a{i}")) for i in (1, 2)]
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\n\n" + lines[1] + b"\n")
    items = [i for i in iter_items([path]) if isinstance(i, RawItem)]
    assert [i.where for i in items] == [f"{path}:1", f"{path}:3"]
    assert [readers.read(i).records[0].key for i in items] == [  # type: ignore[union-attr]
        "Appointment/a1", "Appointment/a2"]


def test_an_ndjson_line_that_is_the_resource_is_kept_as_read_and_parsed_on_use(
    tmp_path: Path, readers: Readers
) -> None:
    # The event carries the line's own bytes (nothing written again), BOM and all stripped,
    # and gives back the resource the line holds.
    path = tmp_path / "export.ndjson"
    line = orjson.dumps(_appointment("a1"), option=orjson.OPT_INDENT_2).replace(b"\n", b" ")
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\n")
    (item,) = [i for i in iter_items([path]) if isinstance(i, RawItem)]
    (event,) = readers.read(item).records
    assert isinstance(event, Event)
    assert event.raw == line
    assert event.resource() == _appointment("a1")


def test_a_bundle_entry_is_written_once_as_its_resource(
    tmp_path: Path, readers: Readers
) -> None:
    # Entries of a Bundle are not the item: each event's bytes are its own resource only.
    first, second = _appointment("a1"), _appointment("a2")
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": first}, {"resource": second}]}
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    (item,) = iter_items([path])
    assert isinstance(item, RawItem)
    events = readers.read(item).records
    assert [e.raw for e in events] == [orjson.dumps(first), orjson.dumps(second)]  # type: ignore[union-attr]
    assert [e.resource() for e in events] == [first, second]  # type: ignore[union-attr]
    pushed = readers.read_document(_appointment("a3"), "push", b"the body as sent")
    (event,) = pushed.records
    assert event.raw == orjson.dumps(_appointment("a3"))  # type: ignore[union-attr]


def test_invalid_json_is_a_rejection_naming_file_line_and_column(
    tmp_path: Path, readers: Readers
) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b'{\n  "resourceType": "Appointment",\n  "id": \n}\n')
    (item,) = iter_items([path])
    read = readers.read(item)  # type: ignore[arg-type]
    (error,) = read.rejected
    assert isinstance(error, RecordError)
    assert error.where == f"{path}:4:1"
    assert "not valid JSON" in error.reason
    assert error.raw.startswith(b"{")  # kept whole for the dead-letter store
    assert read.records == []


def test_a_bad_ndjson_line_names_its_line_and_the_rest_are_read(
    tmp_path: Path, readers: Readers
) -> None:
    path = tmp_path / "export.ndjson"
    path.write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n{"resourceType": \n'
                     b'{"resourceType": "Patient", "id": "p2"}\n')
    reads = [readers.read(i) for i in iter_items([path])]  # type: ignore[arg-type]
    assert [len(r.records) for r in reads] == [1, 0, 1]
    assert reads[1].rejected[0].where == f"{path}:2"
    assert all(isinstance(r.records[0], PatientFacts) for r in (reads[0], reads[2]))


def test_a_folder_skips_other_files_and_a_named_file_of_another_kind_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.md").write_text("not FHIR", encoding="utf-8")
    (tmp_path / "a.json").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "p1"}))
    folder = list(iter_items([tmp_path]))
    assert [type(d) for d in folder] == [RawItem, Skipped]
    (named,) = iter_items([tmp_path / "notes.md"])
    assert isinstance(named, RecordError)
    (missing,) = iter_items([tmp_path / "nope.json"])
    assert isinstance(missing, RecordError)
    assert missing.reason == "no such file or folder"


def test_a_v2_message_that_cannot_be_mapped_names_origin_and_field(readers: Readers) -> None:
    raw = b"MSH|^~\\&|PAS|RX1|ENG|ENG|20260304101500||SIU^S26|C1|P|2.4\r"
    read = readers.read(RawItem(Kind.V2, raw, "feed.hl7 message 3"))
    (error,) = read.rejected
    assert isinstance(error, MessageError)
    assert error.where == "feed.hl7 message 3 (PID)"
    assert read.location == "PID"  # for the ACK's ERR segment
    assert read.message is not None
    assert read.message.control_id == "C1"


def test_a_v2_message_of_a_type_nobody_maps_gives_nothing_and_no_rejection(
    readers: Readers,
) -> None:
    raw = b"MSH|^~\\&|PAS|RX1|ENG|ENG|20260304101500||ADT^A31|C2|P|2.4\rPID|1||X1\r"
    read = readers.read(RawItem(Kind.V2, raw, "mllp:2575"))
    assert (read.records, read.rejected) == ([], [])


class _Exploding:
    """A reader that fails in a way nobody foresaw."""

    sources = Sources()

    def read(self, document: Any, origin: str, namespace: str | None = None,
             data: bytes | None = None) -> Any:
        raise RecursionError("maximum recursion depth exceeded")


def test_an_unforeseen_reader_failure_is_a_named_rejection_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readers = Readers(_Exploding(), load_v2_mappings(MAPPINGS / "hl7v2"))  # type: ignore[arg-type]
    raw = orjson.dumps(_appointment("a1"))
    read = readers.read(RawItem(Kind.FHIR, raw, "http POST /notify"))
    (error,) = read.rejected
    assert isinstance(error, UnreadableError)
    assert "RecursionError" in error.reason
    assert error.raw == raw
    assert "Patient/p1" not in caplog.text  # only the exception's type is logged
    assert "RecursionError" in caplog.text
