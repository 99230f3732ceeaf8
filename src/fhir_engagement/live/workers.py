"""The live workers: each drains a durable queue one item at a time, supervised so none stays down.

Two guards live here and nowhere else:

- per item (``drain_items``): an item that fails is rolled back and counted; after
  ``max_attempts`` it is quarantined (moved to the dead letters with the reason), so the queue
  always moves. A StoreError is not the item's fault: it goes up and the item stays pending.
- per worker (``Supervisor``): a worker that stops for any reason is restarted with backoff,
  counted and logged at ERROR, and ``down()`` names it so /readyz tells the truth meanwhile.

Logs name the item by its inbox number and the failure by its type: never its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from fhir_engagement.errors import StoreError
from fhir_engagement.store.base import DeadLetters, Inbox, Transactional

__all__ = ["Handle", "Supervisor", "drain_items", "off_loop_if_large", "wake_on_decisions"]

_LOG = logging.getLogger(__name__)

Handle = Callable[[str, bytes], Awaitable[None]]
T = TypeVar("T")
# Parsing is linear (about 4.5 µs per HL7 v2 repetition, ~30 µs per KB of FHIR JSON's depth
# check): under this size it takes a few ms on the loop, less than a thread hand-off is worth;
# above it, a 288 KB message would hold every other connection for ~150 ms.
_OFF_LOOP_BYTES = 64 * 1024


async def off_loop_if_large(size: int, work: Callable[..., T], *args: object) -> T:
    """Run a pure parsing step in a thread when the input is large, so one large message never
    holds the other connections; small inputs are parsed in place."""
    if size < _OFF_LOOP_BYTES:
        return work(*args)
    return await asyncio.to_thread(work, *args)


def wake_on_decisions(queued: Callable[[], int], wake: asyncio.Event) -> Callable[[], None]:
    """A ``committed`` hook that sets ``wake`` when the commit just made queued a delivery.

    Only a decision wakes the outbox: most items (bookings, attendances) decide nothing, and a
    pass over an empty queue per item would cost a query each at thousands of pushes a second.
    """
    seen = queued()

    def committed() -> None:
        nonlocal seen
        now = queued()
        if now != seen:
            seen = now
            wake.set()

    return committed


class _QueueStore(Transactional, Inbox, DeadLetters, Protocol):
    """What draining needs of the store."""


async def drain_items(
    store: _QueueStore, channel: str, limit: int, handle: Handle, stats: Counter[str],
    max_attempts: int, committed: Callable[[], None] | None = None,
) -> int:
    """Process up to ``limit`` pending items of ``channel``, each in its own commit.

    ``committed`` is called after each item's commit: serve wakes the outbox there, so a decision
    goes out as soon as it is durable, not at the outbox's next idle poll.
    """
    rows = store.inbox_pending(limit, channel)
    for item, origin, raw in rows:
        try:
            await handle(origin, raw)
            store.inbox_done([item])
            store.commit()
            if committed is not None:
                committed()
        except (StoreError, asyncio.CancelledError):
            store.rollback()  # its partial writes must not be committed with the next item's
            raise
        except Exception as exc:  # the per-item guard: one bad item never stops the queue
            store.rollback()
            _failed(store, stats, (item, origin, raw), type(exc).__name__, max_attempts)
        await asyncio.sleep(0)  # let the listeners in between items
    return len(rows)


def _failed(
    store: _QueueStore, stats: Counter[str], row: tuple[int, str, bytes], kind: str,
    max_attempts: int,
) -> None:
    item, origin, raw = row
    reason = f"processing failed ({kind})"
    attempts = store.inbox_failed(item, reason)
    stats["inbox item failures"] += 1
    _LOG.error("inbox item %d failed (%s), attempt %d of %d", item, kind, attempts, max_attempts)
    if attempts >= max_attempts:
        store.dead_letter(origin, f"quarantined after {attempts} failed attempts: {reason}", raw)
        store.inbox_set_state(item, "quarantined")
        store.commit()
        stats["inbox items quarantined"] += 1


class Supervisor:
    """Runs named workers for the app's lifetime, restarting any that stops."""

    def __init__(self, stats: Counter[str], backoff_max: float = 60.0) -> None:
        self.stats, self.backoff_max = stats, backoff_max
        self._down: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._keep(name, work), name=name)

    def down(self) -> dict[str, str]:
        """Workers waiting to be restarted, and why they stopped."""
        return dict(self._down)

    async def stop(self, *names: str) -> None:
        """Cancel these workers and wait for them to end."""
        tasks = [self._tasks.pop(name) for name in names if name in self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        delay = 1.0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await work()
                reason = "returned"  # a worker never returns on its own
            except Exception as exc:
                reason = type(exc).__name__
            if loop.time() - started > self.backoff_max:
                delay = 1.0  # it ran well for a while: this is a new failure, not the same one
            self._down[name] = reason
            self.stats[f"worker restarts {name}"] += 1
            _LOG.error("worker %s stopped (%s); restarting in %.0f s", name, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            self._down.pop(name, None)
