"""A replay: read files and folders, process every event in event-time order, build the Bundle.

The dry run that testers use (``fhir-engagement replay PATH... --out FILE``). Everything is read
first, so context (Patients, status Flags) is known before any event is decided, and events are
sorted by event time (ordering.py: an external sort, so memory stays flat whatever the input
size) so that the same inputs in any file order give the same outputs; a later
version of a resource (a correction) is applied after the version it corrects, whatever time it
carries (rules.md section 7).

No single record stops a replay: what cannot be read or processed is a named rejection, kept as a
dead letter. Only the store failing (a StoreError) ends it, before anything is acknowledged.
The ``--out`` Bundle is owed by the store: a run's outputs are claimed for a Bundle in the commit
that keeps them, and the claim is confirmed once the file is atomically in place, so a rerun after
a crash writes every decision that no Bundle holds yet, and none twice.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, TypeVar

import orjson

from fhir_engagement.decisions.bundle import entry, transaction
from fhir_engagement.errors import InputError
from fhir_engagement.ingest.files import Skipped, iter_items
from fhir_engagement.ingest.records import Kind, RawItem, Read
from fhir_engagement.ingest.v2parse import V2Message
from fhir_engagement.model import Event, PatientFacts, StatusFact
from fhir_engagement.ordering import EventOrder, Packed, pack
from fhir_engagement.pipeline import Engine, Pipeline
from fhir_engagement.store.base import OutputRow, Store

__all__ = ["ReplayResult", "default_workers", "replay", "write_bundle"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
# Events whose lookups the store reads ahead at once (Pipeline.prefetch): enough to make a
# database's round trips rare, few enough that what is read stays a few hundred KB.
_AHEAD = 500
Progress = Callable[[str], None]
_PROGRESS_EVERY = 2.0  # seconds between progress lines on long replays
_ID_WITHIN = 256  # the Bundle's id is written within its first bytes (see _bundle)
# Reading workers are sent items a chunk at a time (one round trip per ~1 MB, not per line), and
# at most _IN_FLIGHT chunks a worker are out at once, so memory stays flat however large the input.
_CHUNK_ITEMS, _CHUNK_BYTES, _IN_FLIGHT = 512, 1 << 20, 2


@dataclass
class ReplayResult:
    """What a replay did: counters, the Bundle it would write, and what it rejected.

    ``bundle_id`` is set when the Bundle is owed to a file (``out``); ``earlier`` counts the
    outputs of earlier runs it carries because no Bundle holds them yet (a crash before writing).
    """

    stats: dict[str, int]
    bundle: dict[str, Any] | None  # None when not kept (keep_bundle=False): see write_bundle
    rejected: list[InputError] = field(default_factory=list)
    bundle_id: str | None = None
    earlier: int = 0
    entries: int = 0  # in the Bundle


def replay(
    paths: list[Path], engine: Engine, store: Store, progress: Progress | None = None,
    out: Path | None = None, *, keep_bundle: bool = True, workers: int = 1,
) -> ReplayResult:
    """Replay ``paths`` through the pipeline; outputs of this run go to the Bundle.

    With ``out``, the Bundle also carries every earlier output owed to a Bundle and never written
    to one; call ``write_bundle`` to put it in place (it streams the Bundle from the store's
    bytes). ``keep_bundle=False`` builds no Bundle in memory (the command line's way: a region's
    year of outputs is a gigabyte of dicts). ``workers`` > 1 reads in that many processes
    (see _reads); the outputs are the same. Raises StoreError if the store fails.
    """
    if out is not None:
        settle_bundles(store)
    run = store.start_run(f"replay {' '.join(str(p) for p in paths)}")
    pipeline = Pipeline(engine, store, run)
    rejected: list[InputError] = []
    with _no_cyclic_gc(), EventOrder() as order:
        _read(paths, engine, pipeline, rejected, order, workers)
        _process(order, pipeline, rejected, progress)
    bundle_id = uuid.uuid4().hex if out is not None else None
    claimed = store.claim_bundle(bundle_id, str(out), run) if bundle_id is not None else None
    store.commit()
    stats, own = _stats(pipeline, store.iter_outputs(run=run))
    if claimed is None:
        bundle = transaction(_triples(store.iter_outputs(run=run))) if keep_bundle else None
        return ReplayResult(stats, bundle, rejected, entries=own)
    bundle = ({"resourceType": "Bundle", "id": bundle_id,
               **transaction(_triples(store.iter_outputs(bundle=bundle_id)))}
              if keep_bundle else None)
    return ReplayResult(stats, bundle, rejected, bundle_id, claimed - own, claimed)


def write_bundle(result: ReplayResult, out: Path, store: Store) -> None:
    """Put the Bundle in place atomically (mode 0600), then mark it written in the store.

    A failed write releases the claim, so the next replay writes these outputs. Raises OSError
    (the file could not be written) or StoreError.
    """
    bundle_id = result.bundle_id or uuid.uuid4().hex
    if result.bundle_id is not None:
        chunks: Iterable[bytes] = _streamed(store.iter_outputs(bundle=result.bundle_id),
                                            result.bundle_id)
    else:
        chunks = (orjson.dumps(result.bundle, option=orjson.OPT_INDENT_2),)
    try:
        _write_atomic(out, _temp_path(out, bundle_id), chunks)
    except OSError:
        if result.bundle_id is not None:
            store.release_bundle(result.bundle_id)
            store.commit()
        raise
    if result.bundle_id is not None:
        store.bundle_written(result.bundle_id)
        store.commit()


def settle_bundles(store: Store) -> None:
    """Bundles a crash left unconfirmed: written if the file holds their id, else released."""
    for bundle_id, path in store.unconfirmed_bundles():
        if _holds(Path(path), bundle_id):
            store.bundle_written(bundle_id)
        else:
            store.release_bundle(bundle_id)
            with suppress(OSError):
                _temp_path(Path(path), bundle_id).unlink(missing_ok=True)
    store.commit()


def _stats(pipeline: Pipeline, rows: Iterable[OutputRow]) -> tuple[dict[str, int], int]:
    """The pipeline's counters with the run's Flags by code; and how many outputs it wrote."""
    stats = dict(pipeline.stats)
    count = 0
    for row in rows:
        count += 1
        if row.kind == "Flag":
            code = orjson.loads(row.resource)["code"]["coding"][0]["code"]
            stats[f"flag {code}"] = stats.get(f"flag {code}", 0) + 1
    return stats, count


def _triples(rows: Iterable[OutputRow]) -> Iterator[tuple[str, str, bytes]]:
    return ((r.id, r.kind, r.resource) for r in rows)


def _streamed(rows: Iterable[OutputRow], bundle_id: str) -> Iterator[bytes]:
    """The Bundle as ``transaction`` builds it, an entry at a time, each resource spliced in as
    the bytes the store holds (orjson.Fragment: never parsed again). The id comes first, within
    the bytes ``_holds`` reads."""
    yield orjson.dumps({"resourceType": "Bundle", "id": bundle_id, "type": "transaction"},
                       option=orjson.OPT_INDENT_2)[:-2] + b',\n  "entry": [\n'
    first = True
    for row in rows:
        body = orjson.dumps(entry(row.id, row.kind, orjson.Fragment(row.resource)),  # type: ignore[arg-type]
                            option=orjson.OPT_INDENT_2)
        yield (b"" if first else b",\n") + body
        first = False
    yield b"\n  ]\n}"


# -- reading and processing: no record stops the replay -----------------------------------------
def _process(
    order: EventOrder, pipeline: Pipeline, rejected: list[InputError],
    progress: Progress | None,
) -> None:
    """Every event, in event-time order (ordering.py: spilled to disk, so memory stays flat),
    each behind the pipeline's guard. The store's write buffer is flushed every so many events,
    so it stays small too; nothing is committed before the end."""
    clock = _Clock(progress, order.count)
    number = 0
    for chunk in _chunks(iter(order), _AHEAD):
        pipeline.prefetch([event for event, _ in chunk])
        for event, raw in chunk:
            error = pipeline.process_guarded(event, raw if raw is not None else _raw(event))
            if error is not None:
                rejected.append(error)
            number += 1
            clock.tick(number)


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _read(
    paths: list[Path], engine: Engine, pipeline: Pipeline, rejected: list[InputError],
    order: EventOrder, workers: int = 1,
) -> None:
    """Context is kept as it is read; events go to ``order``, to be sorted into event time.

    Everything here happens in input order, whichever process read the item: context records
    are first come, first kept."""
    for item, read in _reads(paths, engine, workers):
        if isinstance(item, Skipped):
            pipeline.stats["files skipped"] += 1
        elif isinstance(item, InputError):
            rejected.append(item)
            pipeline.reject(item, item.raw)
        else:
            pipeline.stats["v2 messages" if item.kind is Kind.V2 else "documents"] += 1
            raw = item.data if item.kind is Kind.V2 else None
            for event in _events(read, item.where, pipeline, rejected):
                if isinstance(event, Packed):
                    order.add_packed(event)
                else:
                    order.add(event, raw)


def _events(
    read: Read, where: str, pipeline: Pipeline, rejected: list[InputError]
) -> list[Event | Packed]:
    """Keep rejections and context now; return the events, to be sorted into event-time order."""
    for error in read.rejected:
        rejected.append(error)
        pipeline.reject(error, error.raw)
    if read.message is not None and not read.records and not read.rejected:
        pipeline.stats["v2 messages ignored"] += 1
    events: list[Event | Packed] = []
    for record in read.records:
        if isinstance(record, Event | Packed):
            events.append(record)
        else:
            _context(record, where, pipeline, rejected)
    return events


# -- reading in worker processes -----------------------------------------------------------------
Entry = RawItem | InputError | Skipped
_ENGINE: Engine | None = None  # a reading worker's, set once when it starts
_SENT_MESSAGE = V2Message(b"", "", "")  # stands for a v2 item's parsed header, not sent back


def default_workers() -> int:
    """Reading processes when none are asked for: two where the machine has two cores to give."""
    return min(2, os.cpu_count() or 1) if _can_fork() else 1


def _can_fork() -> bool:
    # Workers get the engine by fork (its mappings, rules and Reader are not all picklable, and
    # loading them again per worker would cost more than it saves); without fork, read here.
    return "fork" in multiprocessing.get_all_start_methods()


def _reads(paths: list[Path], engine: Engine, workers: int) -> Iterator[tuple[Entry, Read]]:
    """Every entry under ``paths`` in input order, each raw item with what it read as.

    Reading is pure (bytes in, records out), so with ``workers`` > 1 the chunks of input are
    shared out in turn between this process and ``workers`` - 1 forked ones, and taken back in
    the order they were read. This process reads its turns itself rather than wait: on a
    machine of two busy cores, a process that only waited measured slower than one reading
    alone (a worker's reads are pickled to be sent back, and three processes shared two
    cores). An input of one chunk or less is read here: starting processes would cost more
    than it saves."""
    chunks = _item_chunks(iter_items(paths))
    if workers <= 1 or not _can_fork():
        for chunk in chunks:
            yield from _here(engine, chunk)
        return
    first = next(chunks, [])
    second = next(chunks, None)
    if second is None:
        yield from _here(engine, first)
        return
    pool = ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(engine,))
    pending: deque[tuple[list[Entry], Future[list[bytes | None]] | None]] = deque()
    try:
        for number, chunk in enumerate(chain((first, second), chunks)):
            ours = number % workers == 0  # None: read here when its turn comes
            pending.append((chunk, None if ours else _submit(pool, chunk)))
            if len(pending) >= workers * _IN_FLIGHT:
                yield from _taken(engine, *pending.popleft())
        while pending:
            yield from _taken(engine, *pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _item_chunks(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    size = 0
    for one in entries:
        chunk.append(one)
        size += len(one.data) if isinstance(one, RawItem) else 0
        if len(chunk) >= _CHUNK_ITEMS or size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _here(engine: Engine, chunk: list[Entry]) -> Iterator[tuple[Entry, Read]]:
    for one in chunk:
        yield one, engine.records.read(one) if isinstance(one, RawItem) else Read()


def _submit(pool: ProcessPoolExecutor, chunk: list[Entry]) -> Future[list[bytes | None]] | None:
    try:
        return pool.submit(_read_chunk, [e for e in chunk if isinstance(e, RawItem)])
    except BrokenProcessPool:  # a worker died (killed, out of memory): read the rest here
        return None


def _taken(engine: Engine, chunk: list[Entry],
           future: Future[list[bytes | None]] | None) -> Iterator[tuple[Entry, Read]]:
    """A chunk's reads, in order; what a worker could not send back is read again here."""
    try:
        results = iter(future.result() if future is not None else ())
    except BrokenProcessPool:
        results = iter(())
    for one in chunk:
        if not isinstance(one, RawItem):
            yield one, Read()
            continue
        done = next(results, None)
        yield one, (pickle.loads(done) if done is not None else engine.records.read(one))


def _start_worker(engine: Engine) -> None:
    global _ENGINE  # one engine a worker process, given once at fork
    _ENGINE = engine
    gc.freeze()  # what the fork brought is never garbage; only the worker's own is collected
    gc.enable()


def _read_chunk(items: list[RawItem]) -> list[bytes | None]:
    """In a worker: each item read and its events packed for the sort, pickled one by one, so
    one that cannot be (a resource nested too deep) is only that one, read again by the parent."""
    assert _ENGINE is not None
    out: list[bytes | None] = []
    for item in items:
        read = _ENGINE.records.read(item)
        raw = item.data if item.kind is Kind.V2 else None
        read.records = [_packed(r, raw) for r in read.records]
        if read.message is not None:  # only whether there was one is read (see _events)
            read.message = _SENT_MESSAGE
        out.append(_sent(read))
    return out


def _sent(read: Read) -> bytes | None:
    try:
        return pickle.dumps(read, pickle.HIGHEST_PROTOCOL)
    except Exception:  # anything that cannot be pickled is read again by the parent
        return None


def _packed(record: Any, raw: bytes | None) -> Any:
    if isinstance(record, Event):
        return pack(record, raw) or record
    return record


def _context(
    record: PatientFacts | StatusFact, where: str, pipeline: Pipeline, rejected: list[InputError]
) -> None:
    """Keep one context record; one that cannot be kept is a rejection, not a stopped replay."""
    error = pipeline.accept_context_guarded(record, where)
    if error is not None:
        rejected.append(error)


def _raw(event: Event) -> bytes:
    """The event's resource as JSON for its dead letter. orjson refuses nesting deeper than 255;
    then the letter keeps none, and its where (file, position) leads to the input on disk."""
    if event.raw is None:
        return b""
    try:
        return orjson.dumps(event.raw)
    except orjson.JSONEncodeError:
        return b""


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The pipeline makes no reference cycles worth collecting, and reference counting frees
    everything as usual: the cyclic collector would only re-scan the heap (measured: it doubled
    replay time when the heap held every event; with flat memory it still costs ~10%)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Clock:
    """Progress lines for long replays, at most one every couple of seconds."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total = progress, total
        self.last = time.monotonic()

    def tick(self, done: int) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY:
            self.last = now
            self.progress(f"processed {done:,} of {self.total:,} events")


# -- the Bundle file: atomic, and recognisable by its id ----------------------------------------
def _temp_path(out: Path, bundle_id: str) -> Path:
    """Beside the Bundle (so the rename is atomic), named by the Bundle, so a crash's leftover
    is found and removed by the next replay."""
    return out.with_name(f".{out.name}.{bundle_id}.tmp")


def _write_atomic(out: Path, temp: Path, data: Iterable[bytes]) -> None:
    """temp file, fsync, rename over ``out``, fsync the folder: the old file or the whole new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as file:
            for chunk in data:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, out)
    except BaseException:
        with suppress(OSError):
            temp.unlink(missing_ok=True)
        raise
    folder = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _holds(path: Path, bundle_id: str) -> bool:
    """Whether the file at ``path`` is the Bundle with this id (written before its entries)."""
    try:
        with path.open("rb") as file:
            return bundle_id.encode() in file.read(_ID_WITHIN)
    except OSError:
        return False
