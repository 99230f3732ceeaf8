"""The pattern mix per quarter: children by pattern, and the Flags and Tasks raised, by code.

* **Children by pattern**: distinct children whose unretracted signals the rules placed in each
  row of the guidance table (single / repeat / persistent WNB, intermittent, over-engagement,
  refused assessment, left against advice, left before seen) in the local quarter. A child who
  went from single to repeat in one quarter counts under both, so the rows do not add up to the
  number of children; ``children`` is that number (each child once). Adults are never counted.
* **Flags**: the store keeps each Flag's current state only (the adapter updates a Flag in place
  and never lowers it), so a Flag counts once, at its current code, in the quarter it was first
  raised (``period.start``).
* **Tasks**: every Task, by code, in the quarter of its triggering event (the ``occurredDateTime``
  of the Provenance that wrote it; ``authoredOn`` is the decision time, used only for a Task stored
  before Provenance carried the event time); the review asked for on a retraction counts too.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_engagement.decisions.codesystems import ACTION, CONCERN, CodeSystems
from fhir_engagement.decisions.ids import full_url
from fhir_engagement.model import situations_of
from fhir_engagement.reports.labels import PATTERNS, display
from fhir_engagement.reports.period import Period, quarter_of
from fhir_engagement.store.base import OutputRow, ReportQueries

__all__ = ["MixQuarter", "MixReport", "mix_csv", "mix_report", "mix_text"]



@dataclass(frozen=True, slots=True)
class MixQuarter:
    """One local quarter of the mix."""

    quarter: str
    children: Mapping[str, int] = field(default_factory=dict)
    children_any: int = 0
    flags: Mapping[str, int] = field(default_factory=dict)
    tasks: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MixReport:
    quarters: tuple[MixQuarter, ...]
    period: Period

    def patterns(self) -> list[str]:
        """The table rows that occur, in the table's order (unknown ones after, sorted)."""
        seen = {p for q in self.quarters for p in q.children}
        return [p for p in PATTERNS if p in seen] + sorted(seen - set(PATTERNS))


def mix_report(store: ReportQueries, tz: ZoneInfo, period: Period | None = None) -> MixReport:
    period = period or Period()
    start, end = period.bounds(tz)
    children: defaultdict[str, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in store.situation_rows(start, end):
        for situation in situations_of(row.situation):
            children[quarter_of(row.occurred, tz)][situation].add(row.child)
    flags = _by_quarter(store, "Flag", lambda _, r: r["period"]["start"], period, tz)
    occurred = event_times(store.outputs_of_kind("Provenance"))
    tasks = _by_quarter(store, "Task", lambda i, r: occurred.get(full_url(i), r["authoredOn"]),
                        period, tz)
    quarters = sorted(set(children) | set(flags) | set(tasks))
    return MixReport(tuple(
        MixQuarter(q, {s: len(c) for s, c in children[q].items()},
                   len(set().union(*children[q].values())) if q in children else 0,
                   dict(flags.get(q, {})), dict(tasks.get(q, {})))
        for q in quarters), period)


def event_times(provenances: list[OutputRow]) -> dict[str, str]:
    """Each written resource's fullUrl -> the time of the event that first caused it.

    Keyed by the fullUrl the Provenance targets (look it up by ``full_url(id)``); the first
    Provenance to target a resource is the one that wrote it.
    """
    out: dict[str, str] = {}
    for row in provenances:
        prov = orjson.loads(row.resource)
        if "occurredDateTime" in prov:
            for target in prov["target"]:
                out.setdefault(target["reference"], prov["occurredDateTime"])
    return out


def _by_quarter(
    store: ReportQueries, kind: str, when: Callable[[str, dict[str, Any]], str], period: Period,
    tz: ZoneInfo,
) -> dict[str, Counter[str]]:
    out: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for row in store.outputs_of_kind(kind):
        resource = orjson.loads(row.resource)
        moment = datetime.fromisoformat(when(row.id, resource))
        if period.contains(moment, tz):
            out[quarter_of(moment, tz)][resource["code"]["coding"][0]["code"]] += 1
    return out


def mix_text(report: MixReport, systems: CodeSystems) -> str:
    """The tables ``report mix`` prints: one block per quarter."""
    head = f"Pattern mix per quarter ({report.period.describe()})"
    if not report.quarters:
        return f"{head}\nnothing in this period\n"
    blocks = [(q, _rows(report, q, systems)) for q in report.quarters]
    width = max((len(label) for _, rows in blocks for _, label, _ in rows), default=0)
    lines = [head]
    for q, rows in blocks:
        noun = "child" if q.children_any == 1 else "children"
        lines += ["", f"{q.quarter}: {q.children_any:,} {noun} with a pattern"]
        lines += [f"  {what:<8}  {label:<{width}}  {n:>7,}" for what, label, n in rows]
    lines += ["", "A child is counted once per pattern per quarter (under several patterns if "
              "the pattern changed); Flags at their current code in the quarter first raised."]
    return "\n".join(lines) + "\n"


def _rows(report: MixReport, q: MixQuarter, systems: CodeSystems) -> list[tuple[str, str, int]]:
    rows = [("children", PATTERNS.get(p, p), q.children[p])
            for p in report.patterns() if p in q.children]
    rows += [("Flags", _display(systems, CONCERN, c), n) for c, n in sorted(q.flags.items())]
    rows += [("Tasks", _display(systems, ACTION, c), n) for c, n in sorted(q.tasks.items())]
    return rows


def _display(systems: CodeSystems, system: str, code: str) -> str:
    name = display(systems, system, code)
    return code if name == code else f"{code} ({name})"


def mix_csv(report: MixReport) -> str:
    """Long format: ``quarter, measure, code, count``; measure is children, flags or tasks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["quarter", "measure", "code", "count"])
    for q in report.quarters:
        writer.writerow([q.quarter, "children", "any", q.children_any])
        writer.writerows([q.quarter, "children", p, q.children[p]]
                         for p in report.patterns() if p in q.children)
        writer.writerows([q.quarter, "flags", c, n] for c, n in sorted(q.flags.items()))
        writer.writerows([q.quarter, "tasks", c, n] for c, n in sorted(q.tasks.items()))
    return out.getvalue()
