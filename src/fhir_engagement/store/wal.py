"""WAL checkpoints for ``serve`` on SQLite, off the event loop.

SQLite checkpoints a WAL store inside the commit that makes the WAL pass
``wal_autocheckpoint`` pages (1,000 by default): that commit copies the pages into the database
file and fsyncs both files. In ``serve`` every commit runs on the event loop, so every ~160th
push waited for it: commit p99 4.1 ms, worst 183 ms on the shared 2-core machine
(``bench/listener_bench.py``, 20,000 commits; one 160-commit cycle, regular as a clock), and
the next no-show's Task with it. Here the checkpoint runs in a thread on a connection of its
own (a PASSIVE checkpoint: it takes no lock a writer waits for, and the sqlite3 module lets go
of the GIL meanwhile), every ``PERIOD`` seconds.

Durability is unchanged: a commit is as durable as before (it is the commit, not the
checkpoint, that makes a push kept). Under a push stream that never pauses the WAL cannot
restart while new frames keep arriving behind a passive checkpoint, so the writer keeps its
own checkpoint as a backstop at ``BACKSTOP_PAGES`` (40 MB of 4 KiB pages): it then has only
the frames the thread has not yet copied left to do.
"""

from __future__ import annotations

import contextlib
import sqlite3

__all__ = ["BACKSTOP_PAGES", "PERIOD", "checkpoint"]

PERIOD = 0.2  # seconds between checkpoints: ~0.5-5 MB of WAL at the listener's rate
BACKSTOP_PAGES = 10_000  # the writer's own wal_autocheckpoint while the thread does the work


def checkpoint(location: str) -> int:
    """One passive checkpoint of the store at ``location`` on a connection of its own; the WAL
    frames now in the database file. Blocking: run it in a thread.

    A connection per call (a few per second): nothing is shared with the writer's connection,
    and nothing is left open when serve stops mid-call.
    """
    with contextlib.closing(sqlite3.connect(location, timeout=1.0)) as db:
        _busy, _frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(done)
