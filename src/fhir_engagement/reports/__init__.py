"""Reports over the store: the not-brought rate, the pattern mix, a child's chronology, a dashboard.

Read-only: a report never changes what the pipeline decided. The one write is the audit row that
every read of a child's chronology leaves behind. Aggregate reports carry counts only, never a
patient identifier; a chronology needs the child's NHS number, asked for explicitly.
"""

from __future__ import annotations

from pathlib import Path

from fhir_engagement.errors import ReportError
from fhir_engagement.store import Store, open_store
from fhir_engagement.store.location import is_database_url

__all__ = ["open_report_store"]


def open_report_store(location: str) -> Store:
    """The store a report reads; an absent file is an error, not a new empty store. (A database
    that is not there is a StoreError from ``open_store``.)

    Raises:
        ReportError: no store at ``location`` (a report of nothing would look like "no misses").
    """
    if location != ":memory:" and not is_database_url(location) and not Path(location).is_file():
        raise ReportError(f"no store at {location}: replay or serve first, or name it with --store")
    return open_store(location, exclusive=False)  # reports read beside the writer
