"""Which replica decides: the store's lease, asked before every pass of the deciding workers.

Every replica accepts input; only the lease holder drains the inboxes and the outbox, so each
child's events are counted in arrival order exactly as one process counts them (docs/replicas.md).
The lease is asked for before *each* pass, never remembered across passes: on PostgreSQL it is a
session advisory lock, gone with the connection, and a replica that reconnected after an outage
must not go on deciding while a peer took over. A standby asks every ``retry`` seconds (0.5 s),
which bounds how long a peer's death leaves the queues unattended. On SQLite it is always held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter

from fhir_engagement.errors import StoreError
from fhir_engagement.store.base import Replicas

__all__ = ["Lease", "replica_name"]

_LOG = logging.getLogger(__name__)


def replica_name(configured: str) -> str:
    """This replica's name in /metrics and /readyz: the ``replica_name`` setting, else host:pid."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """This replica's view of the lease: asked of the store, with what was last answered."""

    def __init__(self, store: Replicas, stats: Counter[str], retry: float = 0.5) -> None:
        self.store, self.stats, self.retry = store, stats, retry
        self.held = False  # the last answer, for /readyz and /metrics (they never ask)

    def check(self) -> bool:
        """Whether this replica holds the lease now, taking it when it is free.

        A store that cannot answer holds nothing for us: a peer may have it by now."""
        try:
            held = self.store.hold_lease()
        except StoreError:
            held = False
        if held != self.held:
            self.stats["lease taken" if held else "lease lost"] += 1
            _LOG.warning("lease %s: this replica %s", "taken" if held else "lost",
                         "decides and delivers now" if held else "is a standby")
        self.held = held
        return held

    async def hold(self) -> None:
        """Return once this replica holds the lease: at once when it does, else after polling."""
        # Polled: a lock freed in another process (or by its death) sends no event here.
        while not self.check():  # noqa: ASYNC110
            await asyncio.sleep(self.retry)

    def release(self) -> None:
        """Give the lease up (graceful stop) so a peer takes over at its next try."""
        with contextlib.suppress(StoreError):  # the connection is gone: so is the lock
            self.store.release_lease()
        if self.held:
            self.stats["lease released"] += 1
        self.held = False
