"""Durable state behind one interface (base.Store); SQLite is the embedded default."""

from fhir_engagement.store.base import Store
from fhir_engagement.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(location: str, *, exclusive: bool = True) -> Store:
    """The store named by the settings (a SQLite path, or ':memory:' for a throwaway run).

    ``exclusive=False`` opens it for reading (reports) beside the one process that writes it.
    """
    return SqliteStore(location, exclusive=exclusive)
