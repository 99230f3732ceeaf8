"""Reports over the store: the not-brought rate, the pattern mix, a child's chronology, a dashboard.

Read-only: a report never changes what the pipeline decided. The one write is the audit row that
every read of a child's chronology leaves behind. Aggregate reports carry counts only, never a
patient identifier; a chronology needs the child's NHS number, asked for explicitly.
"""

from __future__ import annotations

from pathlib import Path

from fhir_engagement.errors import ReportError
from fhir_engagement.store import Store, is_postgres, open_store

__all__ = ["open_report_store"]


def open_report_store(location: str) -> Store:
    """The store a report reads; an absent file is an error, not a new empty store (a
    PostgreSQL database is asked for, and made current, by migrations at open).

    Raises:
        ReportError: no store at ``location`` (a report of nothing would look like "no misses").
    """
    if location != ":memory:" and not is_postgres(location) and not Path(location).is_file():
        raise ReportError(f"no store at {location}: replay or serve first, or name it with --store")
    return open_store(location, exclusive=False)  # reports read beside the writer
