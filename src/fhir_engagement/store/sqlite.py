"""The embedded default store: one SQLite file (WAL), with each child's history cached in memory.

The cache is what keeps replay fast: a child's history is read from SQLite once, then kept in
event-time order as signals are added, so counting a pattern never queries the database.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from fhir_engagement.errors import StoreError
from fhir_engagement.model import HistoryItem, PatientFacts, StatusFact
from fhir_engagement.store.base import ChildRecord, OutputRow, SignalRow

__all__ = ["SqliteStore", "from_text", "to_text"]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that SQLite's text order is time order."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def from_text(text: str) -> datetime:
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)


def _opt(moment: datetime | None) -> str | None:
    return None if moment is None else to_text(moment)


class SqliteStore:
    """Store on a SQLite file; ``:memory:`` for a throwaway run."""

    def __init__(self, location: str) -> None:
        self.location = location
        try:
            if location != ":memory:":
                Path(location).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(location)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            schema = resources.files("fhir_engagement.store").joinpath("schema.sql").read_text()
            self._db.executescript(schema)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store at {location}: {exc}") from exc
        self._history: dict[str, list[HistoryItem]] = {}
        self._seq = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start_run(self, description: str) -> int:
        cur = self._exec("INSERT INTO runs (started, description) VALUES (?, ?)",
                         (to_text(datetime.now(UTC)), description))
        return int(cur.lastrowid or 0)

    def commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot commit to {self.location}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    # -- children and their status ----------------------------------------------------------
    def add_patient(self, facts: PatientFacts) -> None:
        """Record every alias; a child already known by any alias keeps its key."""
        known = [r.key for a in facts.aliases if (r := self.child_of(a)) is not None]
        fresh = f"nhs:{facts.nhs_number}" if facts.nhs_number else facts.aliases[0]
        child = known[0] if known else fresh
        for alias in (*facts.aliases, child):
            self._exec("INSERT OR IGNORE INTO aliases (alias, child) VALUES (?, ?)", (alias, child))
        if facts.birth_date:
            self._exec(
                "INSERT INTO children (child, birth_date) VALUES (?, ?) "
                "ON CONFLICT (child) DO UPDATE SET birth_date = excluded.birth_date",
                (child, facts.birth_date))
        else:
            self._exec("INSERT OR IGNORE INTO children (child) VALUES (?)", (child,))

    def child_of(self, alias: str) -> ChildRecord | None:
        row = self._exec(
            "SELECT a.child, c.birth_date FROM aliases a LEFT JOIN children c USING (child) "
            "WHERE a.alias = ?", (alias,)).fetchone()
        return ChildRecord(row[0], row[1]) if row else None

    def add_status(self, fact: StatusFact) -> None:
        self._exec(
            'INSERT OR REPLACE INTO status (key, patient, codes, start, "end", active) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            (fact.key, fact.patient, "\n".join(sorted(fact.codes)), _opt(fact.start),
             _opt(fact.end), int(fact.active)))

    def status_facts(self, child: str) -> list[StatusFact]:
        rows = self._exec(
            'SELECT s.key, s.patient, s.codes, s.start, s."end", s.active FROM status s '
            "JOIN aliases a ON a.alias = s.patient WHERE a.child = ? "
            'UNION SELECT key, patient, codes, start, "end", active FROM status WHERE patient = ?',
            (child, child)).fetchall()
        return [
            StatusFact(k, p, frozenset(c.split("\n")), s and from_text(s), e and from_text(e),
                       bool(a))
            for k, p, c, s, e, a in rows
        ]

    # -- signals: the history ---------------------------------------------------------------
    def signals_of(self, event_key: str) -> dict[str, SignalRow]:
        rows = self._exec(
            "SELECT signal, child, occurred, retracted, situation, version FROM signals "
            "WHERE event_key = ?", (event_key,)).fetchall()
        return {s: SignalRow(c, s, from_text(o), bool(r), sit, v) for s, c, o, r, sit, v in rows}

    def history_before(self, child: str, at: datetime) -> Sequence[HistoryItem]:
        items = self._child_history(child)
        cut = bisect.bisect_left(items, at, key=lambda h: h.occurred)
        return items[:cut]

    def _child_history(self, child: str) -> list[HistoryItem]:
        items = self._history.get(child)
        if items is None:
            rows = self._exec(
                "SELECT event_key, signal, occurred, service, provider, situation, asked "
                "FROM signals WHERE child = ? AND retracted = 0 ORDER BY occurred, event_key",
                (child,)).fetchall()
            items = [
                HistoryItem(k, s, from_text(o), sv, p, sit, frozenset(filter(None, a.split(","))))
                for k, s, o, sv, p, sit, a in rows
            ]
            self._history[child] = items
        return items

    def add_signal(
        self, child: str, item: HistoryItem, band: str, origin: str, version: str = ""
    ) -> None:
        self._exec(
            "INSERT OR REPLACE INTO signals (event_key, signal, child, occurred, service, "
            "provider, band, situation, asked, retracted, version, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (item.event_key, item.signal, child, to_text(item.occurred), item.service,
             item.provider, band, item.situation, ",".join(sorted(item.asked)), version, origin))
        if band != "adult":
            bisect.insort_right(self._child_history(child), item, key=lambda h: h.occurred)

    def retract(self, event_key: str, signal: str) -> None:
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
    def has_output(self, output_id: str) -> bool:
        return self._exec("SELECT 1 FROM outputs WHERE id = ?", (output_id,)).fetchone() is not None

    def output(self, output_id: str) -> OutputRow | None:
        row = self._exec("SELECT id, kind, child, resource FROM outputs WHERE id = ?",
                         (output_id,)).fetchone()
        return OutputRow(row[0], row[1], row[2], bytes(row[3])) if row else None

    def put_output(self, row: OutputRow, run: int) -> None:
        self._seq += 1
        self._exec(
            "INSERT OR REPLACE INTO outputs (id, kind, child, resource, run, seq) "
            "VALUES (?, ?, ?, ?, ?, ?)", (row.id, row.kind, row.child, row.resource, run, self._seq))

    def run_outputs(self, run: int) -> list[OutputRow]:
        rows = self._exec("SELECT id, kind, child, resource FROM outputs WHERE run = ? ORDER BY seq",
                          (run,)).fetchall()
        return [OutputRow(i, k, c, bytes(r)) for i, k, c, r in rows]

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(self, origin: str, reason: str, raw: bytes) -> None:
        self._exec("INSERT INTO dead_letters (received, origin, reason, raw) VALUES (?, ?, ?, ?)",
                   (to_text(datetime.now(UTC)), origin, reason, raw))

    def dead_letters(self) -> list[tuple[str, str, bytes]]:
        rows = self._exec("SELECT origin, reason, raw FROM dead_letters ORDER BY id").fetchall()
        return [(o, r, bytes(b)) for o, r, b in rows]
