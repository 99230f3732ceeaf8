"""What both stores (sqlite.py, postgres.py) write the same way: times as text, and the bounded
caches of lookup answers.

Times are fixed-width ISO 8601 UTC text in both, so text order is time order and the reports give
byte-for-byte the same answers on SQLite and PostgreSQL (tests/reports/test_postgres_parity.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from typing import Any

__all__ = ["LOOKUPS", "from_text", "hour_of", "opt_text", "period", "remember", "to_text"]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
LOOKUPS = 65536  # lookup answers cached (~100 B each), oldest dropped first


def to_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order (isoformat: ~3x strftime)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_text(text: str) -> datetime:
    """The moment ``to_text`` wrote. Its fixed-width form is read by ``fromisoformat`` (0.3 us
    against strptime's 13: a child's history is read back row by row, so a region's year paid
    ~10% of its time here); anything else by the strict format, which says what is wrong."""
    if len(text) == 27 and text[-1] == "Z" and text[10] == "T" and text[19] == ".":
        return datetime.fromisoformat(text)  # "Z" is UTC itself (datetime.UTC)
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)


def opt_text(moment: datetime | None) -> str | None:
    return None if moment is None else to_text(moment)


def hour_of(text: str) -> datetime:
    """The UTC hour a report row is grouped by (``YYYY-MM-DDTHH``)."""
    return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)


def period(column: str, start: datetime | None, end: datetime | None,
           mark: str) -> tuple[list[str], list[object]]:
    """SQL conditions for ``start <= column < end`` on the fixed-width UTC text; ``mark`` is the
    driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg)."""
    where: list[str] = []
    params: list[object] = []
    if start is not None:
        where.append(f"{column} >= {mark}")
        params.append(to_text(start))
    if end is not None:
        where.append(f"{column} < {mark}")
        params.append(to_text(end))
    return where, params


def remember(answers: dict[str, Any], key: str, value: object) -> None:
    """Keep one lookup's answer, the oldest dropped first past LOOKUPS (memory stays flat).

    The oldest eighth goes at once: a dict finds its first key by stepping over the slots its
    deleted keys left, so dropping one key per answer stepped over tens of thousands each time
    (17% of a region's year, profiled); a batch steps over them once."""
    if len(answers) >= LOOKUPS:
        for old in list(islice(answers, max(LOOKUPS // 8, 1))):
            del answers[old]
    answers[key] = value
