"""Files and folders -> documents (parsed JSON, or raw HL7 v2 messages), each with its origin.

Recognises ``.json`` (one resource or Bundle), ``.ndjson``/``.jsonl`` (Bulk Data export: one
resource a line), ``.hl7``/``.txt`` (HL7 v2: one or many messages, batch wrappers allowed) and any
of them gzipped. A folder is walked recursively in name order, so a
replay is repeatable; files of other kinds in a folder are counted as skipped, never read.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_engagement.errors import RecordError
from fhir_engagement.ingest.v2parse import split_messages

__all__ = ["Document", "Skipped", "V2Document", "iter_documents"]

_BOM = b"\xef\xbb\xbf"
_JSON = (".json",)
_NDJSON = (".ndjson", ".jsonl")
_V2 = (".hl7", ".txt")


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed JSON value and where it came from (``file`` or ``file:line``)."""

    value: Any
    origin: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class V2Document:
    """One HL7 v2 message's bytes and where it came from (``file message n``)."""

    raw: bytes
    origin: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file in a folder that is not a kind replay reads."""

    path: str


def iter_documents(paths: list[Path]) -> Iterator[Document | V2Document | RecordError | Skipped]:
    """Every document under ``paths``; unreadable ones come out as RecordError, not exceptions."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from _file(child, named=False)
        elif path.exists():
            yield from _file(path, named=True)
        else:
            yield RecordError(str(path), "no such file or folder")


def _file(path: Path, named: bool) -> Iterator[Document | V2Document | RecordError | Skipped]:
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(_JSON + _NDJSON + _V2):
        if named:
            yield RecordError(str(path), "not a file replay reads (.json, .ndjson, .jsonl, .hl7, "
                              ".txt, .gz)")
        else:
            yield Skipped(str(path))
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
            yield V2Document(message, f"{path} message {number}")
    elif name.endswith(_NDJSON):
        yield from _lines(data, str(path))
    else:
        yield _parse(data.removeprefix(_BOM), str(path))


def _looks_v2(data: bytes) -> bool:
    return data.removeprefix(_BOM).lstrip()[:3] in (b"MSH", b"BHS", b"FHS")


def _lines(data: bytes, origin: str) -> Iterator[Document | RecordError]:
    for number, line in enumerate(data.removeprefix(_BOM).split(b"\n"), start=1):
        if line.strip():
            yield _parse(line, origin, number)


def _parse(data: bytes, origin: str, line: int | None = None) -> Document | RecordError:
    where = origin if line is None else f"{origin}:{line}"
    try:
        return Document(orjson.loads(data), where, data)
    except orjson.JSONDecodeError as exc:
        # A whole file gets line:column; an NDJSON record is already one line.
        at = f"{origin}:{exc.lineno}:{exc.colno}" if line is None else where
        return RecordError(at, f"not valid JSON: {exc.msg}", data)
