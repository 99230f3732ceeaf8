"""``store copy``: move a SQLite store into PostgreSQL without losing history, outbox or dead letters.

Table by table, in one PostgreSQL transaction, with COPY (PostgreSQL's bulk load). Both stores
keep the same tables and columns, with times as the same text and flags as the same integers, so
the columns both have are copied as they are, in SQLite's rowid order (PostgreSQL's ``ord``
columns, its stand-in for rowid, number them in that order). Ids (inbox items, dead letters,
runs) are kept, and each table's sequence moved past them, so an operator's notes ("dead letter
12") still hold.

The source is opened as its one writer (its lock held), so nothing changes it meanwhile; the
target must be empty, so two histories are never mixed. Nothing is committed unless every
table's row count matches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

from fhir_engagement.errors import StoreError
from fhir_engagement.store import is_postgres, shown
from fhir_engagement.store.postgres import PostgresStore
from fhir_engagement.store.sqlite import SqliteStore

__all__ = ["CopyReport", "copy_store"]

# Parents before children is not needed (no foreign keys), but the order is the schema's, so a
# report reads like it.
_TABLES = ("meta", "runs", "aliases", "children", "status", "signals", "event_aliases", "outputs",
           "deliveries", "delivery_items", "subscriptions", "inbox", "dead_letters", "audit",
           "bundles", "server_patients")
_ROWS_PER_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class CopyReport:
    """Rows copied per table, in copy order."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copy_store(source: str, target: str,
               progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy every table of the SQLite store ``source`` into the empty PostgreSQL store ``target``.

    Raises:
        StoreError: either store cannot be opened, the target is not empty, or a count differs
            after the copy (then nothing was committed).
    """
    if is_postgres(source) or not is_postgres(target):
        raise StoreError("store copy moves a SQLite store (--from FILE) into PostgreSQL "
                         "(--to postgresql://...)")
    holder = SqliteStore(source)  # its lock: no writer while we read; its migrations: all columns
    try:
        PostgresStore(target).close()  # the schema, migrated to this version
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as lite, \
                _connect(target) as pg:
            rows = {}
            for table in _TABLES:
                rows[table] = _copy_table(lite, pg, table)
                if progress is not None:
                    progress(table, rows[table])
            pg.commit()
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"cannot copy {source} to {shown(target)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         ) from exc
    finally:
        holder.close()
    return CopyReport(rows)


def _connect(target: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(target)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach {shown(target)}: {type(exc).__name__}") from exc


def _copy_table(lite: sqlite3.Connection, pg: psycopg.Connection[tuple[object, ...]],
                table: str) -> int:
    kinds = _pg_columns(pg, table)
    held = pg.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    if held and held[0]:
        raise StoreError(f"the target already holds {held[0]:,} rows in {table}: store copy "
                         "only fills an empty store (two histories must not be mixed)")
    present = [row[1] for row in lite.execute(f"PRAGMA table_info({table})")]
    columns = [c for c in present if c in kinds]
    quoted = ", ".join(f'"{c}"' for c in columns)
    source = lite.execute(f"SELECT {quoted} FROM {table} ORDER BY rowid")
    with pg.cursor() as cur, cur.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
        for row in _converted(source, [kinds[c] for c in columns]):
            copy.write_row(row)
    _move_sequences(pg, table, columns)
    copied = pg.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    expected = lite.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    if not copied or not expected or copied[0] != expected[0]:
        raise StoreError(f"{table}: {expected} rows read but {copied} written; nothing committed")
    return int(copied[0])


def _pg_columns(pg: psycopg.Connection[tuple[object, ...]], table: str) -> dict[str, str]:
    rows = pg.execute("SELECT column_name, data_type FROM information_schema.columns "
                      "WHERE table_schema = current_schema() AND table_name = %s",
                      (table,)).fetchall()
    if not rows:
        raise StoreError(f"the target has no table {table}: is it a fhir-engagement store?")
    return {str(name): str(kind) for name, kind in rows}


def _converted(rows: sqlite3.Cursor, kinds: list[str]) -> Iterator[list[object]]:
    """SQLite's values as the PostgreSQL columns take them, a chunk at a time (flat memory for a
    region's year)."""
    while chunk := rows.fetchmany(_ROWS_PER_CHUNK):
        for row in chunk:
            yield [_value(v, k) for v, k in zip(row, kinds, strict=True)]


def _value(value: object, kind: str) -> object:
    """SQLite keeps what it is given: a raw input written as text is bytes to BYTEA."""
    if kind == "bytea" and isinstance(value, str):
        return value.encode()
    return value


def _move_sequences(pg: psycopg.Connection[tuple[object, ...]], table: str,
                    columns: list[str]) -> None:
    """Past the copied ids, so the next inbox item or dead letter does not collide."""
    for column in columns:
        found = pg.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()
        if found and found[0]:
            pg.execute(f'SELECT setval(%s, GREATEST(COALESCE(MAX("{column}"), 0), 1), '
                       f'MAX("{column}") IS NOT NULL) FROM {table}', (found[0],))
