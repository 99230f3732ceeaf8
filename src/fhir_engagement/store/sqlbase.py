"""What SqliteStore and PostgresStore do with the same SQL: lookups through the write buffer and
the caches, and the plain reads and updates of each role.

Each store keeps what differs: its connection, its flush and its dialect's statements (upserts,
identity ids, NOTIFY, the lease). SQL here is written with ``?`` placeholders, sqlite3's;
PostgresStore's ``_exec`` turns them into psycopg's ``%s``. The attributes below are each store's
write buffer and caches, made by its ``_reset_caches``.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fhir_engagement.model import HistoryItem, PatientFacts
from fhir_engagement.store.base import Access, ChildRecord, OutputRow, ServerPatient
from fhir_engagement.store.rows import from_text, remember

__all__ = ["SqlStore"]

HISTORIES = 16384  # children's histories (and Flags) cached, least recently used dropped first


class SqlStore:
    """The shared half of the two SQL stores (not a store on its own)."""

    _pending_aliases: dict[str, str]
    _pending_births: dict[str, str | None]
    _pending_event_aliases: dict[str, str]
    _pending_outputs: dict[str, tuple[OutputRow, int]]
    _pending_signals: list[tuple[object, ...]]
    _pending_items: list[tuple[str, str]]
    _child_answers: dict[str, ChildRecord | None]
    _event_answers: dict[str, str | None]
    _flags: OrderedDict[str, OutputRow]

    def _exec(self, sql: str, params: Sequence[object] = ()) -> Any:
        raise NotImplementedError

    def _scalar_of(self, sql: str, params: Sequence[object]) -> int:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def _maybe_flush(self) -> None:
        raise NotImplementedError

    def _child_history(self, child: str) -> list[HistoryItem]:
        raise NotImplementedError

    # -- children and their aliases ----------------------------------------------------
    def add_patient(self, facts: PatientFacts, child: str) -> None:
        """File every alias of ``facts`` under ``child`` (identity.py chose it, merging first)."""
        self._child_answers.clear()
        for alias in (*facts.aliases, child):
            if self._child_key(alias) is None:
                self._pending_aliases[alias] = child
        if facts.birth_date or not self._known_child(child):
            self._pending_births[child] = facts.birth_date or self._birth(child)
        self._maybe_flush()

    def _child_key(self, alias: str) -> str | None:
        child = self._pending_aliases.get(alias)
        if child is None:
            row = self._exec("SELECT child FROM aliases WHERE alias = ?", (alias,)).fetchone()
            child = row[0] if row else None
        return child

    def _known_child(self, child: str) -> bool:
        return child in self._pending_births or self._exec(
            "SELECT 1 FROM children WHERE child = ?", (child,)).fetchone() is not None

    def _birth(self, child: str) -> str | None:
        if child in self._pending_births:
            return self._pending_births[child]
        row = self._exec("SELECT birth_date FROM children WHERE child = ?", (child,)).fetchone()
        return row[0] if row else None

    def aliases_of(self, child: str) -> frozenset[str]:
        if self._pending_aliases:
            self._flush()
        rows = self._exec("SELECT alias FROM aliases WHERE child = ?", (child,)).fetchall()
        return frozenset(a for (a,) in rows)

    def child_of(self, alias: str) -> ChildRecord | None:
        answers = self._child_answers
        if alias in answers:
            return answers[alias]
        child = self._child_key(alias)
        found = None if child is None else ChildRecord(child, self._birth(child))
        remember(answers, alias, found)
        return found

    # -- event identity and history ----------------------------------------------------
    def event_alias(self, alias: str) -> str | None:
        key = self._pending_event_aliases.get(alias)
        if key is None:
            answers = self._event_answers
            if alias in answers:
                return answers[alias]
            row = self._exec("SELECT event_key FROM event_aliases WHERE alias = ?",
                             (alias,)).fetchone()
            key = row[0] if row else None
            remember(answers, alias, key)
        return key

    def add_event_aliases(self, aliases: Sequence[str], event_key: str) -> None:
        for alias in aliases:
            if self.event_alias(alias) is None:
                self._pending_event_aliases[alias] = event_key
                self._event_answers[alias] = event_key  # first wins, as INSERT OR IGNORE does

    def history_before(self, child: str, at: datetime) -> Sequence[HistoryItem]:
        items = self._child_history(child)
        cut = bisect.bisect_left(items, at, key=lambda h: h.occurred)
        return items[:cut]

    # -- outputs -----------------------------------------------------------------------
    def has_output(self, output_id: str) -> bool:
        return output_id in self._pending_outputs or output_id in self._flags or self._exec(
            "SELECT 1 FROM outputs WHERE id = ?", (output_id,)).fetchone() is not None

    def output(self, output_id: str) -> OutputRow | None:
        pending = self._pending_outputs.get(output_id)
        if pending is not None:
            return pending[0]
        row = self._flags.get(output_id)
        if row is None:
            found = self._exec("SELECT id, kind, child, resource FROM outputs WHERE id = ?",
                               (output_id,)).fetchone()
            if found is None:
                return None
            row = OutputRow(found[0], found[1], found[2], bytes(found[3]))
        self._remember_flag(row)
        return row

    def _remember_flag(self, row: OutputRow) -> None:
        if row.kind == "Flag":
            self._flags[row.id] = row
            self._flags.move_to_end(row.id)
            if len(self._flags) > HISTORIES:
                self._flags.popitem(last=False)

    def put_output(self, row: OutputRow, run: int) -> None:
        self._pending_outputs.pop(row.id, None)  # re-queued last: its place is its latest write
        self._pending_outputs[row.id] = (row, run)
        self._remember_flag(row)
        self._maybe_flush()

    # -- deliveries --------------------------------------------------------------------
    def delivery_done(self, batch: str) -> None:
        self._delivery_update("state = 'done', attempts = attempts + 1, last_error = ''", batch)

    def delivery_dead(self, batch: str, error: str) -> None:
        self._delivery_update("state = 'dead', attempts = attempts + 1, last_error = ?", batch,
                              error)

    def _delivery_update(self, assignments: str, batch: str, *values: object) -> None:
        self._flush()
        self._exec(f"UPDATE deliveries SET {assignments} WHERE batch = ?", (*values, batch))

    def delivery_again(self, batch: str) -> bool:
        """A dead batch back to pending (after a person fixed the cause)."""
        self._flush()
        cur = self._exec("UPDATE deliveries SET state = 'pending', next_attempt = '' "
                         "WHERE batch = ? AND state = 'dead'", (batch,))
        return cur.rowcount == 1

    # -- each target server's Patient --------------------------------------------------
    def server_patient(self, server: str, system: str, value: str) -> ServerPatient | None:
        row = self._exec("SELECT patient_id, checked FROM server_patients "
                         "WHERE server = ? AND system = ? AND value = ?",
                         (server, system, value)).fetchone()
        return None if row is None else ServerPatient(row[0], from_text(row[1]))

    def forget_server_patient(self, server: str, system: str, value: str) -> None:
        self._exec("DELETE FROM server_patients WHERE server = ? AND system = ? AND value = ?",
                   (server, system, value))

    # -- the inbox, subscriptions, meta ------------------------------------------------
    def inbox_failed(self, item: int, reason: str) -> int:
        """Count one failed attempt at an item (committed at once); returns its attempts."""
        self._exec("UPDATE inbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                   (reason, item))
        self.commit()
        return self._scalar_of("SELECT attempts FROM inbox WHERE id = ?", (item,))

    def inbox_raw(self, item: int) -> tuple[str, bytes] | None:
        row = self._exec("SELECT origin, raw FROM inbox WHERE id = ?", (item,)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def subscriptions(self) -> list[tuple[str, int, str, str]]:
        rows = self._exec("SELECT subscription, last_event, last_seen, last_type "
                          "FROM subscriptions ORDER BY subscription").fetchall()
        return [(s, int(e), t, k) for s, e, t, k in rows]

    def meta(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- dead letters ------------------------------------------------------------------
    def dead_letters(self) -> list[tuple[str, str, bytes]]:
        rows = self._exec("SELECT origin, reason, raw FROM dead_letters ORDER BY id").fetchall()
        return [(o, r, bytes(b)) for o, r, b in rows]

    def dead_letter_rows(self) -> list[tuple[int, str, str, str]]:
        """id, received, origin, reason: what an operator lists (never the raw input)."""
        rows = self._exec("SELECT id, received, origin, reason FROM dead_letters ORDER BY id")
        return [(int(i), t, o, r) for i, t, o, r in rows.fetchall()]

    def forget_dead_letter(self, letter: int) -> None:
        self._exec("DELETE FROM dead_letters WHERE id = ?", (letter,))

    # -- replay Bundles ----------------------------------------------------------------
    def bundle_written(self, bundle: str) -> None:
        self._exec("UPDATE bundles SET written = 1 WHERE id = ?", (bundle,))

    def release_bundle(self, bundle: str) -> None:
        """The Bundle was never written: its runs are owed to the next one again."""
        self._exec("UPDATE runs SET bundle = '' WHERE bundle = ?", (bundle,))
        self._exec("DELETE FROM bundles WHERE id = ?", (bundle,))

    # -- audit -------------------------------------------------------------------------
    def accesses(self) -> list[Access]:
        rows = self._exec("SELECT at, who, action, subject, detail FROM audit ORDER BY id").fetchall()
        return [Access(from_text(a), w, act, s, d) for a, w, act, s, d in rows]

    # -- the write buffer --------------------------------------------------------------
    def _buffered(self) -> int:
        return (len(self._pending_signals) + len(self._pending_outputs)
                + len(self._pending_aliases) + len(self._pending_items))
