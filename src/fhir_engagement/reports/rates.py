"""The not-brought rate per provider per quarter: the partnership's "1 in 10" dataset (rules.md s.6).

What counts (the README's "Reports" section says the same, for the people who read the figures):

* an **appointment** is a scheduled contact of a child whose outcome the adapter saw: one event
  with an unretracted ``attended``, ``not-brought`` or ``no-access-visit`` signal, counted once
  however many versions or signals it had. Booked-but-not-yet-happened, cancelled (by the family
  or the provider) and Encounters are not appointments: an Encounter records a visit that its
  Appointment usually records too, and counting both would count one visit twice;
* **not brought** is such an appointment whose outcome was ``not-brought`` or ``no-access-visit``
  (a missed home visit is a missed appointment). A no-show corrected to fulfilled is attended;
* **adults** (18 and over at the appointment) are outside the guidance: counted in their own
  column, never in the rate. A child with no known birth date counts as a child, as the rules do;
* the **provider** is the booking organisation (UK Core extension), else the service or location
  the appointment names; ``(unknown)`` when there is none. The **quarter** is the local one.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fhir_engagement.reports.period import Period, quarter_of
from fhir_engagement.store.base import ReportQueries

__all__ = [
    "APPOINTMENT_OUTCOMES",
    "NOT_BROUGHT",
    "UNKNOWN_PROVIDER",
    "RateReport",
    "RateRow",
    "rate_csv",
    "rate_report",
    "rate_text",
]

APPOINTMENT_OUTCOMES = frozenset({"attended", "not-brought", "no-access-visit"})
NOT_BROUGHT = frozenset({"not-brought", "no-access-visit"})
# Event keys that are not scheduled appointments (see the module docstring).
_NOT_APPOINTMENTS = ("Encounter/",)
UNKNOWN_PROVIDER = "(unknown)"
_ALL = "all providers"


@dataclass(frozen=True, slots=True)
class RateRow:
    """One provider in one quarter."""

    provider: str
    quarter: str
    appointments: int = 0
    not_brought: int = 0
    adults_excluded: int = 0

    @property
    def rate(self) -> float | None:
        """Not brought / appointments; None when the provider saw no child that quarter."""
        return self.not_brought / self.appointments if self.appointments else None


@dataclass(frozen=True, slots=True)
class RateReport:
    """Rows sorted by quarter, then provider."""

    rows: tuple[RateRow, ...]
    period: Period
    provider: str | None = None

    def quarters(self) -> list[str]:
        return sorted({r.quarter for r in self.rows})

    def providers(self) -> list[str]:
        return sorted({r.provider for r in self.rows})

    def totals(self) -> list[RateRow]:
        """Every provider together, per quarter: the figure the partnership quotes."""
        out = []
        for quarter in self.quarters():
            rows = [r for r in self.rows if r.quarter == quarter]
            out.append(RateRow(_ALL, quarter, sum(r.appointments for r in rows),
                               sum(r.not_brought for r in rows),
                               sum(r.adults_excluded for r in rows)))
        return out


def rate_report(
    store: ReportQueries, tz: ZoneInfo, period: Period | None = None, provider: str | None = None
) -> RateReport:
    """Count appointments and misses per provider per local quarter."""
    period = period or Period()
    start, end = period.bounds(tz)
    counts = store.appointment_counts(APPOINTMENT_OUTCOMES, NOT_BROUGHT, _NOT_APPOINTMENTS,
                                      start, end, provider)
    cells: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    quarters: dict[object, str] = {}  # many rows share an hour; its quarter is worked out once
    for c in counts:
        quarter = quarters.get(c.hour) or quarters.setdefault(c.hour, quarter_of(c.hour, tz))
        cell = cells[(quarter, c.provider or UNKNOWN_PROVIDER)]
        if c.adult:
            cell[2] += c.events
        else:
            cell[0] += c.events
            cell[1] += c.events if c.missed else 0
    rows = tuple(RateRow(p, q, *cells[(q, p)]) for q, p in sorted(cells))
    return RateReport(rows, period, provider)


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def rate_text(report: RateReport) -> str:
    """The table ``report rate`` prints, per provider and then for all providers."""
    head = (f"Not-brought rate per provider per quarter ({report.period.describe()}"
            + (f", provider {report.provider}" if report.provider else "") + ")")
    if not report.rows:
        return f"{head}\nno appointments with a known outcome in this period\n"
    width = max(len("provider"), *(len(r.provider) for r in report.rows), len(_ALL))
    lines = [head, "", _line(width, "provider", "quarter", "appointments", "not brought", "rate",
                             "adults excluded")]
    lines += [_row(width, r) for r in report.rows]
    lines += ["", *(_row(width, r) for r in report.totals())]
    lines += ["", "appointments: children's scheduled appointments with a known outcome "
              "(attended, not brought, no-access visit);", "adults are excluded from the rate "
              "and counted apart; quarters are local (Europe/London by default)."]
    return "\n".join(lines) + "\n"


def _line(width: int, *cells: str) -> str:
    provider, quarter, *numbers = cells
    return f"{provider:<{width}}  {quarter:<7}" + "".join(f"  {n:>12}" for n in numbers)


def _row(width: int, r: RateRow) -> str:
    return _line(width, r.provider, r.quarter, f"{r.appointments:,}", f"{r.not_brought:,}",
                 _percent(r.rate), f"{r.adults_excluded:,}")


def rate_csv(report: RateReport) -> str:
    """One line per provider and quarter; ``rate`` is a fraction to 4 places, empty for none."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["provider", "quarter", "appointments", "not_brought", "rate",
                     "adults_excluded"])
    for r in report.rows:
        writer.writerow([r.provider, r.quarter, r.appointments, r.not_brought,
                         "" if r.rate is None else f"{r.rate:.4f}", r.adults_excluded])
    return out.getvalue()
