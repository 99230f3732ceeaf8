"""The store on PostgreSQL, for several ``serve`` replicas on one database (issue 14).

psycopg 3, synchronous, one connection per store and no pool: the pipeline is synchronous, and
each process is one asyncio loop that calls the store between awaits, exactly as it calls
SqliteStore; a pool would hand that one caller connections it never uses at once. The semantics
are SqliteStore's: nothing is durable before ``commit``, dedupe is by UNIQUE constraints and
``ON CONFLICT`` (never read-then-write), and the bulk rows of a replay (signals, outputs, aliases,
deliveries) are buffered and sent with ``executemany`` (pipelined) at commit or every few thousand
rows. Tables and columns are those of schema.sql; times are the same ISO 8601 UTC text, so the
reports give the same answers on both.

A lost connection (the database restarted, the network failed) is a StoreError naming the store
without its password; the next call connects again, so a replica recovers without a restart.
What the lost transaction held is gone, and so is the lease (a session advisory lock). Read
caches are dropped whenever this store (re)takes the lease: another replica may have decided
meanwhile. Migrations (migrations/postgresql/NNNN_*.sql) are applied at open, under a
transaction advisory lock, so replicas starting together apply each file once.
"""

from __future__ import annotations

import bisect
import re
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fhir_engagement.errors import StoreError
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

__all__ = ["INBOX_CHANNEL", "Migration", "PostgresStore", "apply_migrations", "display_name",
           "migration_status", "migrations"]

# Advisory lock keys, (role, schema): one for the deciding lease, another for migrations (a
# replica applying them never waits for the lease holder). Advisory locks are per database, so
# the schema's hash is the second half: two deployments in two schemas of one database (as the
# tests are) never share a lease.
_LEASE_ROLE = 0x46454E4C  # "FENL"
_MIGRATION_ROLE = 0x46454E4D  # "FENM"
_KEY = "%s, hashtext(current_schema())"
INBOX_CHANNEL = "fhir_engagement_inbox"  # NOTIFY channel: payload is the inbox channel (mllp, fhir)
_HEALTH_TIMEOUT_MS = 1000  # /readyz asks often: a stuck database is "unreachable", not a hang
_CONNECT_TIMEOUT_S = 5
_FLUSH_ROWS = 4096
_ITER_ROWS = 2000  # rows per fetch of a server-side cursor (iter_outputs): memory stays flat
_SIGNAL_COLUMNS = ("event_key, signal, child, occurred, service, provider, band, situation, asked, "
                   "retracted, version, origin")
_KIND_ORDER = ("CASE o.kind WHEN 'Flag' THEN 0 WHEN 'Task' THEN 1 WHEN 'Provenance' THEN 2 ELSE 3 "
               "END, o.seq")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file of migrations/postgresql/."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The shipped migrations, oldest first (file names ``NNNN_what.sql``)."""
    folder = resources.files("fhir_engagement.store").joinpath("migrations/postgresql")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_\w+\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def display_name(location: str) -> str:
    """The DSN as it may be shown and logged: user, host, port and database, never a password."""
    try:
        info = conninfo_to_dict(location)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable DSN)"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


def _scrub(text: str, location: str) -> str:
    """An error message on one line (libpq's span several) without the password, should the
    driver quote the DSN."""
    text = " ".join(text.split())
    try:
        password = conninfo_to_dict(location).get("password")
    except psycopg.ProgrammingError:
        password = None
    return text.replace(str(password), "***") if password else text


def _connect(location: str) -> psycopg.Connection[Any]:
    """A connection, or StoreError naming the store (never its password)."""
    try:
        given = conninfo_to_dict(location)
        conninfo = make_conninfo(location,
                                 connect_timeout=given.get("connect_timeout", _CONNECT_TIMEOUT_S),
                                 application_name=given.get("application_name", "fhir-engagement"))
        return psycopg.connect(conninfo, autocommit=False)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the store {display_name(location)}: "
                         f"{_scrub(str(exc).strip(), location)}") from exc


def _applied(db: psycopg.Connection[Any]) -> dict[int, str]:
    row = db.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return {}
    return {int(v): str(a) for v, a in db.execute("SELECT version, applied FROM schema_migrations")}


def _apply(db: psycopg.Connection[Any]) -> list[str]:
    """Apply what is pending in one transaction, under the migration lock; names applied."""
    with db.transaction():
        db.execute(f"SELECT pg_advisory_xact_lock({_KEY})", (_MIGRATION_ROLE,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                   "(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
        done = _applied(db)
        applied = []
        for migration in migrations():
            if migration.version not in done:
                db.execute(migration.sql.encode())  # no parameters: the file is run as written
                db.execute("INSERT INTO schema_migrations (version, applied) VALUES (%s, %s)",
                           (migration.version, to_text(datetime.now(UTC))))
                applied.append(migration.name)
    return applied


def apply_migrations(location: str) -> list[str]:
    """``store migrate``: apply the pending migrations; returns the files applied (oldest first)."""
    db = _connect(location)
    try:
        return _apply(db)
    except psycopg.Error as exc:
        raise StoreError(f"cannot migrate the store {display_name(location)}: "
                         f"{_scrub(str(exc).strip(), location)}") from exc
    finally:
        db.close()


def migration_status(location: str) -> tuple[int, list[str], dict[str, int] | None]:
    """``store status``: the current version, pending files, and queue counts (None before 0001).

    Reads only: a status never migrates."""
    db = _connect(location)
    try:
        done = _applied(db)
        pending = [m.name for m in migrations() if m.version not in done]
        counts = None
        if done:
            counts = {name: int(db.execute(sql).fetchone()[0]) for name, sql in (  # type: ignore[index]
                ("inbox pending", "SELECT COUNT(*) FROM inbox WHERE state = 'pending'"),
                ("deliveries pending", "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"),
                ("dead letters", "SELECT COUNT(*) FROM dead_letters"))}
        return max(done, default=0), pending, counts
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the store {display_name(location)}: "
                         f"{_scrub(str(exc).strip(), location)}") from exc
    finally:
        db.close()


class PostgresStore(SqlStore):
    """Store on a PostgreSQL database (``postgresql://`` or ``postgres://`` DSN).

    Many processes share one database, so there is no file lock (SqliteStore's ``exclusive``):
    ``exclusive`` is accepted and ignored. The deciding replica is the lease holder
    (``hold_lease``); the others only accept input.
    """

    def __init__(self, location: str, *, exclusive: bool = True) -> None:
        del exclusive  # readers and writers share the database: no file lock to take
        self.location = location
        self.name = display_name(location)
        self._conn: psycopg.Connection[Any] | None = None
        self._lease = False
        self._cursors = 0
        db = self._db()
        try:
            _apply(db)
        except psycopg.Error as exc:
            self._lost(exc)
            raise StoreError(f"cannot migrate the store {self.name}: "
                             f"{_scrub(str(exc).strip(), location)}") from exc
        self._reset_caches()

    # -- the connection ---------------------------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        """The open connection, connecting again (lazily) after one was lost."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = _connect(self.location)
            self._lease = False
            if hasattr(self, "_history"):
                self._reset_caches()  # the lost transaction took the buffer's rows with it
        return conn

    def _lost(self, exc: BaseException) -> None:
        """After an error: a broken connection is dropped (the next call reconnects)."""
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed
                                 or isinstance(exc, psycopg.OperationalError)):
            conn.close()
            self._conn = None
            self._lease = False

    def _error(self, exc: psycopg.Error) -> StoreError:
        self._lost(exc)
        return StoreError(f"{self.name}: {_scrub(str(exc).strip(), self.location)}")

    def _exec(self, sql: str, params: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        """Run one statement; the shared half's ``?`` placeholders become psycopg's ``%s`` (no
        statement of ours has a ``?`` of its own)."""
        try:
            return self._db().execute(sql.replace("?", "%s"), params)
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def _exec_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        try:
            with self._db().cursor() as cur:
                cur.executemany(sql, rows)
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def _scalar_of(self, sql: str, params: Sequence[object] = ()) -> int:
        row = self._exec(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _aside(self, sql: str, params: Sequence[object] = (), *,
               timeout_ms: int | None = None) -> tuple[Any, ...] | None:
        """A statement outside the caller's writes (lease, health): when no transaction is
        open it runs in its own, committed at once, so an idle replica is never left
        "idle in transaction"; inside one it just runs (its writes are the caller's)."""
        db = self._db()
        idle = db.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            if idle and timeout_ms is not None:
                db.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            row = db.execute(sql, params).fetchone()
            if idle:
                db.commit()
            return row
        except psycopg.Error as exc:
            if idle and not db.closed and not db.broken:
                db.rollback()
            raise self._error(exc) from exc

    # -- replicas ---------------------------------------------------------------------------
    def hold_lease(self) -> bool:
        """True if this session holds the deciding lease (taking it if free)."""
        if self._lease:
            self._aside("SELECT 1")  # still connected? A lost connection lost the lease
            return self._lease
        row = self._aside(f"SELECT pg_try_advisory_lock({_KEY})", (_LEASE_ROLE,))
        if row and row[0]:
            self._flush()
            self._reset_caches()  # another replica decided while this one did not hold it
            self._lease = True
        return self._lease

    def release_lease(self) -> None:
        if self._lease and self._conn is not None and not self._conn.closed:
            self._aside(f"SELECT pg_advisory_unlock({_KEY})", (_LEASE_ROLE,))
        self._lease = False

    def health(self) -> StoreHealth:
        """Reachable, and the replay lag when the server is a standby (None on a primary)."""
        try:
            row = self._aside(
                "SELECT pg_is_in_recovery(), "
                "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())",
                timeout_ms=_HEALTH_TIMEOUT_MS)
        except StoreError as exc:
            return StoreHealth("postgresql", False, str(exc))
        standby, lag = (row or (False, None))
        return StoreHealth("postgresql", True, "",
                           float(lag) if standby and lag is not None else None)

    # -- lifecycle --------------------------------------------------------------------------
    def _reset_caches(self) -> None:
        """Forget the write buffer and the caches: what the database holds is all there is."""
        self._history: OrderedDict[str, list[HistoryItem]] = OrderedDict()
        self._pending_signals: list[tuple[object, ...]] = []
        self._pending_signal_keys: set[str] = set()
        self._pending_signal_children: set[str] = set()
        self._pending_aliases: dict[str, str] = {}
        self._pending_event_aliases: dict[str, str] = {}
        self._pending_deliveries: list[tuple[str, str]] = []
        self._pending_items: list[tuple[str, str]] = []
        self._pending_births: dict[str, str | None] = {}
        self._pending_outputs: dict[str, tuple[OutputRow, int]] = {}
        self._flags: OrderedDict[str, OutputRow] = OrderedDict()
        self._child_answers: dict[str, ChildRecord | None] = {}
        self._event_answers: dict[str, str | None] = {}
        self._signals_ahead: dict[str, dict[str, SignalRow]] = {}  # prefetch: each read once
        self._any_status: bool | None = None  # asked of the database once, on first need

    def start_run(self, description: str) -> int:
        return self._scalar_of("INSERT INTO runs (started, description) VALUES (%s, %s) "
                               "RETURNING id", (to_text(datetime.now(UTC)), description))

    def commit(self) -> None:
        self._flush()
        try:
            self._db().commit()
        except psycopg.Error as exc:
            self._lost(exc)
            raise StoreError(f"cannot commit to {self.name}: "
                             f"{_scrub(str(exc).strip(), self.location)}") from exc

    def rollback(self) -> None:
        """Forget every write since the last commit, in the database and in memory."""
        conn = self._conn
        try:
            if conn is not None and not conn.closed:
                conn.rollback()
        except psycopg.Error as exc:
            self._lost(exc)  # nothing to keep either way: the next call reconnects
        self._reset_caches()

    def close(self) -> None:
        """Closing the session also frees the lease (the server drops session locks)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._lease = False

    def _maybe_flush(self) -> None:
        if self._buffered() >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """The write buffer into the open transaction (not a commit)."""
        if self._pending_aliases:
            self._exec_many("INSERT INTO aliases (alias, child) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", list(self._pending_aliases.items()))
            self._pending_aliases.clear()
        if self._pending_event_aliases:
            self._exec_many("INSERT INTO event_aliases (alias, event_key) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", list(self._pending_event_aliases.items()))
            self._pending_event_aliases.clear()
        if self._pending_births:
            self._exec_many("INSERT INTO children (child, birth_date) VALUES (%s, %s) "
                            "ON CONFLICT (child) DO UPDATE SET birth_date = EXCLUDED.birth_date",
                            list(self._pending_births.items()))
            self._pending_births.clear()
        if self._pending_deliveries:
            first = self._scalar_of("SELECT COALESCE(MAX(seq), 0) FROM deliveries") + 1
            self._exec_many("INSERT INTO deliveries (batch, child, seq) VALUES (%s, %s, %s) "
                            "ON CONFLICT DO NOTHING",
                            [(b, c, s) for s, (b, c) in enumerate(self._pending_deliveries, first)])
            self._exec_many("INSERT INTO delivery_items (batch, output_id) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", self._pending_items)
            self._pending_deliveries.clear()
            self._pending_items.clear()
        if self._pending_signals:
            self._exec_many(
                f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s) ON CONFLICT (event_key, signal) "
                "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in _SIGNAL_COLUMNS.split(", ")
                                             if c not in ("event_key", "signal")),
                self._pending_signals)
            self._pending_signals.clear()
            self._pending_signal_keys.clear()
            self._pending_signal_children.clear()
        if self._pending_outputs:
            first = self._scalar_of("SELECT COALESCE(MAX(seq), 0) FROM outputs") + 1
            self._exec_many(
                "INSERT INTO outputs (id, kind, child, resource, run, seq) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "kind = EXCLUDED.kind, child = EXCLUDED.child, resource = EXCLUDED.resource, "
                "run = EXCLUDED.run, seq = EXCLUDED.seq",
                [(r.id, r.kind, r.child, r.resource, run, seq)
                 for seq, (r, run) in enumerate(self._pending_outputs.values(), first)])
            self._pending_outputs.clear()

    # -- children and their status ----------------------------------------------------------
    def merge_children(self, old: str, into: str) -> None:
        """One child known twice: ``old``'s names, birth date, history and outputs become
        ``into``'s. Rare, so it writes through at once."""
        self._flush()
        self._child_answers.clear()
        self._signals_ahead.clear()  # their rows name ``old``
        birth = self._birth(old)
        self._exec("UPDATE aliases SET child = %s WHERE child = %s", (into, old))
        self._exec("INSERT INTO aliases (alias, child) VALUES (%s, %s) "
                   "ON CONFLICT (alias) DO UPDATE SET child = EXCLUDED.child", (old, into))
        for table in ("signals", "outputs"):
            self._exec(f"UPDATE {table} SET child = %s WHERE child = %s", (into, old))
        self._exec("DELETE FROM children WHERE child = %s", (old,))
        self._pending_births[into] = self._birth(into) or birth
        self._history.pop(old, None)
        self._history.pop(into, None)

    def add_status(self, fact: StatusFact) -> None:
        self._any_status = True
        self._exec(
            'INSERT INTO status (key, patient, codes, start, "end", active) '
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
            'patient = EXCLUDED.patient, codes = EXCLUDED.codes, start = EXCLUDED.start, '
            '"end" = EXCLUDED."end", active = EXCLUDED.active, ord = DEFAULT',
            (fact.key, fact.patient, "\n".join(sorted(fact.codes)), opt_text(fact.start),
             opt_text(fact.end), int(fact.active)))

    def status_facts(self, child: str) -> list[StatusFact]:
        if self._any_status is None:
            self._any_status = self._exec("SELECT 1 FROM status LIMIT 1").fetchone() is not None
        if not self._any_status:
            return []
        names = sorted(self.aliases_of(child) | {child})
        rows = self._exec('SELECT key, patient, codes, start, "end", active FROM status '
                          "WHERE patient = ANY(%s) ORDER BY patient, ord", (names,)).fetchall()
        return [StatusFact(key, patient, frozenset(codes.split("\n")),
                           start and from_text(start), end and from_text(end), bool(active))
                for key, patient, codes, start, end, active in rows]

    # -- event identity ---------------------------------------------------------------------
    # -- signals: the history ---------------------------------------------------------------
    def signals_of(self, event_key: str) -> dict[str, SignalRow]:
        if event_key in self._pending_signal_keys:
            self._flush()
        elif (ahead := self._signals_ahead.pop(event_key, None)) is not None:
            return ahead
        rows = self._exec(
            "SELECT signal, child, occurred, retracted, situation, version FROM signals "
            "WHERE event_key = %s", (event_key,)).fetchall()
        return {s: SignalRow(c, s, from_text(o), bool(r), sit, v) for s, c, o, r, sit, v in rows}

    def prefetch(self, event_keys: Collection[str], event_aliases: Collection[str],
                 patients: Collection[str]) -> None:
        """Read ahead, in three queries, what a replay's next events will ask one at a time.

        A round trip costs ~0.25 ms here against ~10 us for SQLite: three of them per event
        (event alias, signals, child) were most of a replay into PostgreSQL (1,274 events/s
        against SQLite's 4,215 on 10k events). The answers are as good as the database's while
        this store is the one writer: only the lease holder decides, and the caches are dropped
        whenever it (re)takes the lease or rolls back.
        """
        self._flush()
        keys = sorted(set(event_keys) - self._signals_ahead.keys())
        ahead: dict[str, dict[str, SignalRow]] = {key: {} for key in keys}
        for key, signal, child, occurred, retracted, situation, version in self._exec(
                "SELECT event_key, signal, child, occurred, retracted, situation, version "
                "FROM signals WHERE event_key = ANY(%s)", (keys,)).fetchall():
            ahead[key][signal] = SignalRow(child, signal, from_text(occurred), bool(retracted),
                                           situation, version)
        self._signals_ahead.update(ahead)
        self._aliases_ahead(sorted(set(event_aliases) - self._event_answers.keys()))
        self._children_ahead(sorted(set(patients) - self._child_answers.keys()))

    def _aliases_ahead(self, aliases: list[str]) -> None:
        found = dict(self._exec("SELECT alias, event_key FROM event_aliases WHERE alias = ANY(%s)",
                                (aliases,)).fetchall())
        for alias in aliases:
            remember(self._event_answers, alias, found.get(alias))

    def _children_ahead(self, patients: list[str]) -> None:
        found = {alias: ChildRecord(child, birth) for alias, child, birth in self._exec(
            "SELECT a.alias, a.child, c.birth_date FROM aliases a "
            "LEFT JOIN children c ON c.child = a.child WHERE a.alias = ANY(%s)",
            (patients,)).fetchall()}
        for alias in patients:
            remember(self._child_answers, alias, found.get(alias))

    def _child_history(self, child: str) -> list[HistoryItem]:
        items = self._history.get(child)
        if items is not None:
            self._history.move_to_end(child)
            return items
        if child in self._pending_signal_children:
            self._flush()
        rows = self._exec(
            "SELECT event_key, signal, occurred, service, provider, situation, asked "
            "FROM signals WHERE child = %s AND retracted = 0 AND band != 'adult' "
            "ORDER BY occurred, event_key", (child,)).fetchall()
        items = [HistoryItem(k, s, from_text(o), sv, p, sit, frozenset(filter(None, a.split(","))))
                 for k, s, o, sv, p, sit, a in rows]
        self._history[child] = items
        if len(self._history) > HISTORIES:
            self._history.popitem(last=False)
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
        self._signals_ahead.pop(item.event_key, None)
        self._pending_signal_children.add(child)
        self._maybe_flush()

    def retract(self, event_key: str, signal: str) -> None:
        self._flush()
        self._signals_ahead.pop(event_key, None)
        row = self._exec("UPDATE signals SET retracted = 1 WHERE event_key = %s AND signal = %s "
                         "RETURNING child", (event_key, signal)).fetchone()
        if row and row[0] in self._history:
            self._history[row[0]] = [
                h for h in self._history[row[0]]
                if not (h.event_key == event_key and h.signal == signal)
            ]

    # -- outputs ----------------------------------------------------------------------------
    def run_outputs(self, run: int) -> list[OutputRow]:
        self._flush()
        return self._output_rows("SELECT id, kind, child, resource FROM outputs WHERE run = %s "
                                 "ORDER BY seq", (run,))

    def _output_rows(self, sql: str, params: Sequence[object]) -> list[OutputRow]:
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in self._exec(sql, params).fetchall()]

    def iter_outputs(
        self, *, run: int | None = None, bundle: str | None = None
    ) -> Iterator[OutputRow]:
        """A run's outputs, or a Bundle's, in Bundle order, read through a server-side cursor
        (a region's year of outputs never sits in memory)."""
        self._flush()
        if bundle is not None:
            where, param = "o.run IN (SELECT id FROM runs WHERE bundle = %s)", bundle
        else:
            where, param = "o.run = %s", run  # type: ignore[assignment]
        try:
            self._cursors += 1  # a unique name: an abandoned iterator's cursor may still be open
            with self._db().cursor(name=f"fhir_engagement_outputs_{self._cursors}") as cursor:
                cursor.itersize = _ITER_ROWS
                cursor.execute(f"SELECT o.id, o.kind, o.child, o.resource FROM outputs o "
                               f"WHERE {where} ORDER BY {_KIND_ORDER}", (param,))
                for i, k, c, r in cursor:
                    yield OutputRow(i, k, c, bytes(r))
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    # -- deliveries to the FHIR server ------------------------------------------------------
    def enqueue_delivery(self, batch: str, child: str, output_ids: Sequence[str]) -> None:
        """A decision's outputs, to be written together; its seq is given at flush (MAX + 1)."""
        self._pending_deliveries.append((batch, child))
        self._pending_items.extend((batch, oid) for oid in output_ids)

    def due_deliveries(self, now: datetime, limit: int) -> list[tuple[str, int]]:
        self._flush()
        rows = self._exec(
            "SELECT batch, attempts FROM deliveries WHERE state = 'pending' "
            "AND next_attempt <= %s ORDER BY seq LIMIT %s", (to_text(now), limit)).fetchall()
        return [(b, int(a)) for b, a in rows]

    def delivery_outputs(self, batch: str) -> list[OutputRow]:
        self._flush()
        return self._output_rows(
            "SELECT o.id, o.kind, o.child, o.resource FROM delivery_items i "
            "JOIN outputs o ON o.id = i.output_id WHERE i.batch = %s ORDER BY o.seq", (batch,))

    def delivery_retry(self, batch: str, at: datetime, error: str) -> None:
        self._delivery_update("attempts = attempts + 1, next_attempt = %s, last_error = %s",
                              batch, to_text(at), error)

    def delivery_counts(self) -> dict[str, int]:
        self._flush()
        rows = self._exec("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    # -- each target server's Patient for a child's identifier ----------------------------
    def set_server_patient(self, server: str, system: str, value: str,
                           answer: ServerPatient) -> None:
        self._exec("INSERT INTO server_patients (server, system, value, patient_id, checked) "
                   "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (server, system, value) DO UPDATE "
                   "SET patient_id = EXCLUDED.patient_id, checked = EXCLUDED.checked",
                   (server, system, value, answer.patient_id, to_text(answer.checked)))

    # -- subscriptions and small facts -------------------------------------------------------
    def subscription_seen(self, subscription: str, kind: str, last_event: int | None) -> int:
        """Record a notification and set the last event number (None: keep it); returns the
        last event number seen before it (0: none)."""
        before = self._scalar_of("SELECT last_event FROM subscriptions WHERE subscription = %s",
                                 (subscription,))
        self._exec(
            "INSERT INTO subscriptions (subscription, last_event, last_seen, last_type) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (subscription) DO UPDATE SET "
            "last_event = EXCLUDED.last_event, last_seen = EXCLUDED.last_seen, "
            "last_type = EXCLUDED.last_type",
            (subscription, before if last_event is None else last_event,
             to_text(datetime.now(UTC)), kind))
        return before

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT INTO meta (key, value) VALUES (%s, %s) "
                   "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    # -- the inbox --------------------------------------------------------------------------
    def inbox_put(self, channel: str, sender: str, control_id: str, origin: str,
                  raw: bytes) -> bool:
        """Keep a received message; False when the sender already sent this control id.

        A new one also notifies INBOX_CHANNEL in the same transaction: the lease holder's
        listener is woken when it commits, not before."""
        cur = self._exec(
            "INSERT INTO inbox (received, channel, sender, control_id, origin, raw) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (channel, sender, control_id) DO NOTHING",
            (to_text(datetime.now(UTC)), channel, sender, control_id, origin, raw))
        if cur.rowcount != 1:
            return False
        self._exec("SELECT pg_notify(%s, %s)", (INBOX_CHANNEL, channel))
        return True

    def inbox_pending(self, limit: int, channel: str = "mllp") -> list[tuple[int, str, bytes]]:
        rows = self._exec("SELECT id, origin, raw FROM inbox WHERE state = 'pending' "
                          "AND channel = %s ORDER BY id LIMIT %s", (channel, limit)).fetchall()
        return [(int(i), o, bytes(r)) for i, o, r in rows]

    def inbox_done(self, ids: Sequence[int]) -> None:
        if ids:
            self._exec("UPDATE inbox SET state = 'done' WHERE id = ANY(%s)", (list(ids),))

    def inbox_set_state(self, item: int, state: str) -> bool:
        """pending (retry, attempts reset), quarantined or dropped; False if no such item."""
        cur = self._exec("UPDATE inbox SET state = %s, attempts = CASE WHEN %s = 'pending' "
                         "THEN 0 ELSE attempts END WHERE id = %s", (state, state, item))
        return cur.rowcount == 1

    def inbox_rows(self, states: Collection[str]) -> list[InboxRow]:
        """Items in these states, oldest first, without their content."""
        rows = self._exec("SELECT id, received, channel, origin, state, attempts, "
                          "COALESCE(last_error, '') FROM inbox WHERE state = ANY(%s) ORDER BY id",
                          (list(states),)).fetchall()
        return [InboxRow(int(i), r, c, o, st, int(a), e) for i, r, c, o, st, a, e in rows]

    def inbox_depth(self) -> tuple[int, datetime | None]:
        """Pending messages and when the oldest of them arrived."""
        count, oldest = self._exec(
            "SELECT COUNT(*), MIN(received) FROM inbox WHERE state = 'pending'").fetchone() or (0, None)
        return int(count), from_text(oldest) if oldest else None

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(self, origin: str, reason: str, raw: bytes) -> None:
        self._exec("INSERT INTO dead_letters (received, origin, reason, raw) "
                   "VALUES (%s, %s, %s, %s)", (to_text(datetime.now(UTC)), origin, reason, raw))

    def dead_letter_raw(self, letter: int) -> tuple[str, bytes] | None:
        row = self._exec("SELECT origin, raw FROM dead_letters WHERE id = %s",
                         (letter,)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    # -- replay Bundles (replay.py) -----------------------------------------------------------
    def claim_bundle(self, bundle: str, path: str, run: int) -> int:
        """Owe ``run``'s outputs a Bundle, then claim every owed run's outputs for ``bundle``;
        returns how many outputs it holds. Durable at the next ``commit``."""
        self._flush()
        self._exec("UPDATE runs SET bundle = '' WHERE id = %s", (run,))
        self._exec("UPDATE runs SET bundle = %s WHERE bundle = ''", (bundle,))
        self._exec("INSERT INTO bundles (id, path) VALUES (%s, %s)", (bundle, path))
        return self._scalar_of("SELECT COUNT(*) FROM outputs o JOIN runs r ON r.id = o.run "
                               "WHERE r.bundle = %s", (bundle,))

    def unconfirmed_bundles(self) -> list[tuple[str, str]]:
        rows = self._exec("SELECT id, path FROM bundles WHERE written = 0 ORDER BY ord")
        return [(str(i), str(p)) for i, p in rows.fetchall()]

    # -- reports: the same SQL as SqliteStore's, in PostgreSQL's words ---------------------------
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
        inner = ["retracted = 0", "signal = ANY(%s)"]
        params: list[object] = [sorted(missed), sorted(counted)]
        for prefix in exclude_prefixes:
            inner.append("substr(event_key, 1, %s) != %s")
            params += [len(prefix), prefix]
        outer, outer_params = period("occurred", start, end, "%s")
        if provider is not None:
            outer.append("provider = %s")
            outer_params.append(provider)
        rows = self._exec(
            "SELECT provider, substr(occurred, 1, 13), adult, missed, COUNT(*) FROM ("
            "  SELECT MAX(provider) AS provider, MAX(occurred) AS occurred,"
            "   bool_or(band = 'adult') AS adult, bool_or(signal = ANY(%s)) AS missed"
            f"  FROM signals WHERE {' AND '.join(inner)} GROUP BY event_key) AS e"
            f" WHERE {' AND '.join(outer) or 'TRUE'} GROUP BY 1, 2, 3, 4",
            (*params, *outer_params)).fetchall()
        return [AppointmentCount(p, hour_of(h), bool(a), bool(m), int(n)) for p, h, a, m, n in rows]

    def situation_rows(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[SituationRow]:
        self._flush()
        where, params = period("occurred", start, end, "%s")
        where += ["retracted = 0", "band != 'adult'", "situation != ''"]
        rows = self._exec("SELECT child, situation, occurred FROM signals "
                          f"WHERE {' AND '.join(where)}", params).fetchall()
        return [SituationRow(c, s, from_text(o)) for c, s, o in rows]

    def outputs_of_kind(self, kind: str) -> list[OutputRow]:
        self._flush()
        return self._output_rows("SELECT id, kind, child, resource FROM outputs WHERE kind = %s "
                                 "ORDER BY seq", (kind,))

    def child_signals(self, child: str) -> list[ChildSignal]:
        """Under every name the child is known by."""
        self._flush()
        names = sorted(self.aliases_of(child) | {child})
        rows = self._exec(
            "SELECT event_key, signal, occurred, service, provider, band, situation, retracted "
            "FROM signals WHERE child = ANY(%s) ORDER BY occurred, event_key, signal",
            (names,)).fetchall()
        return [ChildSignal(k, s, from_text(o), sv, p, b, sit, bool(r))
                for k, s, o, sv, p, b, sit, r in rows]

    def child_outputs(self, child: str) -> list[OutputRow]:
        self._flush()
        names = sorted(self.aliases_of(child) | {child})
        return self._output_rows("SELECT id, kind, child, resource FROM outputs "
                                 "WHERE child = ANY(%s) ORDER BY seq", (names,))

    def legacy_audit_key(self) -> bytes | None:
        """The audit key an earlier version kept in ``meta`` (a store copied from SQLite)."""
        self._flush()
        row = self._exec("SELECT value FROM meta WHERE key = 'audit_key'").fetchone()
        return bytes.fromhex(row[0]) if row else None

    def forget_legacy_audit_key(self) -> None:
        self._exec("DELETE FROM meta WHERE key = 'audit_key'")

    def record_access(self, access: Access) -> None:
        self._exec("INSERT INTO audit (at, who, action, subject, detail) "
                   "VALUES (%s, %s, %s, %s, %s)",
                   (to_text(access.at), access.who, access.action, access.subject, access.detail))



