"""Replay's event-time order with flat memory: an external sort, its sorted runs spilled to disk.

Replay must hand events to the pipeline in event time, with every version of one resource after
the version it corrects (rules.md section 7), and it must not hold every event to do so: an event
with its parsed resource costs ~10 KiB in memory, a region's year ~2 M events. So events are
pickled once (their resource as orjson bytes: ~5x faster to write and read than pickling the dict)
into sorted runs of bounded size on disk, and merged back (``heapq.merge``) in two passes:

1. by (key, version, own time, read order): each resource's versions meet, so the time each
   version is placed at (never earlier than the version before it) is known with one version in
   memory at a time;
2. by (placed time, key, rank): the order the pipeline sees, re-spilled as runs of the same size.

Keys alone in memory (payloads on disk) was the other choice measured on paper: ~250 B a key
is still 500 MB for 2 M events, and the sort would need random reads of the payloads; two
sequential external passes keep memory at one run's worth whatever the input. The spill files
are the owner's only (0600, in a private temporary folder) and removed when the order is read,
or when replay fails: they hold children's appointments.

The order is the same as sorting everything in memory: the sort keys depend only on the events,
and read order breaks ties, as the stable in-memory sort did.
"""

from __future__ import annotations

import heapq
import os
import pickle
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from fhir_engagement.model import Event

__all__ = ["EventOrder", "time_of"]

Pending = tuple[Event, bytes | None]  # an event and its raw item when the event holds no JSON
_DAWN = datetime(1, 1, 1, tzinfo=UTC)
_RUN_BYTES = 48 * 1024 * 1024  # one run in memory before it is sorted and spilled (~48 MB)
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_LENGTH = struct.Struct("<I")
_IO_BUFFER = 256 * 1024  # per open run: ~80 runs are merged at once for 2 M events
_FIELDS = tuple(f.name for f in fields(Event))  # in __init__'s order
_RAW_AT = _FIELDS.index("raw")


def time_of(event: Event) -> datetime:
    """The event's time in UTC; timeless events go first (they raise nothing or are rejected).

    One that is not UTC and cannot be made so (year 1 east of Greenwich) sorts first too rather
    than failing the comparison."""
    occurred = event.occurred or _DAWN
    if occurred.tzinfo is not UTC:
        try:
            occurred = occurred.astimezone(UTC)
        except (OverflowError, ValueError):
            occurred = _DAWN
    return occurred


class EventOrder:
    """Collect events (``add``), then read them back once in replay order (``__iter__``).

    Use as a context manager: the spill folder goes with it whatever happens.
    """

    def __init__(self, run_bytes: int = _RUN_BYTES) -> None:
        self._run_bytes = run_bytes
        self._folder = Path(tempfile.mkdtemp(prefix="fhir-engagement-order-"))  # mode 0700
        self._buffer: list[tuple[Any, ...]] = []
        self._held = 0
        self._runs: list[Path] = []
        self._seq = 0
        self._spilled = 0
        self._kept: list[Pending] = []  # events too deeply nested to spill (see _pack)
        self.count = 0

    def __enter__(self) -> EventOrder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, event: Event, raw: bytes | None) -> None:
        """Keep one event (and the raw item its dead letter would hold) for the sort."""
        blob = _pack(event, raw, self._kept)
        self._seq += 1
        self.count += 1
        self._buffer.append((event.key, event.version, time_of(event), self._seq, blob))
        self._held += len(blob) + 200  # the tuple, key and datetime beside the blob
        if self._held >= self._run_bytes:
            self._spill()

    def __iter__(self) -> Iterator[Pending]:
        """Every event once, in replay order; the spill files are removed as they are used."""
        self._spill()
        by_key, self._runs = self._runs, []
        placed = self._placed(heapq.merge(*(_read_run(p) for p in by_key)))
        for record in placed:  # the second pass, re-spilled in runs of the same size
            self._buffer.append(record)
            self._held += len(record[3]) + 200
            if self._held >= self._run_bytes:
                self._spill()
        self._spill()
        for path in by_key:
            path.unlink(missing_ok=True)
        ordered = self._runs
        for _, _, _, blob in heapq.merge(*(_read_run(p) for p in ordered)):
            yield _unpack(blob, self._kept)
        self.close()

    @staticmethod
    def _placed(by_key: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """(placed time, key, rank, blob): each version no earlier than the one before it.

        A correction often carries an earlier time than what it corrects (a cancelled discharge
        has no period.end, so falls back to period.start): sorted by its own time it would come
        first and the discharge would stand."""
        key, placed, rank = None, _DAWN, 0
        for this_key, _, own, _, blob in by_key:
            if this_key != key:
                key, placed, rank = this_key, _DAWN, 0
            placed = max(placed, own)
            yield (placed, this_key, rank, blob)
            rank += 1

    def _spill(self) -> None:
        if not self._buffer:
            return
        self._buffer.sort(key=_sort_key)
        self._spilled += 1
        path = self._folder / f"run-{self._spilled:06d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb", buffering=_IO_BUFFER) as out:
            # One pickle a record behind its length: a Pickler/Unpickler pair over the whole run
            # keeps every record alive in the unpickler's memo (measured: 3 KiB an event).
            for record in self._buffer:
                data = pickle.dumps(record, _PROTOCOL)
                out.write(_LENGTH.pack(len(data)))
                out.write(data)
        self._runs.append(path)
        self._buffer, self._held = [], 0

    def close(self) -> None:
        """Remove every spill file (idempotent)."""
        self._buffer, self._kept = [], []
        for path in self._runs:
            with suppress(OSError):
                path.unlink(missing_ok=True)
        self._runs = []
        with suppress(OSError):
            for leftover in self._folder.iterdir():
                leftover.unlink()
            self._folder.rmdir()


def _sort_key(record: tuple[Any, ...]) -> tuple[Any, ...]:
    return record[:-1]  # never the blob: the keys before it are unique (read order, rank)


def _read_run(path: Path) -> Iterator[tuple[Any, ...]]:
    with path.open("rb", buffering=_IO_BUFFER) as file:
        yield from _records(file)


def _records(file: BinaryIO) -> Iterator[tuple[Any, ...]]:
    while head := file.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(head)
        yield pickle.loads(file.read(size))


def _pack(event: Event, raw: bytes | None, kept: list[Pending]) -> bytes:
    """The event's fields, its parsed resource as JSON bytes (pickling the fields beats pickling
    the dataclass and ``dataclasses.replace``: measured ~2x). One orjson refuses (nested deeper
    than 255, which pickle would refuse too) stays in memory, named by its place in ``kept``:
    such input is rare and rejected, and the pipeline must still see it whole."""
    values = [getattr(event, name) for name in _FIELDS]
    if event.raw is not None:
        try:
            values[_RAW_AT] = orjson.dumps(event.raw)
        except orjson.JSONEncodeError:
            kept.append((event, raw))
            return pickle.dumps(len(kept) - 1, _PROTOCOL)
    return pickle.dumps((values, raw), _PROTOCOL)


def _unpack(blob: bytes, kept: list[Pending]) -> Pending:
    packed = pickle.loads(blob)
    if isinstance(packed, int):
        return kept[packed]
    values, raw = packed
    if values[_RAW_AT] is not None:
        values[_RAW_AT] = orjson.loads(values[_RAW_AT])
    return Event(*values), raw
