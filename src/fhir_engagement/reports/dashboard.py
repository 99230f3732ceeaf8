"""The dashboard page ``fhir-engagement serve`` shows at /dashboard: both charts and their tables.

One self-contained HTML page: the SVG charts inline, the style inline, no script, and a Content
Security Policy that forbids loading anything, so the page works on a network with no internet
and cannot leak what it shows. Aggregate only: a child's chronology is never served over HTTP
(it needs an audited, named request: ``fhir-engagement report chronology``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from html import escape
from zoneinfo import ZoneInfo

from aiohttp import web

from fhir_engagement.decisions.codesystems import ACTION, CONCERN, CodeSystems
from fhir_engagement.errors import ReportError
from fhir_engagement.reports.charts import mix_chart, rate_chart
from fhir_engagement.reports.labels import PATTERNS, display
from fhir_engagement.reports.mix import MixReport, mix_report
from fhir_engagement.reports.period import Period
from fhir_engagement.reports.rates import RateReport, rate_report
from fhir_engagement.store import open_store
from fhir_engagement.store.base import ReportQueries, Store

__all__ = ["CONTENT_SECURITY_POLICY", "Dashboard", "dashboard_html"]

_CACHED_PERIODS = 16
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; font-size: 13px; }
figure { margin: 0; }
"""


def dashboard_html(
    store: ReportQueries, tz: ZoneInfo, systems: CodeSystems, period: Period | None = None,
    now: datetime | None = None,
) -> str:
    """The whole page, from the store as it is now."""
    period = period or Period()
    rates, mix = rate_report(store, tz, period), mix_report(store, tz, period)
    stamp = (now or datetime.now(UTC)).astimezone(tz)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<link rel="icon" href="data:,">',
        "<title>fhir-engagement: engagement dashboard</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Children's engagement with health care</h1>",
        f'<p class="note">{escape(period.describe().capitalize())}; quarters in {escape(str(tz))}. '
        f"Generated {stamp:%Y-%m-%d %H:%M}. Aggregate figures only: no child is named.</p>",
        "<h2>Not-brought rate</h2>",
        f"<figure>{rate_chart(rates)}</figure>",
        _rate_table(rates),
        '<p class="note">Appointments: children\'s scheduled appointments with a known outcome '
        "(attended, not brought, no-access visit), each counted once. Adults are left out of the "
        "rate and counted apart. The dashed line is the guidance's \"about 1 in 10\".</p>",
        "<h2>Pattern mix</h2>",
        f"<figure>{mix_chart(mix)}</figure>",
        _mix_table(mix, systems),
        '<p class="note">A child counts once per pattern per quarter. Flags at their current code, '
        "in the quarter they were first raised; Tasks in the quarter of their event.</p>",
        "</body></html>", ""])


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _rate_table(report: RateReport) -> str:
    rows = [[r.provider, r.quarter, f"{r.appointments:,}", f"{r.not_brought:,}",
             "n/a" if r.rate is None else f"{r.rate:.1%}", f"{r.adults_excluded:,}"]
            for r in [*report.rows, *report.totals()]]
    return _table(["provider", "quarter", "appointments", "not brought", "rate",
                   "adults excluded"], rows)


def _mix_table(report: MixReport, systems: CodeSystems) -> str:
    quarters = [q.quarter for q in report.quarters]
    rows = [["children with a pattern", *(f"{q.children_any:,}" for q in report.quarters)]]
    rows += [[f"children: {PATTERNS.get(p, p)}", *(f"{q.children.get(p, 0):,}"
                                                   for q in report.quarters)]
             for p in report.patterns()]
    for label, system, attr in (("Flags", CONCERN, "flags"), ("Tasks", ACTION, "tasks")):
        codes = sorted({c for q in report.quarters for c in getattr(q, attr)})
        rows += [[f"{label}: {display(systems, system, c)}",
                  *(f"{getattr(q, attr).get(c, 0):,}" for q in report.quarters)] for c in codes]
    return _table(["", *quarters], rows)


class Dashboard:
    """GET /dashboard, rendered off the event loop and kept for ``cache_seconds``.

    A page takes the store's whole report queries (seconds on a big store); built on the event
    loop it held MLLP acknowledgements for as long (eight dashboards: ACK p99 0.04 s -> 4.8 s).
    So it is built on one thread of its own, with its own read-only connection to the store
    (SQLite connections belong to the thread that opened them, and the event loop's is busy
    writing), and requests for a period already being built wait for that build. A ``:memory:``
    store has no second connection: its (throwaway) pages are built on the loop.
    """

    def __init__(self, store: ReportQueries, location: str, timezone: str, systems: CodeSystems,
                 cache_seconds: float = 30.0) -> None:
        self.store, self.location, self.systems = store, location, systems
        self.tz, self.cache_seconds = ZoneInfo(timezone), cache_seconds
        self._cache: dict[Period, tuple[float, str]] = {}
        self._building: dict[Period, asyncio.Future[str]] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard")
        self._reader: Store | None = None  # opened, used and closed on self._thread only

    async def handler(self, request: web.Request) -> web.Response:
        """The page (``?from=YYYY-MM-DD&to=YYYY-MM-DD`` optional)."""
        try:
            period = Period(_day(request.query.get("from")), _day(request.query.get("to")))
        except ReportError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        page = await self.page(period)
        return web.Response(text=page, content_type="text/html", headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        })

    async def page(self, period: Period) -> str:
        """The cached page while it is fresh; else one build, shared by whoever asks meanwhile."""
        loop = asyncio.get_running_loop()
        cached = self._cache.get(period)
        if cached is not None and loop.time() < cached[0]:
            return cached[1]
        if period not in self._building:
            self._building[period] = loop.create_task(self._build(period))
        return await asyncio.shield(self._building[period])

    async def _build(self, period: Period) -> str:
        loop = asyncio.get_running_loop()
        try:
            if self.location == ":memory:":
                page = dashboard_html(self.store, self.tz, self.systems, period)
            else:
                page = await loop.run_in_executor(self._thread, self._render, period)
        finally:
            del self._building[period]
        if self.cache_seconds > 0:
            if len(self._cache) >= _CACHED_PERIODS:  # periods are the caller's: keep a bounded few
                self._cache.pop(next(iter(self._cache)))
            self._cache[period] = (loop.time() + self.cache_seconds, page)
        return page

    def _render(self, period: Period) -> str:
        """On the dashboard thread: the page from a read-only connection of that thread."""
        if self._reader is None:
            self._reader = open_store(self.location, exclusive=False)
        return dashboard_html(self._reader, self.tz, self.systems, period)

    async def close(self, _: web.Application | None = None) -> None:
        """Close the reader on its own thread, then the thread (an ``on_cleanup`` hook)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_reader)
        self._thread.shutdown(wait=True)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"not a date (YYYY-MM-DD): {text[:20]!r}") from exc
