"""Durable state behind one interface (base.Store); SQLite is the embedded default, PostgreSQL
(a ``postgresql://`` DSN) the store several replicas share."""

from fhir_engagement.store.base import Store
from fhir_engagement.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "is_postgres", "open_store"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str) -> bool:
    """A PostgreSQL DSN (URL form), as opposed to a SQLite path or ':memory:'."""
    return location.startswith(_POSTGRES_SCHEMES)


def open_store(location: str, *, exclusive: bool = True) -> Store:
    """The store named by the settings: a PostgreSQL DSN, a SQLite path, or ':memory:'.

    ``exclusive=False`` opens it for reading (reports) beside the one process that writes it
    (SQLite only: on PostgreSQL readers and writers share the database anyway).
    """
    if is_postgres(location):
        # Imported here: a SQLite-only run never loads the driver.
        from fhir_engagement.store.postgres import PostgresStore

        return PostgresStore(location, exclusive=exclusive)
    return SqliteStore(location, exclusive=exclusive)
