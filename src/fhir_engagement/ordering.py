"""Replay's event-time order with flat memory: an external sort, its sorted runs spilled to disk.

Replay must hand events to the pipeline in event time, with every version of one resource after
the version it corrects (rules.md section 7), and it must not hold every event to do so: an event
costs ~3.9 KB in memory (its resource kept as JSON bytes, model.Event.raw), a region's year
~2 M events. So events are marshalled once (marshal rather than pickle, see ``_pack``) into
sorted runs of bounded size on disk, and merged back (``heapq.merge``) in two passes:

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
and read order breaks ties, as the stable in-memory sort did. So when every event fits in one
run (nothing was spilled), the two passes are two ``list.sort`` calls on those same keys and the
events never leave memory. The first run may grow to twice the others (~96 MB, ~25k events of
the benchmark's): an input that size is neither marshalled nor spilled, and a larger one only
holds that much once, at its start (docs/benchmarks.md, 2026-12-04: -0.4 s CPU on 20k events).
"""

from __future__ import annotations

import heapq
import marshal
import os
import pickle
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from fhir_engagement.model import Event

__all__ = ["EventOrder", "Packed", "pack", "time_of"]

Pending = tuple[Event, bytes | None]  # an event and its raw item when the event holds no JSON
Held = Pending | bytes  # in a run: an event as added, or its blob (packed, or from a worker)
_DAWN = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OCCURRED_AT = [f.name for f in fields(Event)].index("occurred")
_MARSHAL, _PICKLE = b"M", b"P"  # a blob's first byte: how the rest was written
_RUN_BYTES = 48 * 1024 * 1024  # one run in memory before it is sorted and spilled (~48 MB)
_FIRST_RUNS = 2  # the first run's size in runs: what may be sorted without spilling
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_LENGTHS = struct.Struct("<II")  # a spilled record's keys, then its blob
_IO_BUFFER = 256 * 1024  # per open run: ~80 runs are merged at once for 2 M events
_FIELDS = tuple(f.name for f in fields(Event))  # in __init__'s order
# What an event held as added costs beside its resource's bytes (its fields, the Pending tuple and
# the record), measured with tracemalloc on the benchmark's events (docs/benchmarks.md).
_EVENT_BYTES = 2700


@dataclass(frozen=True, slots=True)
class Packed:
    """An event as ``EventOrder`` spills it: its sort keys (key, version, own time) and its blob.

    Made by ``pack`` where the event was read (a replay's reading worker), so the process that
    sorts never builds the event, nor its resource, until it is processed."""

    head: tuple[str, str, int]
    blob: bytes


def pack(event: Event, raw: bytes | None) -> Packed:
    """The event as ``add_packed`` takes it."""
    return Packed(_head(event), _pack(event, raw))


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
        self._limit = run_bytes * _FIRST_RUNS  # until the first spill
        self._folder = Path(tempfile.mkdtemp(prefix="fhir-engagement-order-"))  # mode 0700
        self._buffer: list[tuple[Any, ...]] = []  # (key, version, own time, read order, Held)
        self._held = 0
        self._runs: list[Path] = []
        self._seq = 0
        self._spilled = 0
        self.count = 0

    def __enter__(self) -> EventOrder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, event: Event, raw: bytes | None) -> None:
        """Keep one event (and the raw item its dead letter would hold) for the sort.

        It is held as it is, and packed only if its run is spilled."""
        size = _EVENT_BYTES + len(event.raw or b"") + len(raw or b"")
        self._keep(_head(event), (event, raw), size)

    def add_packed(self, packed: Packed) -> None:
        """Keep one event ``pack`` made (elsewhere): the same as ``add`` of that event."""
        self._keep(packed.head, packed.blob, len(packed.blob) + 200)

    def _keep(self, head: tuple[str, str, int], item: Held, size: int) -> None:
        self._seq += 1
        self.count += 1
        self._buffer.append((*head, self._seq, item))
        self._held += size
        if self._held >= self._limit:
            self._spill()

    def __iter__(self) -> Iterator[Pending]:
        """Every event once, in replay order; the spill files are removed as they are used."""
        if not self._runs:
            yield from self._in_memory()
            return
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
            yield _unpack(blob)
        self.close()

    def _in_memory(self) -> Iterator[Pending]:
        """The two passes as two sorts of the one run held, on the keys the spilled runs are
        merged by (read order and rank make them unique, so the items are never compared)."""
        records, self._buffer, self._held = self._buffer, [], 0
        records.sort(key=_sort_key)
        placed = list(self._placed(records))
        del records
        placed.sort(key=_sort_key)
        for record in placed:
            item = record[-1]
            yield _unpack(item) if isinstance(item, bytes) else item
        self.close()

    @staticmethod
    def _placed(by_key: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """(placed time, key, rank, blob): each version no earlier than the one before it.

        A correction often carries an earlier time than what it corrects (a cancelled discharge
        has no period.end, so falls back to period.start): sorted by its own time it would come
        first and the discharge would stand."""
        dawn = _micros(_DAWN)
        key, placed, rank = None, dawn, 0
        for this_key, _, own, _, item in by_key:
            if this_key != key:
                key, placed, rank = this_key, dawn, 0
            placed = max(placed, own)
            yield (placed, this_key, rank, item)
            rank += 1

    def _spill(self) -> None:
        if not self._buffer:
            return
        self._buffer.sort(key=_sort_key)
        self._spilled += 1
        path = self._folder / f"run-{self._spilled:06d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb", buffering=_IO_BUFFER) as out:
            # A record's sort keys (strings and integers: marshal, ~5x faster than pickle) behind
            # two lengths, then its blob as it is: pickling the blob again in each pass only
            # copied it. One marshal or pickle a record, never one over the whole run: an
            # Unpickler's memo keeps every record alive (measured: 3 KiB an event).
            for record in self._buffer:
                head = marshal.dumps(record[:-1])
                blob = record[-1]
                if not isinstance(blob, bytes):  # an event as added: packed now it is spilled
                    blob = _pack(*blob)
                out.write(_LENGTHS.pack(len(head), len(blob)))
                out.write(head)
                out.write(blob)
        self._runs.append(path)
        self._buffer, self._held, self._limit = [], 0, self._run_bytes

    def close(self) -> None:
        """Remove every spill file (idempotent)."""
        self._buffer = []
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
    read, unpack, loads = file.read, _LENGTHS.unpack, marshal.loads
    while sizes := read(_LENGTHS.size):
        keys, blob = unpack(sizes)
        yield (*loads(read(keys)), read(blob))


def _head(event: Event) -> tuple[str, str, int]:
    """The event's keys for the first pass: which resource, which version, its own time."""
    return (event.key, event.version, _micros(time_of(event)))


def _micros(moment: datetime) -> int:
    """A UTC time as whole microseconds since 1970: sorts as the time does, and marshals."""
    return (moment - _EPOCH) // _MICROSECOND


def _pack(event: Event, raw: bytes | None) -> bytes:
    """The event's fields (its resource is JSON bytes already), marshalled (pickle and
    unpickle took 1.3 s for 20k events in three passes under cProfile, marshal 0.26 s: every
    field is a builtin once the time is ISO text). A time whose zone ISO text cannot carry (a
    named or non-fixed zone) makes the event pickled instead."""
    values = [getattr(event, name) for name in _FIELDS]
    occurred = event.occurred
    if occurred is None or _plain_zone(occurred):
        if occurred is not None:
            values[_OCCURRED_AT] = occurred.isoformat()
        try:
            return _MARSHAL + marshal.dumps((values, raw))
        except ValueError:  # a value marshal cannot write: pickle writes it
            values[_OCCURRED_AT] = occurred
    return _PICKLE + pickle.dumps((values, raw), _PROTOCOL)


def _plain_zone(moment: datetime) -> bool:
    """Whether ``datetime.fromisoformat(moment.isoformat())`` gives back the same zone."""
    zone = moment.tzinfo
    if zone is None or zone is UTC:
        return True
    if type(zone) is not timezone:
        return False
    offset = zone.utcoffset(None)
    return zone.tzname(None) == timezone(offset).tzname(None)


def _unpack(blob: bytes) -> Pending:
    if blob[:1] == _MARSHAL:
        values, raw = marshal.loads(memoryview(blob)[1:])
        if values[_OCCURRED_AT] is not None:
            values[_OCCURRED_AT] = datetime.fromisoformat(values[_OCCURRED_AT])
    else:
        values, raw = pickle.loads(memoryview(blob)[1:])
    return Event(*values), raw
