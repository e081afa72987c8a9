"""SVG charts drawn in Python: bars, stacked bars and lines, with axes, a target line, a legend
and a text alternative.

No plotting library: the charts are a few dozen SVG elements each, WeasyPrint draws inline SVG
into the PDF as vectors (so text stays selectable and uses the report's CJK font), and browsers
show the same markup in the HTML report. Chart *data* lives in :class:`Chart` (part of the JSON);
this module builds that model (:func:`chart`, which writes the text alternative) and turns it
into markup (:func:`svg`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import date
from html import escape

from reports.monthly.i18n import Tr
from reports.monthly.model import Chart, ChartKind, Series

WIDTH = 360
HEIGHT = 132  # a chart of days
SHORT = 110  # a chart of a few assets or episodes
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 10, 18, 28
_FONT = 8.0  # px in the viewBox; the chart is scaled to its box, so this is relative

# Bands and savings lines have fixed colours so every page reads the same way.
COLOURS = {
    "sharp": "#a93226",
    "peak": "#e67e22",
    "flat": "#5b8db8",
    "valley": "#4e9f76",
    "predicted": "#8c8c8c",
    "metered": "#1f5f99",
}
PALETTE = ("#1f5f99", "#e67e22", "#4e9f76", "#8e44ad", "#a93226", "#7f8c8d")
MARKED = "#c0392b"  # bars on the wrong side of the target
TARGET = "#333333"
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- the model --------------------------------------------------------------------------------
def chart(
    tr: Tr,
    *,
    key: str,
    kind: ChartKind,
    title: str,
    x_label: str,
    y_label: str,
    unit: str,
    categories: Sequence[str],
    series: Sequence[Series],
    target: float | None = None,
    target_label: str | None = None,
    better: str | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
    additive: bool = True,
    digits: int = 1,
) -> Chart:
    """A :class:`Chart` with its text alternative written from the data.

    ``additive`` says whether a total means something (kWh, m³) or not (availability %).
    """
    c = Chart(
        key=key,
        kind=kind,
        title=title,
        x_label=x_label,
        y_label=y_label,
        unit=unit,
        categories=list(categories),
        series=list(series),
        target=target,
        target_label=target_label,
        better="higher" if better == "higher" else "lower" if better == "lower" else None,
        y_min=y_min,
        y_max=y_max,
        alt="",
    )
    return c.model_copy(update={"alt": describe(c, tr, additive=additive, digits=digits)})


def category_text(tr: Tr, category: str) -> str:
    """How a category is named in words: ISO days become '3月5日' / '5 Mar'."""
    if _ISO_DAY.match(category):
        return tr.day(date.fromisoformat(category))
    return category


def _tick_text(category: str) -> str:
    """How a category is printed under the axis: ISO days as their day of the month."""
    if _ISO_DAY.match(category):
        return str(int(category[8:]))
    return category


def _totals(c: Chart) -> list[float | None]:
    """Per category: the stacked sum, or the single series' value."""
    out: list[float | None] = []
    for i in range(len(c.categories)):
        vals = [s.values[i] for s in c.series if i < len(s.values) and s.values[i] is not None]
        out.append(sum(v for v in vals if v is not None) if vals else None)
    return out


def describe(c: Chart, tr: Tr, *, additive: bool = True, digits: int = 1) -> str:
    """One or two sentences saying what the chart shows, for screen readers and the PDF text."""
    parts: list[str] = []
    for s in c.series if c.kind == "line" or len(c.series) == 1 else [None]:
        values = _totals(c) if s is None else s.values
        name = c.title if s is None or len(c.series) == 1 else f"{c.title} – {s.name}"
        known = [(v, i) for i, v in enumerate(values) if v is not None]
        if not known:
            parts.append(tr("chart.alt.empty", title=name))
            continue
        lo, lo_i = min(known)
        hi, hi_i = max(known)
        total = sum(v for v, _ in known)
        text = tr(
            "chart.alt.range",
            title=name,
            n=len(known),
            lo=tr.qty(lo, c.unit, digits),
            lo_at=category_text(tr, c.categories[lo_i]),
            hi=tr.qty(hi, c.unit, digits),
            hi_at=category_text(tr, c.categories[hi_i]),
            total=tr.qty(total, c.unit, digits) if additive else "—",
        )
        if not additive:
            text = text.replace("，合计 —", "").replace(", total —", "")
        parts.append(text)
    if c.kind == "stacked" and len(c.series) > 1 and additive:
        shares = [
            tr("chart.alt.series", name=s.name, total=tr.qty(_sum(s.values), c.unit, digits))
            for s in c.series
        ]
        parts.append(("；" if tr.zh else "; ").join(shares) + ("。" if tr.zh else "."))
    if c.target is not None and c.better is not None:
        values = _totals(c)
        bad = sum(1 for v in values if v is not None and _wrong_side(v, c.target, c.better))
        key = "chart.alt.target" if c.better == "higher" else "chart.alt.limit"
        parts.append(tr(key, below=bad, target=tr.qty(c.target, c.unit, digits)))
    return " ".join(parts) if not tr.zh else "".join(parts)


def _sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _wrong_side(v: float, target: float, better: str) -> bool:
    return v < target if better == "higher" else v > target


# -- the markup -------------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _text_width(text: str) -> float:
    """Rough width in the viewBox: CJK glyphs are 1 em wide, Latin ones about 0.6 em."""
    return sum(1.0 if ord(ch) >= 0x2E80 else 0.6 for ch in text) * _FONT


def _fit(text: str, width: float) -> str:
    if _text_width(text) <= width:
        return text
    while text and _text_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _colour(s: Series, i: int) -> str:
    return COLOURS.get(s.key, PALETTE[i % len(PALETTE)])


def _fmt_tick(tr: Tr, v: float, step: float) -> str:
    if step >= 1:
        return tr.num(v, 0)
    digits = -math.floor(math.log10(step)) + (0 if round(step * 10, 9) % 1 == 0 else 1)
    return tr.num(v, min(digits, 3))


def svg(
    c: Chart, tr: Tr, *, uid: str | None = None, width: int = WIDTH, height: int | None = None
) -> str:
    """The chart as an inline ``<svg>`` element with ``<title>`` and ``<desc>``.

    ``uid`` makes the ids of those two unique in a document that shows several such charts.
    """
    uid = "chart-" + re.sub(r"[^A-Za-z0-9_-]", "-", uid or c.key)
    if height is None:
        height = HEIGHT if len(c.categories) > 8 else SHORT
    x0, x1 = _LEFT, width - _RIGHT
    legend = len(c.series) > 1 or c.target is not None
    y0, y1 = height - _BOTTOM, _TOP if legend else 8  # y0 is the bottom of the plot area
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" font-size="{_FONT}">',
        f'<title id="{uid}-t">{escape(c.title)}</title>',
        f'<desc id="{uid}-d">{escape(c.alt)}</desc>',
    ]
    totals = _totals(c)
    if c.kind == "stacked":
        values = [v for v in totals if v is not None]
    else:
        values = [v for s in c.series for v in s.values if v is not None]
    n = len(c.categories)
    if not values or n == 0:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">'
            f"{escape(tr('chart.no_data'))}</text></svg>"
        )
        return "".join(out)
    if c.y_min is not None:
        lo = c.y_min
    elif c.kind == "line":
        # Lines compare shapes (predicted vs metered): an axis from zero would flatten them.
        spread = max(values) - min(values)
        lo = max(0.0, min(values) - max(spread * 0.5, abs(min(values)) * 0.1))
    else:
        lo = min(0.0, *values)
    top = max([*values, c.target if c.target is not None else -math.inf])
    hi = c.y_max if c.y_max is not None else (top if top > lo else lo + 1)
    ticks = nice_ticks(lo, hi)
    lo = min(lo, ticks[0]) if c.y_min is None else c.y_min
    hi = ticks[-1] if c.y_max is None else c.y_max
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return y0 - (v - lo) / (hi - lo) * (y0 - y1)

    # grid and value axis: the grid is one path, as WeasyPrint's cost grows with SVG elements
    grid: list[str] = []
    tick_labels: list[str] = []
    for t in ticks:
        if t < lo - 1e-9 or t > hi + 1e-9:
            continue
        yy = y(t)
        grid.append(f"M{x0} {yy:.1f}H{x1}")
        tick_labels.append(
            f'<text x="{x0 - 3}" y="{yy + 2.8:.1f}" text-anchor="end" fill="#444">'
            f"{escape(_fmt_tick(tr, t, step))}</text>"
        )
    if grid:
        out.append(f'<path d="{"".join(grid)}" stroke="#e3e3e3" fill="none"/>')
    out.extend(tick_labels)
    out.append(f'<path d="M{x0} {y1}V{y0}H{x1}" stroke="#888" fill="none"/>')

    # plot
    slot = (x1 - x0) / n
    if c.kind in ("bar", "stacked"):
        _bars(out, c, slot, x0, y, lo)
    else:
        _lines(out, c, slot, x0, y)

    # target
    if c.target is not None and lo <= c.target <= hi:
        ty = y(c.target)
        out.append(
            f'<line x1="{x0}" y1="{ty:.1f}" x2="{x1}" y2="{ty:.1f}" stroke="{TARGET}" '
            'stroke-width="1" stroke-dasharray="4 2"/>'
        )
        # Labelled in the legend row: a label on the line would collide with the bars.
        label = c.target_label or f"{tr('target')} {tr.qty(c.target, c.unit)}"
        lx = x1 - _text_width(label)
        out.append(
            f'<line x1="{lx - 16:.1f}" y1="9" x2="{lx - 3:.1f}" y2="9" stroke="{TARGET}" '
            'stroke-dasharray="4 2"/>'
        )
        out.append(
            f'<text x="{x1}" y="12" text-anchor="end" fill="{TARGET}">{escape(label)}</text>'
        )

    # category labels: days thinned so they never overlap, names shortened to their slot
    labels = [_tick_text(cat) for cat in c.categories]
    days = all(_ISO_DAY.match(cat) for cat in c.categories)
    every = 1
    if days:
        widest = max(_text_width(t) for t in labels) + 4
        every = max(1, math.ceil(widest / slot))
    for i, text in enumerate(labels):
        if days and every > 1:
            # Too many days for a label each: the 1st and every 5th, as calendars are read.
            day = int(text)
            if not (day == 1 or (day % 5 == 0 and day > 1 + (5 * every) // 10)):
                continue
        elif i % every:
            continue
        if not days:
            text = _fit(text, slot - 2)
        cx = x0 + slot * (i + 0.5)
        out.append(
            f'<text x="{cx:.1f}" y="{y0 + 10}" text-anchor="middle" fill="#444">'
            f"{escape(text)}</text>"
        )
    # axis labels
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#222">'
        f"{escape(c.x_label)}</text>"
    )
    cy = (y0 + y1) / 2
    out.append(
        f'<text x="10" y="{cy:.1f}" text-anchor="middle" fill="#222" '
        f'transform="rotate(-90 10 {cy:.1f})">{escape(c.y_label)}</text>'
    )
    # legend (only when it tells something: several series or a target)
    if len(c.series) > 1:
        lx = x0
        for i, s in enumerate(c.series):
            colour = _colour(s, i)
            out.append(f'<rect x="{lx}" y="5" width="8" height="8" fill="{colour}"/>')
            out.append(f'<text x="{lx + 11}" y="12" fill="#222">{escape(s.name)}</text>')
            lx += 11 + _text_width(s.name) + 10
    out.append("</svg>")
    return "".join(out)


def _bars(
    out: list[str],
    c: Chart,
    slot: float,
    x0: float,
    y: Callable[[float], float],
    lo: float,
) -> None:
    stacked = c.kind == "stacked"
    groups = 1 if stacked else max(1, len(c.series))
    # A few categories would make slabs of bars: cap the width and centre them in the slot.
    bw = min((slot * 0.82) / groups, 28.0)
    gap = slot - bw * groups
    # One <path> per colour rather than a <rect> per bar: a month of stacked bands is over a
    # hundred bars, and WeasyPrint's PDF time grows with the number of SVG elements.
    shapes: dict[str, list[str]] = {}
    for i in range(len(c.categories)):
        base = max(lo, 0.0)
        for j, s in enumerate(c.series):
            v = s.values[i] if i < len(s.values) else None
            if v is None:
                continue
            colour = _colour(s, j)
            if (
                not stacked
                and c.target is not None
                and c.better is not None
                and _wrong_side(v, c.target, c.better)
            ):
                colour = MARKED
            bx = x0 + slot * i + gap / 2 + (0 if stacked else j * bw)
            if stacked:
                ya, yb = y(base + v), y(base)
                base += v
            else:
                ya, yb = y(max(v, base)), y(min(v, base))
            h = max(yb - ya, 0.0)
            shapes.setdefault(colour, []).append(f"M{bx:.1f} {ya:.1f}h{bw:.1f}v{h:.1f}h{-bw:.1f}z")
    for colour, d in shapes.items():
        out.append(f'<path d="{"".join(d)}" fill="{colour}"/>')


def _lines(out: list[str], c: Chart, slot: float, x0: float, y: Callable[[float], float]) -> None:
    for j, s in enumerate(c.series):
        colour = _colour(s, j)
        dash = ' stroke-dasharray="4 2"' if s.key == "predicted" else ""
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(s.values):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x0 + slot * (i + 0.5):.1f},{y(v):.1f}")
        if run:
            runs.append(run)
        for r in runs:
            if len(r) == 1:
                cx, cy = r[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.8" fill="{colour}"/>')
            else:
                out.append(
                    f'<polyline points="{" ".join(r)}" fill="none" stroke="{colour}" '
                    f'stroke-width="1.4"{dash}/>'
                )
