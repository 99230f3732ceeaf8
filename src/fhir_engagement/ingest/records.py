"""THE one way in: raw input + its kind + where it came from -> records, or named rejections.

Replay's files, the MLLP inbox, the FHIR push inbox and dead-letter retry all turn bytes into
records here, so a fix to how input is read is made once. Nothing escapes as an exception: a
record that cannot be read is a named ``InputError`` (where + why) for the caller to keep as a
dead letter, and an unexpected failure of a reader on one item (a bug, or input nobody foresaw)
becomes an ``UnreadableError`` too, so one bad item never stops the items after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from fhir_engagement.errors import InputError, MessageError, RecordError, UnreadableError
from fhir_engagement.ingest.fhir import Reader, Record
from fhir_engagement.ingest.hl7v2 import read_v2
from fhir_engagement.ingest.v2map import V2Mappings
from fhir_engagement.ingest.v2parse import V2Message, parse_message

__all__ = ["Kind", "RawItem", "Read", "Readers"]

_LOG = logging.getLogger(__name__)
_BOM = b"\xef\xbb\xbf"


class Kind(StrEnum):
    """What a raw item holds, as its entry point knows it."""

    FHIR = "fhir"  # one JSON resource or Bundle: a .json file, an NDJSON line, a pushed document
    V2 = "v2"  # one HL7 v2 message


@dataclass(frozen=True, slots=True)
class RawItem:
    """Bytes as they arrived, what kind they are, and where they came from (file:line, mllp:port)."""

    kind: Kind
    data: bytes
    origin: str
    line: int | None = None  # an NDJSON record's line in its file

    @property
    def where(self) -> str:
        return self.origin if self.line is None else f"{self.origin}:{self.line}"


@dataclass(slots=True)
class Read:
    """What one raw item gave: the records, and each rejection with where and why."""

    records: list[Record] = field(default_factory=list)
    rejected: list[InputError] = field(default_factory=list)
    message: V2Message | None = None  # a v2 item's parsed header, for its ACK
    location: str = ""  # the v2 segment/field a rejection names, for the ACK's ERR segment


@dataclass(frozen=True, slots=True)
class Readers:
    """The FHIR reader and the v2 mappings, loaded once at start-up, behind one ``read``."""

    fhir: Reader
    v2: V2Mappings

    def read(self, item: RawItem) -> Read:
        """Every record in one raw item; never raises for what the item holds."""
        if item.kind is Kind.V2:
            return self._v2(item)
        read = Read()
        with _guard(read, item.where, item.data):
            document = _json(item)
            # A resource that is the whole item keeps its bytes: they are never written again.
            data = item.data.removeprefix(_BOM)
            self._document(document, item.where, item.data, read, item.origin, data)
        return read

    def read_document(self, document: Any, origin: str, raw: bytes = b"") -> Read:
        """Records of JSON already parsed (a notification's document, a resource fetched)."""
        read = Read()
        with _guard(read, origin, raw):
            self._document(document, origin, raw, read, origin)
        return read

    def _document(self, document: Any, origin: str, raw: bytes, read: Read, place: str,
                  data: bytes | None = None) -> None:
        # The source configured for the file or folder (or --source), where the data names none.
        namespace = self.fhir.sources.for_file(place)
        for record in self.fhir.read(document, origin, namespace, data):
            if isinstance(record, InputError):
                read.rejected.append(_with_raw(record, raw))
            else:
                read.records.append(record)

    def _v2(self, item: RawItem) -> Read:
        read = Read()
        with _guard(read, item.where, item.data):
            try:
                read.message = parse_message(item.data)
                read.records = read_v2(read.message, self.v2, item.origin, self.fhir.sources)
            except MessageError as error:
                read.records, read.location = [], error.where
                read.rejected.append(
                    MessageError(f"{item.origin} ({error.where})", error.reason, item.data,
                                 code=error.code))
        return read


def _json(item: RawItem) -> Any:
    """Parse JSON, naming line:column of a fault (an NDJSON record is already one line)."""
    try:
        return orjson.loads(item.data.removeprefix(_BOM))
    except orjson.JSONDecodeError as exc:
        at = item.where if item.line is not None else f"{item.origin}:{exc.lineno}:{exc.colno}"
        raise RecordError(at, f"not valid JSON: {exc.msg}", item.data) from exc


def _with_raw(error: InputError, raw: bytes) -> InputError:
    if error.raw or not raw:
        return error
    error.raw = raw
    return error


@contextmanager
def _guard(read: Read, origin: str, raw: bytes) -> Iterator[None]:
    """The boundary: an input error is a rejection; any other failure is one too, never a crash.

    Only the exception's type is logged: its message may quote the input (a child's details).
    """
    try:
        yield
    except InputError as error:
        read.rejected.append(_with_raw(error, raw))
    except Exception as exc:  # the one place a reader's unforeseen failure is contained
        _LOG.error("a reader failed on one item from %s: %s", _channel(origin), type(exc).__name__)
        read.rejected.append(UnreadableError(origin, f"could not be read ({type(exc).__name__}); "
                                             "kept for a person to look at", raw))


def _channel(origin: str) -> str:
    """The entry an origin names, without file names or positions that could identify a child."""
    return origin.split(" ", 1)[0].split(":", 1)[0][:40]
