"""The embedded default store: one SQLite file (WAL), its indexes on disk, one writer process.

Nothing is loaded when the store opens, so opening costs the same at any size (it used to load
every alias, child, status fact, event key and output id: 1.7 s and 600 MB at 1M events). Lookups
go to SQLite's own indexes; what this process wrote since the last flush is looked up in the
write buffer first, and the buffer is flushed into the open transaction every few thousand rows,
so memory stays flat however long a replay is. Recently used children's histories are cached in
event-time order (a bounded LRU; a miss reads the history from one covering index, schema.sql),
and so are the answers of the two lookups every event makes (``child_of``, ``event_alias``;
bounded, forgotten by any write that could change them). Nothing is durable before ``commit``.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO

from fhir_engagement.errors import StoreError, StoreLockedError
from fhir_engagement.model import HistoryItem, StatusFact
from fhir_engagement.store.base import (
    Access,
    AppointmentCount,
    ChildRecord,
    ChildSignal,
    InboxRow,
    OutputRow,
    ServerPatient,
    SignalRow,
    SituationRow,
    StoreHealth,
)
from fhir_engagement.store.rows import from_text, hour_of, opt_text, period, remember, to_text
from fhir_engagement.store.sqlbase import HISTORIES, SqlStore

__all__ = ["SqliteStore"]

_FLUSH_ROWS = 4096  # buffered rows before they go into the open transaction (memory stays flat)
_IN_LIST = 500  # names per prefetch query
_SIGNAL_COLUMNS = ("event_key, signal, child, occurred, service, provider, band, situation, asked, "
                   "retracted, version, origin")





def _hold_lock(path: Path, location: str) -> IO[bytes]:
    """An exclusive, non-blocking lock on ``path``, held as long as the file stays open."""
    handle = path.open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        holder = handle.read(20).decode("ascii", "replace").strip() or "another process"
        handle.close()
        raise StoreLockedError(
            f"the store {location} is in use by {holder}: one process writes a store at a "
            "time; stop it first (or send the work to the running serve)") from exc
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}".encode())
    handle.flush()
    return handle


@contextlib.contextmanager
def _private_files(location: str) -> Iterator[None]:
    """Files and folders made inside are the owner's alone (0600, 0700): the store holds children's
    NHS numbers and birth dates, not for another local user to read.

    A umask, because SQLite makes ``-wal`` and ``-shm`` itself (later ones take the database file's
    mode); only around the open, since it is process-wide. Files an older version left readable
    are tightened as well.
    """
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)
    if location != ":memory:":
        for path in (Path(location), *(Path(f"{location}{end}") for end in ("-wal", "-shm", ".lock"))):
            with contextlib.suppress(OSError):  # absent, or not ours to change: SQLite decides
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)


# Columns added after the first release, for store files made before them.
_ADDED_COLUMNS = (("inbox", "attempts", "INTEGER NOT NULL DEFAULT 0"),
                  ("inbox", "last_error", "TEXT"),
                  ("runs", "bundle", "TEXT"))  # replay Bundles: older runs owe none (NULL)


def _migrate(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class SqliteStore(SqlStore):
    """Store on a SQLite file; ``:memory:`` for a throwaway run.

    One writer per file: the in-memory indexes would go stale under a second writer (two
    processes alternating no-shows lowered escalations), so the store holds an exclusive lock on
    ``FILE.lock`` for its lifetime and a second writer gets StoreLockedError. ``exclusive=False``
    is for readers (reports), which write nothing the indexes cache (only audit rows).
    """

    def __init__(self, location: str, *, exclusive: bool = True) -> None:
        self.location = location
        self._lock: IO[bytes] | None = None
        try:
            with _private_files(location):
                if location != ":memory:":
                    Path(location).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    if exclusive:
                        self._lock = _hold_lock(Path(f"{location}.lock"), location)
                self._db = sqlite3.connect(location, timeout=10.0)
                self._db.execute("PRAGMA journal_mode=WAL")  # creates -wal and -shm
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: index updates of a big replay
            schema = resources.files("fhir_engagement.store").joinpath("schema.sql").read_text()
            self._db.executescript(schema)
            _migrate(self._db)
        except (sqlite3.Error, OSError) as exc:
            self._release()
            raise StoreError(f"cannot open the store at {location}: {exc}") from exc
        self._reset_caches()

    def _reset_caches(self) -> None:
        """Forget the write buffer and the caches: what is on disk is all there is."""
        self._history: OrderedDict[str, list[HistoryItem]] = OrderedDict()
        self._pending_signals: list[tuple[object, ...]] = []
        self._pending_signal_keys: set[str] = set()
        self._pending_signal_children: set[str] = set()
        self._pending_aliases: dict[str, str] = {}
        self._pending_event_aliases: dict[str, str] = {}
        self._pending_deliveries: list[tuple[str, str, int]] = []
        self._pending_items: list[tuple[str, str]] = []
        self._pending_births: dict[str, str | None] = {}
        self._pending_outputs: dict[str, tuple[OutputRow, int]] = {}
        self._flags: OrderedDict[str, OutputRow] = OrderedDict()  # recent Flags, parsed per event
        # Answers of the two lookups every event makes (two queries each, ~10 us): child_of is
        # forgotten whenever a child's names or birth date change (add_patient, merge_children),
        # event_alias's answers change only by add_event_aliases (the store's lock keeps other
        # writers out), and a rollback forgets both.
        self._child_answers: dict[str, ChildRecord | None] = {}
        self._event_answers: dict[str, str | None] = {}
        # Event keys the last prefetch found no signal for (signals are only added by add_signal,
        # which drops its key from here), so signals_of need not ask the file again.
        self._signals_absent: set[str] = set()
        self._seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM outputs")
        self._delivery_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM deliveries")
        # Most stores hold no status records: then no event asks for them (one query at open).
        self._any_status = self._exec("SELECT 1 FROM status LIMIT 1").fetchone() is not None

    # -- replicas: one process per file, so it always holds the lease -------------------------
    def hold_lease(self) -> bool:
        return True

    def release_lease(self) -> None:
        return None

    def defer_checkpoints(self, backstop_pages: int) -> None:
        """Serve: WAL checkpoints are made off the event loop (store/wal.py); this connection's
        commits checkpoint only when the WAL passes ``backstop_pages``."""
        if self.location != ":memory:":
            self._db.execute(f"PRAGMA wal_autocheckpoint={int(backstop_pages)}")

    def health(self) -> StoreHealth:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return StoreHealth("sqlite", False, f"cannot read the store ({type(exc).__name__})")
        return StoreHealth("sqlite", True)

    def _maybe_flush(self) -> None:
        """Into the open transaction (not a commit) once the buffer is a few thousand rows."""
        if self._buffered() >= _FLUSH_ROWS:
            self._flush()

    # -- lifecycle --------------------------------------------------------------------------
    def start_run(self, description: str) -> int:
        cur = self._exec("INSERT INTO runs (started, description) VALUES (?, ?)",
                         (to_text(datetime.now(UTC)), description))
        return int(cur.lastrowid or 0)

    def commit(self) -> None:
        self._flush()
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot commit to {self.location}: {exc}") from exc

    def rollback(self) -> None:
        """Forget every write since the last commit, in the file and in memory.

        Used when one item failed halfway: its partial writes must not be committed with the
        next item's. Costs a reload of the in-memory indexes, so only on failures.
        """
        try:
            self._db.rollback()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot roll back {self.location}: {exc}") from exc
        self._reset_caches()

    def close(self) -> None:
        self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the lock (so does the process dying)
            self._lock = None

    def _flush(self) -> None:
        try:
            if self._pending_aliases:
                self._db.executemany("INSERT OR IGNORE INTO aliases (alias, child) VALUES (?, ?)",
                                     self._pending_aliases.items())
                self._pending_aliases.clear()
            if self._pending_event_aliases:
                self._db.executemany("INSERT OR IGNORE INTO event_aliases (alias, event_key) "
                                     "VALUES (?, ?)", self._pending_event_aliases.items())
                self._pending_event_aliases.clear()
            if self._pending_births:
                self._db.executemany(
                    "INSERT OR REPLACE INTO children (child, birth_date) VALUES (?, ?)",
                    self._pending_births.items())
                self._pending_births.clear()
            if self._pending_deliveries:
                self._db.executemany("INSERT OR IGNORE INTO deliveries (batch, child, seq) "
                                     "VALUES (?, ?, ?)", self._pending_deliveries)
                self._db.executemany("INSERT OR IGNORE INTO delivery_items (batch, output_id) "
                                     "VALUES (?, ?)", self._pending_items)
                self._pending_deliveries.clear()
                self._pending_items.clear()
            if self._pending_signals:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO signals ({_SIGNAL_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)", self._pending_signals)
                self._pending_signals.clear()
                self._pending_signal_keys.clear()
                self._pending_signal_children.clear()
            if self._pending_outputs:
                self._db.executemany(
                    "INSERT OR REPLACE INTO outputs (id, kind, child, resource, run, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.id, r.kind, r.child, r.resource, run, seq)
                     for seq, (r, run) in enumerate(self._pending_outputs.values(), self._seq + 1)])
                self._seq += len(self._pending_outputs)
                self._pending_outputs.clear()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    def _exec(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    def _scalar(self, sql: str) -> int:
        return int(self._exec(sql).fetchone()[0])

    def _scalar_of(self, sql: str, params: Sequence[object]) -> int:
        row = self._exec(sql, params).fetchone()
        return int(row[0]) if row else 0

    # -- children and their status ----------------------------------------------------------
    def merge_children(self, old: str, into: str) -> None:
        """One child known twice (a record joined two histories): ``old``'s names, birth date,
        history and outputs become ``into``'s. Rare, so it writes through at once."""
        self._flush()
        self._child_answers.clear()
        birth = self._birth(old)
        self._exec("UPDATE aliases SET child = ? WHERE child = ?", (into, old))
        self._exec("INSERT OR REPLACE INTO aliases (alias, child) VALUES (?, ?)", (old, into))
        for table in ("signals", "outputs"):
            self._exec(f"UPDATE {table} SET child = ? WHERE child = ?", (into, old))
        self._exec("DELETE FROM children WHERE child = ?", (old,))
        self._pending_births[into] = self._birth(into) or birth
        # Both histories are read again, merged in event-time order, on next use.
        self._history.pop(old, None)
        self._history.pop(into, None)

    def add_status(self, fact: StatusFact) -> None:
        self._any_status = True
        self._exec(
            'INSERT OR REPLACE INTO status (key, patient, codes, start, "end", active) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            (fact.key, fact.patient, "\n".join(sorted(fact.codes)), opt_text(fact.start),
             opt_text(fact.end), int(fact.active)))

    def status_facts(self, child: str) -> list[StatusFact]:
        if not self._any_status:
            return []
        names = sorted(self.aliases_of(child) | {child})
        rows = self._exec('SELECT key, patient, codes, start, "end", active FROM status '
                          f"WHERE patient IN ({_marks(names)}) ORDER BY patient, rowid",
                          names).fetchall()
        return [StatusFact(key, patient, frozenset(codes.split("\n")),
                           start and from_text(start), end and from_text(end), bool(active))
                for key, patient, codes, start, end, active in rows]

    # -- event identity ---------------------------------------------------------------------
    def _exec_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    # -- signals: the history ---------------------------------------------------------------
    def signals_of(self, event_key: str) -> dict[str, SignalRow]:
        if event_key in self._pending_signal_keys:
            self._flush()
        elif event_key in self._signals_absent:
            return {}
        rows = self._exec(
            "SELECT signal, child, occurred, retracted, situation, version FROM signals "
            "WHERE event_key = ?", (event_key,)).fetchall()
        return {s: SignalRow(c, s, from_text(o), bool(r), sit, v) for s, c, o, r, sit, v in rows}

    def prefetch(self, event_keys: Collection[str], event_aliases: Collection[str],
                 patients: Collection[str]) -> None:
        """Read the next events' aliases and whether their keys have signals in one query per
        _IN_LIST names, instead of one per event each (a 20k replay asked ~40,000 times, nearly
        all answered "none"); the answers go where the per-event lookups look first."""
        wanted = [a for a in dict.fromkeys(event_aliases)
                  if a not in self._pending_event_aliases and a not in self._event_answers]
        found: dict[str, str] = {}
        for part in _parts(wanted):
            found.update(self._exec("SELECT alias, event_key FROM event_aliases "
                                    f"WHERE alias IN ({_marks(part)})", part).fetchall())
        for alias in wanted:
            remember(self._event_answers, alias, found.get(alias))
        keys = [k for k in dict.fromkeys(event_keys) if k not in self._pending_signal_keys]
        present: set[str] = set()
        for part in _parts(keys):
            present.update(k for (k,) in self._exec(
                f"SELECT DISTINCT event_key FROM signals WHERE event_key IN ({_marks(part)})",
                part))
        self._signals_absent = {k for k in keys if k not in present}

    def _child_history(self, child: str) -> list[HistoryItem]:
        items = self._history.get(child)
        if items is not None:
            self._history.move_to_end(child)
        else:
            if child in self._pending_signal_children:
                self._flush()
            rows = self._exec(
                "SELECT event_key, signal, occurred, service, provider, situation, asked "
                "FROM signals WHERE child = ? AND retracted = 0 AND band != 'adult' "
                "ORDER BY occurred, event_key", (child,)).fetchall()
            items = [
                HistoryItem(k, s, from_text(o), sv, p, sit, frozenset(filter(None, a.split(","))))
                for k, s, o, sv, p, sit, a in rows
            ]
            self._history[child] = items
            if len(self._history) > HISTORIES:
                self._history.popitem(last=False)  # least recently used: read again if needed
        return items

    def add_signal(
        self, child: str, item: HistoryItem, band: str, origin: str, version: str = ""
    ) -> None:
        # The history is read before the row is buffered: read after, it would hold it twice.
        history = self._child_history(child) if band != "adult" else None
        self._pending_signals.append(
            (item.event_key, item.signal, child, to_text(item.occurred), item.service,
             item.provider, band, item.situation, ",".join(sorted(item.asked)), version, origin))
        if history is not None:
            bisect.insort_right(history, item, key=lambda h: h.occurred)
        self._pending_signal_keys.add(item.event_key)
        self._signals_absent.discard(item.event_key)
        self._pending_signal_children.add(child)
        self._maybe_flush()

    def retract(self, event_key: str, signal: str) -> None:
        self._flush()
        row = self._exec("SELECT child FROM signals WHERE event_key = ? AND signal = ?",
                         (event_key, signal)).fetchone()
        self._exec("UPDATE signals SET retracted = 1 WHERE event_key = ? AND signal = ?",
                   (event_key, signal))
        if row and row[0] in self._history:
            self._history[row[0]] = [
                h for h in self._history[row[0]]
                if not (h.event_key == event_key and h.signal == signal)
            ]

    # -- outputs: the outbox ----------------------------------------------------------------
    def run_outputs(self, run: int) -> list[OutputRow]:
        self._flush()
        rows = self._exec("SELECT id, kind, child, resource FROM outputs WHERE run = ? ORDER BY seq",
                          (run,)).fetchall()
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in rows]

    # -- deliveries to the FHIR server ------------------------------------------------------
    def enqueue_delivery(self, batch: str, child: str, output_ids: Sequence[str]) -> None:
        """A decision's outputs, to be written together; the batch id is the decision's."""
        self._delivery_seq += 1
        self._pending_deliveries.append((batch, child, self._delivery_seq))
        self._pending_items.extend((batch, oid) for oid in output_ids)

    def due_deliveries(self, now: datetime, limit: int) -> list[tuple[str, int]]:
        self._flush()
        rows = self._exec(
            "SELECT batch, attempts FROM deliveries WHERE state = 'pending' AND next_attempt <= ? "
            "ORDER BY seq LIMIT ?", (to_text(now), limit)).fetchall()
        return [(b, int(a)) for b, a in rows]

    def delivery_outputs(self, batch: str) -> list[OutputRow]:
        self._flush()
        rows = self._exec(
            "SELECT o.id, o.kind, o.child, o.resource FROM delivery_items i "
            "JOIN outputs o ON o.id = i.output_id WHERE i.batch = ? ORDER BY o.seq",
            (batch,)).fetchall()
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in rows]

    # A batch may still be in the write buffer (queued since the last commit): each update of
    # one goes through _delivery_update, which flushes first, so it never silently changes nothing.
    def delivery_retry(self, batch: str, at: datetime, error: str) -> None:
        self._delivery_update("attempts = attempts + 1, next_attempt = ?, last_error = ?", batch,
                              to_text(at), error)

    def delivery_counts(self) -> dict[str, int]:
        self._flush()
        return dict(self._exec("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())

    # -- each target server's Patient for a child's identifier ----------------------------
    def set_server_patient(self, server: str, system: str, value: str,
                           answer: ServerPatient) -> None:
        self._exec("INSERT OR REPLACE INTO server_patients "
                   "(server, system, value, patient_id, checked) VALUES (?, ?, ?, ?, ?)",
                   (server, system, value, answer.patient_id, to_text(answer.checked)))

    # -- subscriptions and small facts -------------------------------------------------------
    def subscription_seen(self, subscription: str, kind: str, last_event: int | None) -> int:
        """Record a notification and set the last event number (None: keep it); returns the
        last event number seen before it (0: none). The caller decides what the new last is: a
        server whose numbering restarted goes back to small numbers."""
        row = self._exec("SELECT last_event FROM subscriptions WHERE subscription = ?",
                         (subscription,)).fetchone()
        before = int(row[0]) if row else 0
        self._exec(
            "INSERT INTO subscriptions (subscription, last_event, last_seen, last_type) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (subscription) DO UPDATE SET "
            "last_event = excluded.last_event, last_seen = excluded.last_seen, "
            "last_type = excluded.last_type",
            (subscription, before if last_event is None else last_event,
             to_text(datetime.now(UTC)), kind))
        return before

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- the inbox --------------------------------------------------------------------------
    def inbox_put(self, channel: str, sender: str, control_id: str, origin: str,
                  raw: bytes) -> bool:
        """Keep a received message; False when the sender already sent this control id."""
        cur = self._exec(
            "INSERT OR IGNORE INTO inbox (received, channel, sender, control_id, origin, raw) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (to_text(datetime.now(UTC)), channel, sender, control_id, origin, raw))
        return cur.rowcount == 1

    def inbox_pending(self, limit: int, channel: str = "mllp") -> list[tuple[int, str, bytes]]:
        rows = self._exec("SELECT id, origin, raw FROM inbox WHERE state = 'pending' "
                          "AND channel = ? ORDER BY id LIMIT ?", (channel, limit)).fetchall()
        return [(i, o, bytes(r)) for i, o, r in rows]

    def inbox_done(self, ids: Sequence[int]) -> None:
        self._exec_many("UPDATE inbox SET state = 'done' WHERE id = ?", [(i,) for i in ids])

    def inbox_set_state(self, item: int, state: str) -> bool:
        """pending (retry, attempts reset), quarantined or dropped; False if no such item."""
        cur = self._exec("UPDATE inbox SET state = ?, attempts = CASE WHEN ? = 'pending' THEN 0 "
                         "ELSE attempts END WHERE id = ?", (state, state, item))
        return cur.rowcount == 1

    def inbox_rows(self, states: Collection[str]) -> list[InboxRow]:
        """Items in these states, oldest first, without their content."""
        marks = ", ".join("?" * len(states))
        rows = self._exec(f"SELECT id, received, channel, origin, state, attempts, "
                          f"COALESCE(last_error, '') FROM inbox WHERE state IN ({marks}) "
                          "ORDER BY id", tuple(states)).fetchall()
        return [InboxRow(int(i), r, c, o, st, int(a), e) for i, r, c, o, st, a, e in rows]

    def inbox_depth(self) -> tuple[int, datetime | None]:
        """Pending messages and when the oldest of them arrived."""
        count, oldest = self._exec(
            "SELECT COUNT(*), MIN(received) FROM inbox WHERE state = 'pending'").fetchone()
        return int(count), from_text(oldest) if oldest else None

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(self, origin: str, reason: str, raw: bytes) -> None:
        self._exec("INSERT INTO dead_letters (received, origin, reason, raw) VALUES (?, ?, ?, ?)",
                   (to_text(datetime.now(UTC)), origin, reason, raw))

    def dead_letter_raw(self, letter: int) -> tuple[str, bytes] | None:
        row = self._exec("SELECT origin, raw FROM dead_letters WHERE id = ?", (letter,)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    # -- replay Bundles (replay.py): which runs' outputs were written to which --out file --------
    def claim_bundle(self, bundle: str, path: str, run: int) -> int:
        """Owe ``run``'s outputs a Bundle, then claim every owed run's outputs for ``bundle``;
        returns how many outputs it holds (read them with ``iter_outputs(bundle=...)``).

        Durable at the next ``commit``, with the run's outputs: a crash before it loses nothing."""
        self._flush()
        self._exec("UPDATE runs SET bundle = '' WHERE id = ?", (run,))
        self._exec("UPDATE runs SET bundle = ? WHERE bundle = ''", (bundle,))
        self._exec("INSERT INTO bundles (id, path) VALUES (?, ?)", (bundle, path))
        return self._scalar_of("SELECT COUNT(*) FROM outputs o JOIN runs r ON r.id = o.run "
                               "WHERE r.bundle = ?", (bundle,))

    def iter_outputs(
        self, *, run: int | None = None, bundle: str | None = None
    ) -> Iterator[OutputRow]:
        """A run's outputs, or a Bundle's, in Bundle order (Flags, Tasks, Provenance, each in
        decision order), read as they go: a region's year of outputs never sits in memory."""
        self._flush()
        if bundle is not None:
            where, param = "o.run IN (SELECT id FROM runs WHERE bundle = ?)", bundle
        else:
            where, param = "o.run = ?", run  # type: ignore[assignment]
        cursor = self._exec(
            f"SELECT o.id, o.kind, o.child, o.resource FROM outputs o WHERE {where} ORDER BY "
            "CASE o.kind WHEN 'Flag' THEN 0 WHEN 'Task' THEN 1 WHEN 'Provenance' THEN 2 ELSE 3 "
            "END, o.seq", (param,))
        try:
            for i, k, c, r in cursor:
                yield OutputRow(i, k, c, bytes(r))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    def unconfirmed_bundles(self) -> list[tuple[str, str]]:
        """Bundles claimed but not confirmed written (a crash in between): id and path."""
        rows = self._exec("SELECT id, path FROM bundles WHERE written = 0 ORDER BY rowid")
        return [(str(i), str(p)) for i, p in rows.fetchall()]
    # -- end of replay Bundles ------------------------------------------------------------------

    # -- reports: read-only, except the audit of who read a child's chronology ---------------
    # Each query flushes first: replay buffers its writes until commit. They run once per
    # report and aggregate in SQL, so no in-memory index is needed for them.
    def appointment_counts(
        self,
        counted: Collection[str],
        missed: Collection[str],
        exclude_prefixes: Collection[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        provider: str | None = None,
    ) -> list[AppointmentCount]:
        """One row per event key first (an event can carry several signals), then grouped."""
        self._flush()
        counted, missed = sorted(counted), sorted(missed)
        inner = ["retracted = 0", f"signal IN ({_marks(counted)})"]
        params: list[object] = [*missed, *counted]
        for prefix in exclude_prefixes:
            inner.append("substr(event_key, 1, ?) != ?")
            params += [len(prefix), prefix]
        outer, outer_params = period("occurred", start, end, "?")
        if provider is not None:
            outer.append("provider = ?")
            outer_params.append(provider)
        rows = self._exec(
            "SELECT provider, substr(occurred, 1, 13), adult, missed, COUNT(*) FROM ("
            "  SELECT MAX(provider) AS provider, MAX(occurred) AS occurred,"
            f"   MAX(band = 'adult') AS adult, MAX(signal IN ({_marks(missed)})) AS missed"
            f"  FROM signals WHERE {' AND '.join(inner)} GROUP BY event_key)"
            f" WHERE {' AND '.join(outer) or '1'} GROUP BY 1, 2, 3, 4",
            (*params, *outer_params)).fetchall()
        return [AppointmentCount(p, hour_of(h), bool(a), bool(m), n) for p, h, a, m, n in rows]

    def situation_rows(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[SituationRow]:
        self._flush()
        where, params = period("occurred", start, end, "?")
        where += ["retracted = 0", "band != 'adult'", "situation != ''"]
        # In rowid order, as a scan of the table gives (and PostgreSQL's copy of it): the
        # history index also holds these columns, and a scan of it would order them by child.
        rows = self._exec("SELECT child, situation, occurred FROM signals "
                          f"WHERE {' AND '.join(where)} ORDER BY rowid", params).fetchall()
        return [SituationRow(c, s, from_text(o)) for c, s, o in rows]

    def outputs_of_kind(self, kind: str) -> list[OutputRow]:
        self._flush()
        rows = self._exec("SELECT id, kind, child, resource FROM outputs WHERE kind = ? ORDER BY seq",
                          (kind,)).fetchall()
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in rows]

    def child_signals(self, child: str) -> list[ChildSignal]:
        """Under every name the child is known by: an event read before its Patient keeps the
        alias it came with."""
        self._flush()
        names = sorted(self.aliases_of(child) | {child})
        rows = self._exec(
            "SELECT event_key, signal, occurred, service, provider, band, situation, retracted "
            f"FROM signals WHERE child IN ({_marks(names)}) ORDER BY occurred, event_key, signal",
            names).fetchall()
        return [ChildSignal(k, s, from_text(o), sv, p, b, sit, bool(r))
                for k, s, o, sv, p, b, sit, r in rows]

    def child_outputs(self, child: str) -> list[OutputRow]:
        self._flush()
        names = sorted(self.aliases_of(child) | {child})
        rows = self._exec("SELECT id, kind, child, resource FROM outputs "
                          f"WHERE child IN ({_marks(names)}) ORDER BY seq", names).fetchall()
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in rows]

    def legacy_audit_key(self) -> bytes | None:
        """The audit key an earlier version kept in ``meta`` (None: none, or moved out).

        The key now lives outside the store (store/auditkey.py): a copy of the database must not
        carry the secret that makes its audit hashes unguessable."""
        self._flush()
        row = self._exec("SELECT value FROM meta WHERE key = 'audit_key'").fetchone()
        return bytes.fromhex(row[0]) if row else None

    def forget_legacy_audit_key(self) -> None:
        """Durable at the next ``commit``, once the key is safe in its new place."""
        self._exec("DELETE FROM meta WHERE key = 'audit_key'")

    def record_access(self, access: Access) -> None:
        """Durable at the next ``commit``: the caller commits before it shows anything."""
        self._exec("INSERT INTO audit (at, who, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                   (to_text(access.at), access.who, access.action, access.subject, access.detail))


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _parts(values: list[str]) -> Iterator[list[str]]:
    """Slices of at most _IN_LIST values: one IN (...) each, far below SQLite's variable limit."""
    for start in range(0, len(values), _IN_LIST):
        yield values[start:start + _IN_LIST]


