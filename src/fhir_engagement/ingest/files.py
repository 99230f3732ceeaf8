"""Files and folders -> raw items (``ingest/records.py`` reads them), each with its file and position.

Recognises ``.json`` (one resource or Bundle), ``.ndjson``/``.jsonl`` (Bulk Data export: one
resource a line), ``.hl7``/``.txt`` (HL7 v2: one or many messages, batch wrappers allowed) and any
of them gzipped. A folder is walked recursively in name order, so a
replay is repeatable; files of other kinds in a folder are counted as skipped, never read.
Nothing is parsed here: a file that cannot be read at all comes out as a RecordError.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest.records import Kind, RawItem
from fhir_engagement.ingest.v2parse import split_messages

__all__ = ["Skipped", "iter_items"]

_BOM = b"\xef\xbb\xbf"
_JSON = (".json",)
_NDJSON = (".ndjson", ".jsonl")
_V2 = (".hl7", ".txt")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file in a folder that is not a kind replay reads."""

    path: str


def iter_items(paths: list[Path]) -> Iterator[RawItem | RecordError | Skipped]:
    """Every raw item under ``paths``; unreadable files come out as RecordError, not exceptions."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from _file(child, named=False)
        elif path.exists():
            yield from _file(path, named=True)
        else:
            yield RecordError(str(path), "no such file or folder")


def _file(path: Path, named: bool) -> Iterator[RawItem | RecordError | Skipped]:
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(_JSON + _NDJSON + _V2):
        if named:
            yield RecordError(str(path), "not a file replay reads (.json, .ndjson, .jsonl, .hl7, "
                              ".txt, .gz)")
        else:
            yield Skipped(str(path))
        return
    if name.endswith(_NDJSON):
        yield from _ndjson(path)  # streamed: a Bulk Data export can be larger than memory
        return
    try:
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield RecordError(str(path), f"cannot read: {exc}")
        return
    if name.endswith(".txt") and not named and not _looks_v2(data):
        yield Skipped(str(path))  # a folder's README or licence, not a feed
    elif name.endswith(_V2):
        for number, message in enumerate(split_messages(data), start=1):
            yield RawItem(Kind.V2, message, f"{path} message {number}")
    else:
        yield RawItem(Kind.FHIR, data, str(path))


def _looks_v2(data: bytes) -> bool:
    return data.removeprefix(_BOM).lstrip()[:3] in (b"MSH", b"BHS", b"FHS")


def _ndjson(path: Path) -> Iterator[RawItem | RecordError]:
    """One item a line, read as it goes (one line in memory at a time). A file that cannot be
    read stops where it fails, as a RecordError after the lines read before it."""
    origin = str(path)
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if number == 1:
                    line = line.removeprefix(_BOM)
                line = line.removesuffix(b"\n")
                if line.strip():
                    yield RawItem(Kind.FHIR, line, origin, number)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        yield RecordError(origin, f"cannot read: {exc}")
