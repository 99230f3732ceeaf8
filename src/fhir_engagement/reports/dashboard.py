"""The dashboard page ``fhir-engagement serve`` shows at /dashboard: both charts and their tables.

One self-contained HTML page: the SVG charts inline, the style inline, no script, and a Content
Security Policy that forbids loading anything, so the page works on a network with no internet
and cannot leak what it shows. Aggregate only: a child's chronology is never served over HTTP
(it needs an audited, named request: ``fhir-engagement report chronology``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
from fhir_engagement.store.base import ReportQueries

__all__ = ["CONTENT_SECURITY_POLICY", "dashboard_handler", "dashboard_html"]

Handler = Callable[[web.Request], Awaitable[web.Response]]

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


def dashboard_handler(store: ReportQueries, timezone: str, systems: CodeSystems) -> Handler:
    """The aiohttp handler for GET /dashboard (``?from=YYYY-MM-DD&to=YYYY-MM-DD`` optional)."""
    tz = ZoneInfo(timezone)

    async def dashboard(request: web.Request) -> web.Response:
        try:
            period = Period(_day(request.query.get("from")), _day(request.query.get("to")))
        except ReportError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        page = dashboard_html(store, tz, systems, period)
        return web.Response(text=page, content_type="text/html", headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        })

    return dashboard


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"not a date (YYYY-MM-DD): {text[:20]!r}") from exc
