"""HL7 v2 messages from MLLP: kept durably before the AA, then drained through the pipeline.

The one visible rule of the v2 path lives here: an AA is sent only after the raw message is
committed. The MLLP server (ingest/mllp.py) only frames; this module decides the answer.

A message is read (parsed and mapped) on arrival, to answer AA or AE; the worker takes that
reading instead of reading the message again (reading is pure: the same bytes and origin give
the same records). It is only a shortcut: kept in memory for at most ``_READS_KEPT`` messages,
used once, and a message the worker finds none for (after a restart, a retry, or more
than that many behind) is read again from its kept bytes. Reading twice was ~150 us of a
message's ~650 us on the server (cProfile, ``bench/v2_bench.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_engagement.errors import InputError, MessageError, StoreError, UnreadableError
from fhir_engagement.ingest.ack import INTERNAL_ERROR, build_ack
from fhir_engagement.ingest.records import Kind, RawItem, Read
from fhir_engagement.ingest.v2parse import V2Message, parse_message
from fhir_engagement.live.status_sources import StatusSources
from fhir_engagement.live.workers import drain_items, off_loop_if_large
from fhir_engagement.pipeline import Pipeline

__all__ = ["V2Inbox"]

UNAVAILABLE = "the adapter cannot store messages now: send again"
_READS_KEPT = 1000  # messages' readings held for the worker (~20 KB each): a bound, not a cache size


class V2Inbox:
    """Accepts v2 messages for one pipeline and drains them through it."""

    def __init__(self, pipeline: Pipeline, channel: str = "mllp", max_attempts: int = 3) -> None:
        self.pipeline, self.channel, self.max_attempts = pipeline, channel, max_attempts
        self.store, self.stats = pipeline.store, pipeline.stats
        self.committed: Callable[[], None] | None = None  # serve: wakes the outbox (workers.py)
        self.status: StatusSources | None = None  # serve with status_sources (CP-IS)
        self._reads: dict[tuple[str, bytes], Read] = {}  # accepted, not yet processed

    async def accept(self, raw: bytes, origin: str) -> tuple[bytes, bool]:
        """Keep one message durably, then answer it: (ACK, whether it is new).

        AA only after the message is committed to the inbox; AE (the message kept in the
        dead-letter store with the reason) when it cannot be parsed or mapped; AR when the store
        cannot keep it, so that the sender keeps it and sends it again. A message already
        received (same sender and MSH-10) is acknowledged again and not processed twice.
        Every complete frame gets an answer: an unforeseen failure is an AE, the message kept.
        """
        try:
            read = await self._read(raw, origin)
            return self._keep(read, raw, origin)
        except Exception as exc:  # the MLLP boundary: the sender must never be left without an ACK
            error = UnreadableError(origin, f"could not be taken ({type(exc).__name__})", raw)
            return self._refuse(None, raw, error, ""), False

    async def _read(self, raw: bytes, origin: str) -> Read:
        return await off_loop_if_large(len(raw), self.pipeline.engine.records.read,
                                       RawItem(Kind.V2, raw, origin))

    def _keep(self, read: Read, raw: bytes, origin: str) -> tuple[bytes, bool]:
        if read.rejected or read.message is None:  # map now: unmappable is AE, not AA
            return self._refuse(read.message, raw, read.rejected[0], read.location), False
        message = read.message
        try:
            fresh = self.store.inbox_put(self.channel, message.sender, message.control_id, origin,
                                         raw)
            self.store.commit()
        except StoreError:
            return build_ack(message, "AR", UNAVAILABLE), False
        self.stats["received" if fresh else "duplicates"] += 1
        if fresh:
            self._hold(origin, raw, read)
        return build_ack(message, "AA"), fresh

    def _hold(self, origin: str, raw: bytes, read: Read) -> None:
        """Keep an accepted message's reading for the worker; the oldest goes past the bound."""
        if len(self._reads) >= _READS_KEPT:
            del self._reads[next(iter(self._reads))]
        self._reads[(origin, raw)] = read

    def refuse_oversize(self, head: bytes, limit: int) -> bytes:
        """A frame over the size limit: AE, with its head kept, so the sender knows to split it."""
        try:
            message = parse_message(head.split(b"\r", 1)[0] + b"\r")
        except MessageError:
            message = None
        error = MessageError(f"{self.channel} (MLLP frame)", f"larger than the {limit:,}-byte limit")
        return self._refuse(message, head, error, "MLLP frame")

    async def drain(self, limit: int = 100) -> int:
        """Process up to ``limit`` stored messages in arrival order; returns how many."""
        return await drain_items(self.store, self.channel, limit, self._process, self.stats,
                                 self.max_attempts, self.committed)

    async def _process(self, origin: str, raw: bytes) -> None:
        read = self._reads.pop((origin, raw), None) or await self._read(raw, origin)
        for error in read.rejected:
            self.pipeline.reject(error, raw)
        if self.status is not None:  # CP-IS and the like, by the NHS number PID-3 gives
            await self.status.ask(read.records)
        self.pipeline.apply(read.records, raw, origin)

    def _refuse(
        self, message: V2Message | None, raw: bytes, error: InputError, location: str
    ) -> bytes:
        try:
            self.store.dead_letter(error.where, error.reason, raw)
            self.store.commit()
        except Exception:  # the store cannot keep it: the sender must keep it and send it again
            return build_ack(message, "AR", UNAVAILABLE)
        self.stats["rejected"] += 1
        code = error.code if isinstance(error, MessageError) else INTERNAL_ERROR  # table 0357
        return build_ack(message, "AE", error.reason, location, code)
