"""The pictures: the rate per provider per quarter as a line chart, the pattern mix as bars.

Plain SVG text, written here: no script, no web font, nothing fetched (the machines that run the
adapter cannot reach the internet, and a safeguarding dashboard must not call out). Each chart has
a title and a description for screen readers, and every point and bar a tooltip with its numbers.
The same SVG is written to a file by the CLI and inlined in the dashboard page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from fhir_engagement.reports.labels import PATTERNS
from fhir_engagement.reports.mix import MixReport
from fhir_engagement.reports.rates import RateReport, RateRow

__all__ = ["mix_chart", "rate_chart"]

# Tableau 10: told apart by most colour-blind readers; dashes tell lines apart past ten.
_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac")
_DASHES = ("", "6 3", "2 3")
_WIDTH = 960
_LEFT, _RIGHT, _TOP, _PLOT_HEIGHT = 72, 24, 56, 280
_LEGEND_COLUMNS, _LEGEND_ROW = 3, 22
_GUIDE_RATE = 0.1  # the guidance's "about 1 in 10", drawn as a reference line


def rate_chart(report: RateReport) -> str:
    """One line per provider: not brought / appointments, per quarter."""
    title = "Not-brought rate per provider per quarter"
    quarters, providers = report.quarters(), report.providers()
    desc = (f"Line chart of children's scheduled appointments not brought, as a share of those "
            f"with a known outcome, for {len(providers)} providers over {len(quarters)} quarters "
            f"({report.period.describe()}).")
    points = {(r.provider, r.quarter): r for r in report.rows if r.rate is not None}
    if not points:
        return _empty("rate-chart", title, desc, "No appointments with a known outcome.")
    top, step = _scale(max(max(r.rate or 0 for r in points.values()), _GUIDE_RATE * 1.5),
                       fraction=True)
    frame = _Frame(quarters, top)
    body = [*frame.axes(step, lambda v: f"{v:.0%}"), *frame.guide(_GUIDE_RATE, "1 in 10")]
    for i, provider in enumerate(providers):
        colour, dash = _COLOURS[i % len(_COLOURS)], _DASHES[i // len(_COLOURS) % len(_DASHES)]
        series = [(q, points.get((provider, q))) for q in quarters]
        body += _lines(frame, series, colour, dash)
        body += [_point(frame, q, r.rate or 0, colour,
                        f"{provider}, {q}: {r.not_brought:,} of {r.appointments:,} not brought "
                        f"({r.rate:.1%})") for q, r in series if r is not None]
    body += _legend([(p, _COLOURS[i % len(_COLOURS)], _DASHES[i // len(_COLOURS) % 3])
                     for i, p in enumerate(providers)], frame.bottom + 48)
    return _svg("rate-chart", title, desc, _height(len(providers)), body,
                y_label="not brought / appointments")


def mix_chart(report: MixReport) -> str:
    """Grouped bars: children per pattern, one group per quarter."""
    title = "Pattern mix per quarter: children by pattern"
    patterns = report.patterns()
    quarters = [q.quarter for q in report.quarters]
    desc = (f"Bar chart of the number of children in each pattern of the guidance table, "
            f"for {len(quarters)} quarters ({report.period.describe()}).")
    if not patterns:
        return _empty("mix-chart", title, desc, "No child with a pattern in this period.")
    most = max(n for q in report.quarters for n in q.children.values())
    top, step = _scale(most, fraction=False)
    frame = _Frame(quarters, top)
    body = frame.axes(step, lambda v: f"{v:,.0f}")
    group = frame.slot * 0.8
    width = group / len(patterns)
    for qi, q in enumerate(report.quarters):
        for pi, pattern in enumerate(patterns):
            count = q.children.get(pattern, 0)
            if count:
                x = frame.x(qi) - group / 2 + pi * width
                body.append(_bar(frame, x, width, count, _COLOURS[pi % len(_COLOURS)],
                                 f"{q.quarter}, {PATTERNS.get(pattern, pattern)}: {count:,} "
                                 f"{'child' if count == 1 else 'children'}"))
    body += _legend([(PATTERNS.get(p, p), _COLOURS[i % len(_COLOURS)], "")
                     for i, p in enumerate(patterns)], frame.bottom + 48)
    return _svg("mix-chart", title, desc, _height(len(patterns)), body, y_label="children")


class _Frame:
    """Where the plot area is, and how quarters and values map onto it."""

    def __init__(self, quarters: Sequence[str], top: float) -> None:
        self.quarters, self.top = quarters, top
        self.bottom = _TOP + _PLOT_HEIGHT
        self.slot = (_WIDTH - _LEFT - _RIGHT) / max(len(quarters), 1)

    def x(self, index: int) -> float:
        return _LEFT + (index + 0.5) * self.slot

    def y(self, value: float) -> float:
        return self.bottom - value / self.top * _PLOT_HEIGHT

    def axes(self, step: float, label: Callable[[float], str]) -> list[str]:
        out = []
        for n in range(round(self.top / step) + 1):
            v, y = n * step, self.y(n * step)
            out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
            out.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{escape(label(v))}</text>')
        for i, q in enumerate(self.quarters):
            out.append(f'<text x="{self.x(i):.1f}" y="{self.bottom + 20}" text-anchor="middle">'
                       f'{escape(q)}</text>')
        out.append(f'<line x1="{_LEFT}" y1="{self.bottom}" x2="{_WIDTH - _RIGHT}" '
                   f'y2="{self.bottom}" stroke="#333"/>')
        return out

    def guide(self, value: float, label: str) -> list[str]:
        y = self.y(value)
        return [f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" '
                f'stroke="#666" stroke-dasharray="4 4"/>',
                f'<text x="{_WIDTH - _RIGHT - 4}" y="{y - 6:.1f}" text-anchor="end" '
                f'fill="#555">{escape(label)}</text>']


def _lines(frame: _Frame, series: Sequence[tuple[str, RateRow | None]], colour: str,
           dash: str) -> list[str]:
    """A polyline per run of quarters with data: a quarter without appointments is a gap."""
    out: list[str] = []
    run: list[str] = []
    for i, (_, row) in enumerate([*series, ("", None)]):
        if row is not None:
            run.append(f"{frame.x(i):.1f},{frame.y(row.rate or 0):.1f}")
        elif run:
            if len(run) > 1:
                dashed = f' stroke-dasharray="{dash}"' if dash else ""
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                           f'stroke-width="2.5"{dashed}/>')
            run = []
    return out


def _point(frame: _Frame, quarter: str, rate: float, colour: str, tip: str) -> str:
    x = frame.x(frame.quarters.index(quarter))
    return (f'<circle cx="{x:.1f}" cy="{frame.y(rate):.1f}" r="4.5" fill="{colour}" '
            f'stroke="#fff"><title>{escape(tip)}</title></circle>')


def _bar(frame: _Frame, x: float, width: float, count: int, colour: str, tip: str) -> str:
    y = frame.y(count)
    label = (f'<text x="{x + width / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
             f'font-size="10">{count:,}</text>') if width >= 14 else ""
    return (f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(width - 2, 1):.1f}" '
            f'height="{frame.bottom - y:.1f}" fill="{colour}"><title>{escape(tip)}</title>'
            f'</rect>{label}')


def _legend(items: Sequence[tuple[str, str, str]], top: float) -> list[str]:
    out = []
    column = (_WIDTH - _LEFT - _RIGHT) / _LEGEND_COLUMNS
    for i, (name, colour, dash) in enumerate(items):
        x = _LEFT + (i % _LEGEND_COLUMNS) * column
        y = top + (i // _LEGEND_COLUMNS) * _LEGEND_ROW
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 24:.1f}" y2="{y:.1f}" '
                   f'stroke="{colour}" stroke-width="6"{dashed}/>')
        out.append(f'<text x="{x + 32:.1f}" y="{y + 4:.1f}">{escape(name)}</text>')
    return out


def _height(legend_items: int) -> int:
    return _TOP + _PLOT_HEIGHT + 56 + math.ceil(legend_items / _LEGEND_COLUMNS) * _LEGEND_ROW


def _scale(most: float, fraction: bool) -> tuple[float, float]:
    """A round top for the axis and a step giving 4-8 grid lines (1, 2 or 5 times a power of 10)."""
    if fraction:
        most = min(most, 1.0)
    most = most or 1
    raw = most / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if not fraction:
        step = max(step, 1)
    return math.ceil(most / step - 1e-9) * step, step


def _svg(ident: str, title: str, desc: str, height: int, body: Sequence[str],
         y_label: str = "") -> str:
    axis = (f'<text x="16" y="{_TOP + _PLOT_HEIGHT / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 16 {_TOP + _PLOT_HEIGHT / 2:.0f})">{escape(y_label)}</text>'
            if y_label else "")
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{ident}" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-labelledby="{ident}-title '
        f'{ident}-desc" font-family="sans-serif" font-size="12" fill="#222">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        f'<rect width="{_WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="{_LEFT}" y="28" font-size="16" font-weight="bold">{escape(title)}</text>',
        axis, *body, "</svg>", ""])


def _empty(ident: str, title: str, desc: str, message: str) -> str:
    body = [f'<text x="{_WIDTH / 2:.0f}" y="{_TOP + 60}" text-anchor="middle" fill="#555">'
            f'{escape(message)}</text>']
    return _svg(ident, title, desc, _TOP + 120, body)
